"""README command 1's stream: its frames per second as measured, against what run-bench predicts for the run.

Builds the AlexNet sample, splits it as README command 1 does (rockpro64, WiFi,
throughput), then runs `run-bench --requests 20 --stream --json` RUNS times and
prints, per run and as medians, the measured frames per second, the prediction
for this run (the server on this host, the emulated link, this host's cores
shared by the emulated board and the server) and the plan's own prediction.
Target (issue 30, item 3): this run's prediction within 15% of the measured
frames per second, median of 3 runs.

    python benchmarks/bench_readme_stream.py [--runs 3] [--workdir DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def _splitnn(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "splitnn.cli", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"splitnn {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="where to build the sample (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-readme-"))
    work.mkdir(parents=True, exist_ok=True)
    _splitnn("samples", "build", "alexnet", "-o", "out/alexnet.onnx", cwd=work)
    _splitnn("partition", "out/alexnet.onnx", "-o", "out/alexnet-split", "--device", "rockpro64", "--link", "wifi",
             "--objective", "throughput", cwd=work)
    runs = []
    for _ in range(args.runs):
        report = json.loads(_splitnn("run-bench", "out/alexnet-split", "--requests", "20", "--stream", "--json",
                                     cwd=work))
        runs.append({"measured_fps": report["stream"]["throughput_fps"],
                     "this_run_fps": report["this_run"]["predicted"]["throughput_fps"],
                     "plan_fps": report["predicted"]["throughput_fps"],
                     "server_ms": report["stages"]["server_s"]["p50"] * 1e3,
                     "server_this_run_ms": report["this_run"]["predicted"]["server_s"] * 1e3,
                     "shared_cores_ms": (report["this_run"].get("shared_cores_s") or 0) * 1e3})
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result = {"runs": runs, "median": medians,
              "error_this_run": medians["this_run_fps"] / medians["measured_fps"] - 1,
              "error_plan": medians["plan_fps"] / medians["measured_fps"] - 1}
    result["target_within_15_percent"] = abs(result["error_this_run"]) <= 0.15
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for k, run in enumerate(runs, 1):
        print(f"run {k}: measured {run['measured_fps']:.2f} fps, this run predicted {run['this_run_fps']:.2f}, "
              f"plan {run['plan_fps']:.2f}; server {run['server_ms']:.1f} ms (predicted {run['server_this_run_ms']:.1f})")
    print(f"median: measured {medians['measured_fps']:.2f} fps, this run predicted {medians['this_run_fps']:.2f} "
          f"({result['error_this_run']:+.1%}), plan {medians['plan_fps']:.2f} ({result['error_plan']:+.1%}); "
          f"target (within 15%) {'met' if result['target_within_15_percent'] else 'MISSED'}")


if __name__ == "__main__":
    main()
