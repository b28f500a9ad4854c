"""Tiles on the CNNs users export (issue 31, item 5): every CNN of the test corpus on 2 nodes.

Per model: the automatic tile plan (`plan_tiles`, 2 nodes of --node-profile, by default this machine with
onnxruntime on one thread as each worker runs it; the tiles' bytes priced at the embedded cluster's link,
measured first by sending an array to a worker and back), written and verified
(`write_tiles`), then run on an embedded Dask LocalCluster with 1 and 2 workers
(`run_tile_bench`), --repeats times. Reported per model: the stacks (layers,
grid, maps handed on), where the tileable region stops (node, op, why), the
share of the MACs before the model's first layer that mixes the whole map that
the plan tiles (and that its longest possible stack reaches; past 100% where
the stacks go on past squeeze-and-excitation blocks, `+` before a stack that
starts with the client's vector step), the plan's share of all the MACs, and the tiles
phase and whole image speedup of 2 workers over 1, predicted (the plan's own
model of its tiles on one node and on two, each stack's round trip in both)
and measured (medians over the repeats, each a median over --images images).

Targets (issue 31): reach >= 80% of the MACs before the first whole-map layer
on every model; tiles phase >= 1.6x and whole image >= 1.5x on the three
models with the most MACs.

    python benchmarks/bench_real_tiles.py [--models yolov8n,picodet] [--images 5] [--repeats 3] [--handoff client,workers] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitnn.cost_models.catalog import load_device  # noqa: E402
from splitnn.onnxsplit.analysis.analyze import analyze  # noqa: E402
from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench  # noqa: E402
from splitnn.onnxsplit.model.loading import load_graph  # noqa: E402
from splitnn.onnxsplit.tiles.export import write_tiles  # noqa: E402
from splitnn.onnxsplit.tiles.planning import plan_tiles  # noqa: E402
from tests.helpers import (  # noqa: E402
    CLS_MODEL,
    DET_MODEL,
    LAYOUT,
    MTCNN_ONET,
    MTCNN_PNET,
    NUDENET,
    ORIENTATION,
    REC_MODEL,
    packaged_model,
    rapidocr_model,
)

# Each corpus CNN at the size its package runs it (the detectors at a typical photo size).
MODELS = {
    "ocr_det": (lambda: rapidocr_model(DET_MODEL), {"x": (1, 3, 640, 640)}),
    "ocr_cls": (lambda: rapidocr_model(CLS_MODEL), {"x": (1, 3, 48, 192)}),
    "ocr_rec": (lambda: rapidocr_model(REC_MODEL), {"x": (1, 3, 48, 320)}),
    "yolov8n": (lambda: packaged_model(*NUDENET[:2]), {"images": (1, 3, 320, 320)}),
    "picodet": (lambda: packaged_model(*LAYOUT[:2]), {"image": (1, 3, 800, 608)}),
    "mtcnn_pnet": (lambda: packaged_model(*MTCNN_PNET[:2]), MTCNN_PNET[2]),
    "mtcnn_onet": (lambda: packaged_model(*MTCNN_ONET[:2]), MTCNN_ONET[2]),
    "orientation": (lambda: packaged_model(*ORIENTATION[:2]), ORIENTATION[2]),
}


def cluster_link_bps(megabytes: int = 16, repeats: int = 7) -> float:
    """The embedded cluster's link, measured: an array sent to a worker and back through Dask (the median
    of `repeats`), in bits per second. It is what the tiles' crops and outputs cross on this machine."""
    import time

    import numpy as np

    from splitnn.onnxsplit.tiles.dask_runtime import dask_client

    payload = np.ones(megabytes * 250_000, np.float32)
    with dask_client(1, None) as client:
        client.submit(np.copy, payload[:10], pure=False).result()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            client.submit(np.copy, payload, pure=False).result()
            times.append(time.perf_counter() - start)
    return 2 * payload.nbytes * 8 / statistics.median(times)


