"""Adaptive plans against static cuts on the shipped traces (issue 13's targets).

For each model (rockpro64 device, cloud-cpu server) and each trace: `splitnn partition --adaptive --trace T`
(the kept cuts for the trace's range of rates), then `splitnn run-bench --trace T --duration D --deadline
1.5 x all-on-device --compare-static`, which replays the trace once adaptively and once per kept cut held
fixed (all on the device among them). Prints, per run: requests, answered remote / local, errors, deadline
misses, p50 / p99 / mean end to end, and the two ratios the issue targets: adaptive mean over the best static
cut's mean (target <= 0.8), adaptive p99 over all-on-device's p99 (target <= 1.1). Beside them, what
perfect knowledge could reach: per request, the kept cut with the lowest predicted latency at the trace's
true rate, over the best static cut's predicted mean at the same moments (the "oracle" ratio; when it is
above 0.8 the target cannot be met on that replay by any choice of cuts). And the estimate: its error
against the trace's rate at the first request 2 s or more after each change of the rate by 1.5x or more.

--drill: the outage target instead. VGG-16 at 112x112 planned --adaptive for a 100 Mbit/s link with
WiFi's round trip (so that the server is worth using) over 1-200 Mbit/s, then `run-bench --requests
1000 --deadline 1.5 x all-on-device` on that link, down for 4 s every 20 s; prints the counts and the
share of the run the link was down.

    python benchmarks/bench_adaptive.py [--models vgg16,resnet18] [--traces commute-lte,wifi-to-3g] [--duration S]
                                        [--deadline-factor 1.5 (0: none)]
    python benchmarks/bench_adaptive.py --drill [--requests 1000]
    python benchmarks/bench_adaptive.py --models vgg16 --codec webp:90 --calibration PHOTOS [--max-output-change C]

With --codec the adaptive plans send their cuts in it (an image codec: only the cut that sends the input, the
others as float32), measured on the --calibration images, and the replays send the first of those images.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.cli_runs import sample_model  # noqa: E402
from benchmarks.cli_runs import splitnn_json as _splitnn  # noqa: E402


def _row(model: str, trace: str, duration: float | None, work: Path, deadline_factor: float,
         coding: tuple[str, ...] = ()) -> list[str]:
    path = sample_model(model, work)
    trace_file = REPO / "traces" / f"{trace}.csv"
    if duration is None:  # the whole trace: to its last step's start, and one step more
        steps = read_trace(trace_file)
        duration = steps[-1][0] + (steps[-1][0] - steps[0][0]) / max(len(steps) - 1, 1)
    outdir = work / f"{model}-{trace}"
    plan = _splitnn("partition", str(path), "-o", str(outdir), "--adaptive", "--trace", str(trace_file), "--no-ort",
                    *coding, cwd=work)
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
    kept = json.loads((outdir / "plan.json").read_text())["kept"]
    lines.append(f"| {model} | {trace} | **ratios** | adaptive mean / best static ({best['held_cut']}) "
                 f"{report['e2e_s']['mean'] / best['e2e_s']['mean']:.2f} | adaptive p99 / all on the device p99 "
                 f"{report['e2e_s']['p99'] / device['e2e_s']['p99']:.2f} | oracle / best static, predicted "
                 f"{oracle_ratio(kept, report['points']):.2f} | estimate 2 s after a change: "
                 f"{_estimate_summary(report['points'], read_trace(trace_file))} | | | |")
    return lines


def oracle_ratio(kept: list[dict], points: list[dict]) -> float:
    """Predicted mean latency with the best kept cut at each request's true rate, over the best single cut's."""
    def latency(k: dict, bps: float) -> float:
        return k["fixed_s"] + k["wire_bits"] / bps

    rates = [p["true_bps"] for p in points]
    oracle = statistics.fmean(min(latency(k, r) for k in kept) for r in rates)
    static = min(statistics.fmean(latency(k, r) for r in rates) for k in kept)
    return oracle / static


def estimate_checks(points: list[dict], trace: list[tuple[float, float]], settle_s: float = 2.0,
                    factor: float = 1.5) -> list[tuple[float, float]]:
    """(estimate / true rate - 1, seconds since the trace last stepped) at the first request `settle_s` after each
    change of the trace's rate by `factor` or more (that has a request before the next change)."""
    changes = [t for (t, r), (_, before) in zip(trace[1:], trace) if max(r / before, before / r) >= factor]
    steps = [t for t, _ in trace]
    checks = []
    for i, change in enumerate(changes):
        end = changes[i + 1] if i + 1 < len(changes) else float("inf")
        after = next((p for p in points if change + settle_s <= p["t_s"] < end and p["estimate_bps"]), None)
        if after is not None:
            stepped = after["t_s"] - max(t for t in steps if t <= after["t_s"])
            checks.append((after["estimate_bps"] / after["true_bps"] - 1, stepped))
    return checks


