"""Tile targets (issues 5 and 16) on the VGG-16 sample, by default fused up to its third pooling layer, 3x3 grid.

For each input size (224 and larger): partition --strategy tiles, then run the
tiles on an embedded Dask LocalCluster with 1 and 2 workers (one thread each)
and report the median time of the tiles phase (submit to last tile stitched)
and of the whole image (tiles + remainder on the client). Also checks, per
size, that the largest tile's activations are at most 32% of the untiled
stack's, and that the MACs of the written tile graphs (counted by the
analyzer) equal what the geometry predicts.

Targets: tiles phase with 2 workers at least 1.7x faster than with 1 on a
2-core machine; peak fraction <= 0.32; MACs as predicted.

With --stacks N the tiled part (up to --fuse-until) is cut into N stacks in
sequence, each in the --grid, at the pooling layers the planner finds best;
each stack's phase and speedup is reported beside the whole image's.

    python benchmarks/bench_tiles.py [--sizes 224,320,448] [--images 7] [--json]
    python benchmarks/bench_tiles.py --sizes 224 --grid 1x2 --stacks 3 --fuse-until maxpool5_out
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitnn.cost_models.catalog import load_device  # noqa: E402
from splitnn.onnxsplit.analysis.analyze import analyze  # noqa: E402
from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench  # noqa: E402
from splitnn.onnxsplit.core.atomic_files import save_model_atomic  # noqa: E402
from splitnn.onnxsplit.model.loading import load_graph  # noqa: E402
from splitnn.onnxsplit.tiles.export import write_tiles  # noqa: E402
from splitnn.onnxsplit.tiles.planning import plan_tiles  # noqa: E402
from splitnn.sample_models import build_sample  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="224,320,448")
    parser.add_argument("--images", type=int, default=7)
    parser.add_argument("--grid", default="3x3", help="the grid timed for the speedup, or auto: each stack's best "
                        "predicted (the memory check always uses 3x3)")
    parser.add_argument("--reuse", action="store_true", help="plan with the checkerboard reuse of overlaps")
    parser.add_argument("--stacks", type=int, default=1, help="fused stacks in sequence (default 1)")
    parser.add_argument("--fuse-until", default="maxpool3_out", help="the last tensor tiled")
    parser.add_argument("--fc-split", default="memory", choices=["memory", "time"],
                        help="split fully connected layers by neurons only where they do not fit (memory, the default "
                             "here: the plan is for rockpro64 boards and runs on this host), or where predicted faster")
    parser.add_argument("--handoff", default="client", choices=["client", "workers"],
                        help="how a later stack gets the previous one's output")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-tiles-"))
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        model = work / f"vgg16-{size}.onnx"
        if not model.exists():
            save_model_atomic(build_sample("vgg16", size), model)
        analysis = analyze(load_graph(model))
        rows_cols = None if args.grid == "auto" else tuple(int(v) for v in args.grid.split("x"))
        plan = plan_tiles(analysis, 2, load_device("rockpro64"), rows_cols, args.fuse_until, stacks=args.stacks,
                          fc_split=args.fc_split)  # type: ignore[arg-type]
        nine = plan_tiles(analysis, 2, load_device("rockpro64"), (3, 3), "maxpool3_out", stacks=1).grid
        outdir = work / f"tiles-{size}"
        shutil.rmtree(outdir, ignore_errors=True)
        document = write_tiles(analysis, plan, outdir, reuse=args.reuse).to_dict()
        counted = [sum(c.macs for c in analyze(load_graph(outdir / name)).nodes) for name in document["artifacts"]["tiles"]]
        saved = document["reuse"].get("saved_macs", 0)
        report = run_tile_bench(outdir, TileBenchOptions(workers=2, images=args.images, handoff=args.handoff)).to_dict()
        one, two = report["scaling"]
        rows.append({
            "size": size,
            "tiles_1_worker_s": one["tiles_phase_s"], "tiles_2_workers_s": two["tiles_phase_s"],
            "tiles_speedup": two["tiles_speedup"],
            "image_1_worker_s": one["wall_s"], "image_2_workers_s": two["wall_s"], "image_speedup": two["speedup"],
            "grid": args.grid, "handoff": args.handoff,
            "stacks": report.get("stack_labels"),
            "stack_speedups": two.get("stack_speedups"),
            "remainder_1_worker_s": one.get("remainder_s"), "remainder_2_workers_s": two.get("remainder_s"),
            "reuse_saved_macs": saved,
            "peak_fraction_3x3": nine.max_tile_peak_bytes / nine.stack_peak_bytes,
            "redundant_macs_ratio": document["redundant_macs_ratio"],
            "macs_as_predicted": counted == [t["macs"] for t in document["tiles"]],
            "outputs_match": report["outputs_match"], "max_abs_err": report["max_abs_err"],
        })
        shutil.rmtree(outdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"images": args.images, "cores": os.cpu_count(), "rows": rows}, indent=1))
        return
    print(f"VGG-16 tiled up to {args.fuse_until} in {args.stacks} stack(s), {args.grid} tiles timed (peak: 3x3 one stack to "
          f"maxpool3), Dask LocalCluster, median of {args.images} images, {os.cpu_count()} cores")
    print(f"{'input':>6} {'tiles 1w':>9} {'tiles 2w':>9} {'speedup':>8} {'image 1w':>9} {'image 2w':>9} {'speedup':>8} "
          f"{'peak3x3':>7} {'redundant':>9} {'MACs ok':>7}")
    for r in rows:
        print(f"{r['size']:>6} {r['tiles_1_worker_s'] * 1e3:>7.1f}ms {r['tiles_2_workers_s'] * 1e3:>7.1f}ms "
              f"{r['tiles_speedup']:>7.2f}x {r['image_1_worker_s'] * 1e3:>7.1f}ms {r['image_2_workers_s'] * 1e3:>7.1f}ms "
              f"{r['image_speedup']:>7.2f}x {r['peak_fraction_3x3']:>7.1%} {r['redundant_macs_ratio']:>9.1%} {str(r['macs_as_predicted']):>7}")
    for r in rows:
        if r["stacks"] and len(r["stacks"]) > 1:
            print(f"{r['size']:>6} per stack, 2 workers against 1: " + ", ".join(
                f"{label} {x:.2f}x" for label, x in zip(r["stacks"], r["stack_speedups"]))
                + f"; after the tiles on the client {r['remainder_1_worker_s'] * 1e3:.1f} ms and "
                  f"{r['remainder_2_workers_s'] * 1e3:.1f} ms")
    print("targets: tiles speedup >= 1.7:", all(r["tiles_speedup"] >= 1.7 for r in rows),
          "| 3x3 peak <= 32%:", all(r["peak_fraction_3x3"] <= 0.32 for r in rows),
          "| MACs as predicted:", all(r["macs_as_predicted"] for r in rows))


if __name__ == "__main__":
    main()
