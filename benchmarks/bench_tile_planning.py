"""How long `partition --strategy tiles` takes to plan (plan_tiles) on the corpus CNNs, at their packages' sizes.

Per model: the automatic 2-node plan for --node-profile (the default rockpro64), on the cluster link of
--cluster-link bits per second; the median of --runs timings of plan_tiles alone (the model loaded and analyzed
once before), and the plan it chose (every run must choose the same).

    python benchmarks/bench_tile_planning.py [--models ocr_det,picodet] [--runs 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_real_tiles import MODELS  # noqa: E402

from splitnn.cost_models.catalog import load_device  # noqa: E402
from splitnn.onnxsplit.analysis.analyze import analyze  # noqa: E402
from splitnn.onnxsplit.model.loading import load_graph  # noqa: E402
from splitnn.onnxsplit.tiles.planning import plan_tiles  # noqa: E402


def measure(name: str, runs: int, profile: str, link_bps: float) -> dict:
    model, shapes = MODELS[name]
    analysis = analyze(load_graph(model(), shapes))
    times, chosen = [], set()
    for _ in range(runs):
        start = time.perf_counter()
        plan = plan_tiles(analysis, 2, load_device(profile), cluster_link_bps=link_bps)
        times.append(time.perf_counter() - start)
        chosen.add(tuple((len(p.stack), p.grid.rows, p.grid.cols) for p in plan.stacks))
    assert len(chosen) == 1, chosen
    return {"model": name, "plan_s": statistics.median(times), "runs_s": times,
            "stacks": [{"layers": n, "grid": f"{r}x{c}"} for n, r, c in next(iter(chosen))]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--node-profile", default="rockpro64")
    parser.add_argument("--cluster-link", type=float, default=1e9, help="bits per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(name, args.runs, args.node_profile, args.cluster_link) for name in args.models.split(",")]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"plan_tiles, 2 nodes of {args.node_profile}, cluster link {args.cluster_link:.3g} bit/s, median of {args.runs}")
    for row in rows:
        stacks = " + ".join(f"{s['layers']} {s['grid']}" for s in row["stacks"])
        print(f"{row['model']:12} {row['plan_s']:6.2f} s   {stacks}")


if __name__ == "__main__":
    main()