def _estimate_summary(points: list[dict], trace: list[tuple[float, float]]) -> str:
    checks = estimate_checks(points, trace)
    if not checks:
        return "no change with a request 2 s after it"
    errors = [e for e, _ in checks]
    within = sum(abs(e) <= 0.2 for e in errors)
    # The shipped traces step every 0.5 s, so "2 s after a change" falls on a step: say how many misses came
    # within 0.25 s of one (the rate compared with had just changed, by up to 1.5x).
    fresh = sum(abs(e) > 0.2 and stepped < 0.25 for e, stepped in checks)
    return (f"{within} of {len(errors)} within 20% ({fresh} of the misses within 0.25 s of a step of the trace), "
            f"median |error| {statistics.median(abs(e) for e in errors):.0%}, worst {max(errors, key=abs):+.0%}")


def read_trace(path: Path) -> list[tuple[float, float]]:
    from splitnn.cost_models.link_traces import read_trace as read

    return list(read(path))  # (time_s, bits per second) steps


def drill(requests: int, work: Path) -> None:
    """The outage target: every request answered within the deadline while the link goes down."""
    path = sample_model("vgg16", work, input_size=112)
    outdir = work / "vgg16-112-drill"
    _splitnn("partition", str(path), "-o", str(outdir), "--adaptive", "--link", "wifi", "--bandwidth", "100Mbit",
             "--bandwidth-range", "1Mbit-200Mbit", "--no-ort", cwd=work)
    plan = json.loads((outdir / "plan.json").read_text())
    alone = next(k for k in plan["kept"] if k["server_model"] is None)
    deadline = 1.5 * alone["predicted"]["device_s"]
    outages = [(start, start + 4) for start in range(5, 400, 20)]
    report = _splitnn("run-bench", str(outdir), "--link", "wifi", "--bandwidth", "100Mbit", "--requests", str(requests), "--deadline",
                      f"{deadline * 1e3:.0f}ms", *(a for o in outages for a in ("--outage", f"{o[0]}-{o[1]}")), cwd=work)
    points = report["points"]
    run_s = points[-1]["t_s"] + points[-1]["e2e_s"]
    down = sum(max(0.0, min(end, run_s) - start) for start, end in outages)
    e = report["e2e_s"]
    print(f"kept cuts {[k['cut']['id'] for k in plan['kept']]}; deadline {deadline * 1e3:.0f} ms (1.5 x "
          f"{alone['predicted']['device_s'] * 1e3:.0f} ms on the device)")
    print(f"{report['requests']} requests over {run_s:.0f} s, link down {down:.0f} s ({down / run_s:.0%} of the run): "
          f"{report['answered_remote']} remote, {report['answered_local']} local, {report['errors']} errors, "
          f"{report['deadline_missed']} past the deadline; p50 {e['p50'] * 1e3:.0f} ms, p99 {e['p99'] * 1e3:.0f} ms, "
          f"max {max(p['e2e_s'] for p in points) * 1e3:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="vgg16,resnet18")
    parser.add_argument("--traces", default="commute-lte,wifi-to-3g")
    parser.add_argument("--duration", type=float, help="seconds of each replay (default: the trace's length)")
    parser.add_argument("--deadline-factor", type=float, default=1.5,
                        help="the deadline as a multiple of the board's own time (0: no deadline)")
    parser.add_argument("--drill", action="store_true", help="the outage drill instead of the trace replays")
    parser.add_argument("--requests", type=int, default=1000, help="requests of the drill")
    parser.add_argument("--codec", help="partition --codec for the adaptive plans (e.g. webp:90; with --calibration)")
    parser.add_argument("--calibration", type=Path, help="partition --calibration: the images the codec is measured "
                        "on; run-bench then sends the first of them")
    parser.add_argument("--preprocess", default="imagenet", help="partition --preprocess for --calibration")
    parser.add_argument("--max-output-change", help="partition --max-output-change")
    args = parser.parse_args()
    if args.drill:
        with tempfile.TemporaryDirectory(prefix="splitnn-drill-") as folder:
            drill(args.requests, Path(folder))
        return
    coding: tuple[str, ...] = ()
    if args.codec:
        coding = ("--codec", args.codec)
        if args.calibration:
            coding += ("--calibration", str(args.calibration.resolve()), "--preprocess", args.preprocess)
        if args.max_output_change:
            coding += ("--max-output-change", args.max_output_change)
    print("| model | trace | run | requests | remote | local | errors | deadline missed | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="splitnn-adaptive-") as folder:
        for model in args.models.split(","):
            for trace in args.traces.split(","):
                for line in _row(model, trace, args.duration, Path(folder), args.deadline_factor, coding):
                    print(line, flush=True)


if __name__ == "__main__":
    main()
