"""Does a profile fitted on one model predict other models on the same machine?

`splitnn profile` is fitted on --train models; each --test model is then timed
plainly (an onnxruntime session at the profile's optimization level, no
profiler; median of --runs after warm-up) and predicted with the fitted
profile and with the `host` micro-benchmark profile. Prints the errors, the
figure of merit being |predicted / measured - 1| on models not in the fit.

    python benchmarks/bench_profile_fit.py --runs 20 [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SAMPLES = {"resnet18": None, "mobilenet": None, "alexnet": None, "vgg16": None}


def _model_paths(work: Path) -> dict[str, Path]:
    paths = {}
    for name in SAMPLES:
        path = work / f"{name}.onnx"
        if not path.exists():
            subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", name, "-o", str(path)], cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL)
        paths[name] = path
    from tests.helpers import (  # found without importing OpenCV
        DET_MODEL,
        REC_MODEL,
        rapidocr_model,
    )

    paths["ocr-det"] = rapidocr_model(DET_MODEL)
    paths["ocr-rec"] = rapidocr_model(REC_MODEL)
    return paths


SHAPES = {"ocr-det": {"x": (1, 3, 320, 320)}, "ocr-rec": {"x": (1, 3, 48, 320)}}


def plain_seconds(graph, runs: int, level: str) -> float:  # type: ignore[no-untyped-def]
    from splitnn.onnxsplit.core.ort_session import median_run_seconds
    from splitnn.onnxsplit.model.sample_inputs import random_inputs
    from splitnn.onnxsplit.model.weight_source import open_in_place

    session = open_in_place(graph.model, graph.initializers, graph.path, level=level)
    return median_run_seconds(session, random_inputs(graph), runs, warmup=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", nargs="+", default=["resnet18"])
    parser.add_argument("--test", nargs="+", default=["resnet18", "mobilenet", "alexnet", "vgg16", "ocr-det", "ocr-rec"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from splitnn.cost_models.catalog import load_device
    from splitnn.cost_models.fitting import fit_profile
    from splitnn.cost_models.latency import seconds
    from splitnn.cost_models.node_timing import time_nodes
    from splitnn.cost_models.registry import node_costs
    from splitnn.onnxsplit.model.loading import load_graph

    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-bench-"))
    paths = _model_paths(work)
    graphs = {name: load_graph(paths[name], SHAPES.get(name)) for name in set(args.train) | set(args.test)}
    host = load_device("host")
    measurements = [(graphs[name], time_nodes(graphs[name], runs=args.runs)) for name in args.train]
    fit = fit_profile(measurements, host, "fitted")
    fitted = fit.profile
    rows = []
    for name in args.test:
        graph = graphs[name]
        costs = node_costs(graph)
        placed = [n.index for n in graph.nodes if not n.is_constant]
        measured = plain_seconds(graph, args.runs, "basic")
        row = {"model": name, "in_fit": name in args.train, "measured_s": measured,
               "fitted_s": seconds(graph, costs, placed, fitted), "host_s": seconds(graph, costs, placed, host)}
        row["fitted_error"] = row["fitted_s"] / measured - 1
        row["host_error"] = row["host_s"] / measured - 1
        rows.append(row)
    held_out = [r for r in rows if not r["in_fit"]]
    summary = {
        "train": args.train,
        "runs": args.runs,
        "rows": rows,
        "median_abs_error_held_out": {
            "fitted": statistics.median(abs(r["fitted_error"]) for r in held_out) if held_out else None,
            "host": statistics.median(abs(r["host_error"]) for r in held_out) if held_out else None,
        },
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"fitted on {', '.join(args.train)}; plain onnxruntime runs (basic level), median of {args.runs}")
    print(f"{'model':<10} {'measured ms':>12} {'fitted ms':>10} {'error':>7} {'host ms':>9} {'error':>7}")
    for r in rows:
        mark = " (in fit)" if r["in_fit"] else ""
        print(f"{r['model']:<10} {r['measured_s'] * 1e3:12.2f} {r['fitted_s'] * 1e3:10.2f} {r['fitted_error']:+7.1%} "
              f"{r['host_s'] * 1e3:9.2f} {r['host_error']:+7.1%}{mark}")
    m = summary["median_abs_error_held_out"]
    if held_out:
        print(f"median |error| on held-out models: fitted {m['fitted']:.1%}, host micro-benchmarks {m['host']:.1%}")


if __name__ == "__main__":
    main()