def measure(name: str, work: Path, images: int, repeats: int, profile: str, link_bps: float, emulate: bool,
            handoffs: tuple[str, ...] = ("client",)) -> dict:
    model, shapes = MODELS[name]
    analysis = analyze(load_graph(model(), shapes))
    plan = plan_tiles(analysis, 2, load_device(profile), cluster_link_bps=link_bps)
    outdir = work / name
    shutil.rmtree(outdir, ignore_errors=True)
    document = write_tiles(analysis, plan, outdir)
    # The hand-offs take turns, repeat by repeat, so that the machine's drift falls on each alike.
    by_handoff: dict[str, list[dict]] = {handoff: [] for handoff in handoffs}
    for _ in range(repeats):
        for handoff in handoffs:
            by_handoff[handoff].append(run_tile_bench(outdir, TileBenchOptions(
                workers=2, images=images, emulate_nodes=emulate, handoff=handoff)).to_dict())
    shutil.rmtree(outdir, ignore_errors=True)
    runs = by_handoff[handoffs[0]]
    two = [run["scaling"][1] for run in runs]
    c = plan.coverage
    assert c is not None
    stop = c.stops[0] if c.stops else None
    return {
        "model": name, "inputs": {k: list(v) for k, v in shapes.items()}, "model_macs": c.model_macs,
        "stacks": [{"layers": len(p.stack), "grid": f"{p.grid.rows}x{p.grid.cols}", "maps_out": len(p.grid.output_names),
                    "maps_in": len(p.grid.inputs), "redundant_macs": p.grid.redundant_macs_ratio,
                    "client_step": p.before is not None} for p in plan.stacks],
        "region_client_steps": c.client_steps,
        "tiled_of_model": plan.tiled_macs_total / c.model_macs,
        "tiled_time_share": plan.tiled_time_share,
        "region_stops_at": None if stop is None else f"{stop.node} ({stop.op_type}): {stop.reason}",
        "whole_map_layer": f"{c.whole_map_node} ({c.whole_map_op})",
        "tiled_of_before_whole_map": plan.tiled_macs_total / c.macs_before_whole_map,
        "reach_of_before_whole_map": c.deepest_stack_macs / c.macs_before_whole_map,
        # The plan's own figures for its tiles on one node against two (each stack's round trip in both), as the
        # run measures them.
        "predicted_tiles_speedup": one_node_tiles_s(plan) / plan.tiles_phase_s,
        "predicted_image_speedup": (one_node_tiles_s(plan) + plan.remainder_s) / plan.makespan_s,
        "tiles_speedup": statistics.median(t["tiles_speedup"] for t in two),
        "image_speedup": statistics.median(t["speedup"] for t in two),
        "transfer_mb": sum(p.transfer_bytes for p in plan.stacks) / 1e6,
        "tiles_2_workers_ms": statistics.median(t["tiles_phase_s"] for t in two) * 1e3,
        "image_2_workers_ms": statistics.median(t["wall_s"] for t in two) * 1e3,
        "tiles_2_workers_predicted_ms": plan.tiles_phase_s * 1e3, "image_2_workers_predicted_ms": plan.makespan_s * 1e3,
        # The model untiled on one node (the plan's prediction; emulated nodes take exactly that) against the image
        # on two nodes.
        "untiled_one_node_ms": plan.single_node_s * 1e3,
        "emulated_nodes": emulate,
        "outputs_match": all(run["outputs_match"] for runs in by_handoff.values() for run in runs)
        and document.verification.passed,
        "handoff": handoffs[0],
        # Every hand-off measured (--handoff): the median tiles phase and image on 2 workers, and 2 against 1.
        "handoffs": {handoff: {
            "tiles_2_workers_ms": statistics.median(run["scaling"][1]["tiles_phase_s"] for run in runs) * 1e3,
            "image_2_workers_ms": statistics.median(run["scaling"][1]["wall_s"] for run in runs) * 1e3,
            "tiles_speedup": statistics.median(run["scaling"][1]["tiles_speedup"] for run in runs),
            "image_speedup": statistics.median(run["scaling"][1]["speedup"] for run in runs),
        } for handoff, runs in by_handoff.items()},
    }


