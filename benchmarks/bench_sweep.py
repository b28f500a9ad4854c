"""The planner's regret (issue 4): measured time of the chosen cut / measured time of the best cut.

For each sample and each built-in link, with the rockpro64 device profile
(emulated: K per cut from the profiles) and this machine as the server (so
the plan is made with the `host` server profile), `run-bench --sweep`
measures the --top K cuts by prediction plus the chosen one, --requests
requests each in 2 rounds over all cuts (so a slow stretch of the machine
falls on every cut), end-to-end p50. Target: regret <= 1.05 everywhere.

    python benchmarks/bench_sweep.py [--models resnet18,mobilenet,alexnet,vgg16] \\
        [--links cat1,3g,4g,wifi] [--top 5] [--requests 10] [--json]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,mobilenet,alexnet,vgg16")
    parser.add_argument("--links", default="cat1,3g,4g,wifi")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-sweep-"))
    rows = []
    for name in args.models.split(","):
        model = work / f"{name}.onnx"
        if not model.exists():
            subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", name, "-o", str(model)], cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL)
        for link in args.links.split(","):
            proc = subprocess.run([sys.executable, "-m", "splitnn.cli", "run-bench", str(model), "--sweep", "--link", link,
                                   "--device", "rockpro64", "--server", "host", "--top", str(args.top),
                                   "--requests", str(args.requests), "--json"],
                                  cwd=REPO, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"{name} {link}: {proc.stderr.strip()}")
            report = json.loads(proc.stdout)
            rows.append({"model": name, "link": link, "measured_cuts": len(report["sweep"]),
                         "feasible_cuts": report["feasible_cuts"], "chosen": report["chosen"], "best": report["best"],
                         "regret": report["regret"]})
            if not args.json:
                chosen, best = report["chosen"], report["best"]
                print(f"{name:<10} {link:<5} chosen cut {chosen['cut_id']:>3} ({chosen['after_node'] or '(input)'}) "
                      f"{chosen['measured_s'] * 1e3:8.1f} ms | best cut {best['cut_id']:>3} "
                      f"({best['after_node'] or '(input)'}) {best['measured_s'] * 1e3:8.1f} ms | regret {report['regret']:.3f}",
                      flush=True)
    worst = max(r["regret"] for r in rows)
    if args.json:
        print(json.dumps({"top": args.top, "requests": args.requests, "rows": rows, "worst_regret": worst}, indent=1))
        return
    print(f"worst regret {worst:.3f} (target <= 1.05) over {len(rows)} model x link pairs; top {args.top} cuts by "
          f"prediction, {args.requests} requests each")


if __name__ == "__main__":
    main()
