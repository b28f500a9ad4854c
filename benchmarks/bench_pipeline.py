"""One model over four unequal machines (issue 33, item 7): the VGG-16 sample planned and run as a pipeline.

The machines: two RockPro64 boards on WiFi (the first holds the camera: the source), a Raspberry Pi 4 on WiFi
to both, and a cloud-cpu server over 4G from the Pi. For each objective the plan is written by
`splitnn.partition(..., machines=...)` and run by `splitnn.run_bench` (a process per stage held to its machine's
predicted time, every link emulated in user space): latency p50 one request at a time and the stream's frames per
second, beside the plan's prediction and the prediction for this run (a stage this host runs slower than its
profile at this host's speed; this host's cores); then, in the same run, the best two-machine plan and the
source alone, each planned again, written and run the same way (run-bench's baselines), and the plan's
measured frames per second and latency against each one's.

With --time-scale K every time of the runs is dilated by K (run-bench --time-scale), for a host slower than a
machine of the plan; the figures are divided back.

    python benchmarks/bench_pipeline.py [--size 224] [--requests 10] [--time-scale 1] [--json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import splitnn  # noqa: E402
from splitnn.onnxsplit.core.atomic_files import save_model_atomic  # noqa: E402
from splitnn.sample_models.catalog import build_sample  # noqa: E402

MACHINES = """
[[machine]]
name = "board1"
profile = "rockpro64"
source = true

[[machine]]
name = "board2"
profile = "rockpro64"

[[machine]]
name = "pi"
profile = "raspberry-pi-4"

[[machine]]
name = "cloud"
profile = "cloud-cpu"

[[link]]
between = ["board1", "board2"]
preset = "wifi"

[[link]]
between = ["board1", "pi"]
preset = "wifi"

[[link]]
between = ["board2", "pi"]
preset = "wifi"

[[link]]
between = ["pi", "cloud"]
preset = "4g"
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="splitnn-pipeline-"))
    (work / "machines.toml").write_text(MACHINES)
    model = work / "vgg16.onnx"
    save_model_atomic(build_sample("vgg16", args.size), model, external_data=True)
    rows = []
    for objective in ("latency", "throughput"):
        plan = splitnn.partition(model, work / objective, machines=work / "machines.toml", objective=objective)
        report = splitnn.run_bench(work / objective, requests=args.requests, stream=True, time_scale=args.time_scale)
        rows.append({"objective": objective, "machines": list(plan.predicted.machines), "report": report.to_dict()})
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        r = row["report"]
        print(f"{row['objective']}: {' -> '.join(row['machines'])} (every time dilated by {r['time_scale']:g})")
        print(f"  latency p50 {r['latency_p50_s'] * 1e3:.1f} ms (p95 {r['latency_p95_s'] * 1e3:.1f}); predicted "
              f"{r['predicted_latency_s'] * 1e3:.1f} by the plan, {r['run_predicted_latency_s'] * 1e3:.1f} for this run")
        print(f"  stream {r['stream_fps']:.2f} frames/s; predicted {r['predicted_fps']:.2f} by the plan, "
              f"{r['run_predicted_fps']:.2f} for this run")
        for b in r["baselines"]:
            fps = b["stream_fps"] or float("nan")
            print(f"  baseline, {b['name']} ({' -> '.join(b['machines'])}): latency p50 {b['latency_p50_s'] * 1e3:.1f} "
                  f"ms (predicted {b['predicted_latency_s'] * 1e3:.1f}, {b['run_predicted_latency_s'] * 1e3:.1f} for "
                  f"its run), stream {fps:.2f} frames/s (predicted {b['predicted_fps']:.2f}, "
                  f"{b['run_predicted_fps']:.2f} for its run); the plan: {r['stream_fps'] / fps:.2f}x its frames/s, "
                  f"{b['latency_p50_s'] / r['latency_p50_s']:.2f}x faster an answer; its outputs match: "
                  f"{b['outputs_match']}")
        for s in r["stages"]:
            print(f"  stage {s['machine']}: predicted {s['predicted_s'] * 1e3:.1f} ms, measured {s['measured_s'] * 1e3:.1f}"
                  + (" (this host slower)" if s["host_slower"] else ""))
        for h in r["hops"]:
            print(f"  {h['sender']} -> {h['receiver']} {h['bytes'] / 1e3:.1f} kB: predicted {h['predicted_s'] * 1e3:.1f} "
                  f"ms, measured {h['measured_s'] * 1e3:.1f}")
        print(f"  outputs match: {r['outputs_match']}")


if __name__ == "__main__":
    main()