def one_node_tiles_s(plan) -> float:  # type: ignore[no-untyped-def]
    """The plan's tiles phase predicted on one node: every tile in turn, and each stack's round trip."""
    return plan.tiles_phase_s - sum(p.phase_s for p in plan.stacks) + sum(sum(p.tile_seconds) for p in plan.stacks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--node-profile", default="host-1thread",
                        help="the nodes planned for (default: this machine on one onnxruntime thread, as each Dask "
                             "worker runs the tiles)")
    parser.add_argument("--emulate", action="store_true",
                        help="hold every node to the plan's predicted times on --node-profile (run-bench "
                             "--emulate-nodes): boards slower than this host, emulated on its cores")
    parser.add_argument("--handoff", default="client",
                        help="client, workers, or both as client,workers: how later stacks get their maps "
                             "(run-bench --handoff); the table's speedups are the first's, and each one's times "
                             "follow it")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="splitnn-real-tiles-"))
    on_host = args.node_profile.startswith("host")
    # The tiles' bytes cross this host's loopback whatever the nodes are (emulated nodes keep this host's link).
    link_bps = cluster_link_bps() if on_host or args.emulate else 1e9
    handoffs = tuple(args.handoff.split(","))
    rows = [measure(name, work, args.images, args.repeats, args.node_profile, link_bps, args.emulate, handoffs)
            for name in args.models.split(",")]
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"images": args.images, "repeats": args.repeats, "cores": os.cpu_count(),
                          "cluster_link_bps": link_bps, "rows": rows}, indent=1))
        return
    print(f"Corpus CNNs, automatic 2-node tile plans, Dask LocalCluster, median of {args.repeats} runs of "
          f"{args.images} images, {os.cpu_count()} cores; tiles' bytes priced at {link_bps / 1e9:.2f} Gbit/s "
          f"({'measured through the embedded cluster' if on_host or args.emulate else 'a gigabit LAN'})"
          + (f"; nodes emulated as {args.node_profile}" if args.emulate else ""))
    print(f"{'model':<12} {'GMAC':>6} {'stacks (layers grid maps-out)':<44} {'tiled':>6} {'reach':>6} {'of all':>6} "
          f"{'tiles pred':>10} {'tiles meas':>10} {'image pred':>10} {'image meas':>10} match")
    for r in rows:
        stacks = ", ".join(f"{'+' if s['client_step'] else ''}{s['layers']} {s['grid']} {s['maps_out']}"
                           for s in r["stacks"])
        print(f"{r['model']:<12} {r['model_macs'] / 1e9:>6.2f} {stacks:<44} {r['tiled_of_before_whole_map']:>6.0%} "
              f"{r['reach_of_before_whole_map']:>6.0%} {r['tiled_of_model']:>6.0%} "
              f"{r['predicted_tiles_speedup']:>9.2f}x {r['tiles_speedup']:>9.2f}x "
              f"{r['predicted_image_speedup']:>9.2f}x {r['image_speedup']:>9.2f}x {r['outputs_match']}")
    for r in rows:
        print(f"{r['model']}: tiles on 2 nodes {r['tiles_2_workers_ms']:.1f} ms measured, "
              f"{r['tiles_2_workers_predicted_ms']:.1f} predicted; image {r['image_2_workers_ms']:.1f} measured, "
              f"{r['image_2_workers_predicted_ms']:.1f} predicted; the model untiled on one node "
              f"{r['untiled_one_node_ms']:.1f} predicted ({r['untiled_one_node_ms'] / r['image_2_workers_ms']:.2f}x "
              "the measured image)")
    for r in rows:
        if len(r["handoffs"]) > 1:
            print(f"{r['model']}: " + "; ".join(
                f"hand-off {h}: tiles {f['tiles_2_workers_ms']:.1f} ms ({f['tiles_speedup']:.2f}x), image "
                f"{f['image_2_workers_ms']:.1f} ms ({f['image_speedup']:.2f}x)" for h, f in r["handoffs"].items()))
    for r in rows:
        print(f"{r['model']}: region stops at {r['region_stops_at']}; first whole-map layer {r['whole_map_layer']}")
    top = sorted(rows, key=lambda r: -r["model_macs"])[:3]
    print("targets: reach >= 80% on every model:", all(r["reach_of_before_whole_map"] >= 0.8 for r in rows),
          "| tiles >= 1.6x on the 3 largest:", all(r["tiles_speedup"] >= 1.6 for r in top),
          "| image >= 1.5x on the 3 largest:", all(r["image_speedup"] >= 1.5 for r in top))


if __name__ == "__main__":
    main()
