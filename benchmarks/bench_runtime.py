"""The runtime's targets (issue 4) on the ResNet-18 sample, on this machine's loopback.

For three cuts (all on the server, a middle cut, and the cut partition chooses
for throughput) under one emulated link:
  - end to end: e2e p50 against the physical bound (device compute + bytes /
    bandwidth each way + round trip + server compute, from the same run);
    target e2e p50 <= 1.05 x bound + 2 ms;
  - stream: the pipelined throughput against 1 / max(stage); target >= 0.9.
The device is emulated as the rockpro64 profile (each part calibrated to its prediction).

    python benchmarks/bench_runtime.py [--link 4g] [--requests 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitnn.cost_models.catalog import load_device, load_link  # noqa: E402
from splitnn.onnxsplit.analysis.analyze import analyze  # noqa: E402
from splitnn.onnxsplit.measure.vertical import BenchOptions, run_bench  # noqa: E402
from splitnn.onnxsplit.model.loading import load_graph  # noqa: E402
from splitnn.onnxsplit.runtime.link_emulator import settings_for  # noqa: E402
from splitnn.onnxsplit.vertical.export import write_split  # noqa: E402
from splitnn.onnxsplit.vertical.planning import plan_split  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--link", default="4g")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-runtime-"))
    model = work / "resnet18.onnx"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", "resnet18", "-o", str(model)], cwd=REPO, check=True)

    analysis = analyze(load_graph(model))
    device, server, link = load_device("rockpro64"), load_device("cloud-cpu"), load_link(args.link)
    chosen = plan_split(analysis, device, server, link, "throughput")
    singles = [c for c in analysis.cuts if len(c.tensors) == 1 and 0 < c.id < chosen.chosen.cut.id]
    cuts = {"all on the server": analysis.cuts[0], "middle": singles[len(singles) // 2], "chosen": chosen.chosen.cut}
    settings = settings_for(link.uplink_bps, link.rtt_s, downlink_bps=link.down_bps)
    rows = []
    for label, cut in cuts.items():
        plan = plan_split(analysis, device, server, link, "throughput", forced_tensors=cut.tensors)
        outdir = work / f"cut{cut.id}"
        shutil.rmtree(outdir, ignore_errors=True)
        write_split(analysis, plan, outdir)
        options = BenchOptions(requests=args.requests, baselines=False, stream=True)  # calibrated to the prediction
        report = run_bench(outdir, settings, options).to_dict()
        e2e, bound = report["stages"]["e2e_s"]["p50"], report["bound_s"]
        stream = report["stream"]
        rows.append({
            "cut": label, "cut_id": cut.id, "tensors": list(cut.tensors), "bytes": cut.bytes,
            "slowdown": report["slowdown"]["factor"], "ok": report["ok"], "errors": report["errors"],
            "e2e_p50_s": e2e, "bound_s": bound, "e2e_over_bound": e2e / bound,
            "e2e_target_met": e2e <= 1.05 * bound + 0.002,
            "stream_fps": stream["throughput_fps"], "bound_fps": stream["bound_fps"], "stream_ratio": stream["ratio"],
            "bottleneck": stream["bottleneck"], "stream_target_met": stream["ratio"] >= 0.9,
            "outputs_match": report["outputs_match"],
        })
        shutil.rmtree(outdir, ignore_errors=True)
    if args.json:
        print(json.dumps({"link": args.link, "requests": args.requests, "rows": rows}, indent=1))
        return
    print(f"ResNet-18 sample, link {args.link}, rockpro64 emulated, {args.requests} requests and frames per cut")
    print(f"{'cut':<18} {'bytes':>8} {'K':>5} {'e2e p50':>9} {'bound':>9} {'ratio':>6}  {'stream fps':>10} "
          f"{'1/max':>7} {'ratio':>6} bottleneck")
    for r in rows:
        print(f"{r['cut']:<18} {r['bytes']:>8} {r['slowdown']:>5.2f} {r['e2e_p50_s'] * 1e3:>7.1f}ms "
              f"{r['bound_s'] * 1e3:>7.1f}ms {r['e2e_over_bound']:>6.3f}  {r['stream_fps']:>10.2f} {r['bound_fps']:>7.2f} "
              f"{r['stream_ratio']:>6.3f} {r['bottleneck']}")
    print("targets: e2e p50 <= 1.05 x bound + 2 ms:", all(r["e2e_target_met"] for r in rows),
          "| stream >= 0.9 x 1/max(stage):", all(r["stream_target_met"] for r in rows))


if __name__ == "__main__":
    main()
