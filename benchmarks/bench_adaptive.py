"""Adaptive plans against static cuts on the shipped traces (issue 13's targets).

For each model (rockpro64 device, cloud-cpu server) and each trace: `splitnn partition --adaptive --trace T`
(the kept cuts for the trace's range of rates), then `splitnn run-bench --trace T --duration D --deadline
1.5 x all-on-device --compare-static`, which replays the trace once adaptively and once per kept cut held
fixed (all on the device among them). Prints, per run: requests, answered remote / local, errors, deadline
misses, p50 / p99 / mean end to end, and the two ratios the issue targets: adaptive mean over the best static
cut's mean (target <= 0.8), adaptive p99 over all-on-device's p99 (target <= 1.1).

    python benchmarks/bench_adaptive.py [--models vgg16,resnet18] [--traces commute-lte,wifi-to-3g] [--duration 60]
                                        [--deadline-factor 1.5 (0: none)]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cli_runs import sample_model  # noqa: E402
from benchmarks.cli_runs import splitnn_json as _splitnn


def _row(model: str, trace: str, duration: float, work: Path, deadline_factor: float) -> list[str]:
    path = sample_model(model, work)
    trace_file = REPO / "traces" / f"{trace}.csv"
    outdir = work / f"{model}-{trace}"
    plan = _splitnn("partition", str(path), "-o", str(outdir), "--adaptive", "--trace", str(trace_file), "--no-ort",
                    cwd=work)
    alone = next(k for k in plan["kept"] if k["server_model"] is None)
    deadline = deadline_factor * alone["predicted"]["device_s"]
    report = _splitnn("run-bench", str(outdir), "--trace", str(trace_file), "--duration", str(duration),
                      *(["--deadline", f"{deadline * 1e3:.0f}ms"] if deadline_factor else []), "--compare-static",
                      cwd=work)
    static = report["static"]
    best = min(static, key=lambda r: r["e2e_s"]["mean"])
    device = next(r for r in static if r.get("held_cut") == alone["cut"]["id"])
    lines = []
    for run in (report, *static):
        e = run["e2e_s"]
        name = "adaptive" if run.get("held_cut") is None else f"cut {run['held_cut']} held"
        lines.append(f"| {model} | {trace} | {name} | {run['requests']} | {run['answered_remote']} | "
                     f"{run['answered_local']} | {run['errors']} | {run['deadline_missed']} | {e['p50'] * 1e3:.0f} | "
                     f"{e['p99'] * 1e3:.0f} | {e['mean'] * 1e3:.0f} |")
    lines.append(f"| {model} | {trace} | **ratios** | adaptive mean / best static ({best['held_cut']}) "
                 f"{report['e2e_s']['mean'] / best['e2e_s']['mean']:.2f} | adaptive p99 / all on the device p99 "
                 f"{report['e2e_s']['p99'] / device['e2e_s']['p99']:.2f} | | | | | | |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg16,resnet18")
    parser.add_argument("--traces", default="commute-lte,wifi-to-3g")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--deadline-factor", type=float, default=1.5,
                        help="the deadline as a multiple of the board's own time (0: no deadline)")
    args = parser.parse_args()
    print("| model | trace | run | requests | remote | local | errors | deadline missed | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="splitnn-adaptive-") as folder:
        for model in args.models.split(","):
            for trace in args.traces.split(","):
                for line in _row(model, trace, args.duration, Path(folder), args.deadline_factor):
                    print(line, flush=True)


if __name__ == "__main__":
    main()
