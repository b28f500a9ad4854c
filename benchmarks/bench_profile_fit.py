"""Does a profile fitted on one model predict other models on the same machine?

`splitnn profile` is fitted on --train models; each --test model is then timed
plainly (an onnxruntime session at the device part's optimization level, no
profiler; median of --runs after warm-up) and predicted
with the fitted profile and with the `host` micro-benchmark profile. All of it
is done --rounds times, since this machine's speed drifts by 10-20% over a
minute; per model the median over the rounds is reported. The figure of merit
is |predicted / measured - 1| on models not in the fit.

    python benchmarks/bench_profile_fit.py --runs 20 --rounds 3 [--json]

With --each, every model of --test is timed once per round (under the profiler
and plainly, one model after the other), and a profile is fitted on each in
turn from that same round's timings: every fitting model is then judged on the
same measurements, so a change of the machine's speed between two fits (small
models ran 20-35% slower one hour than the next on this shared machine) does
not pass for a difference between fitting models.

    python benchmarks/bench_profile_fit.py --each --runs 20 --rounds 3 [--json]
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
        NUDENET,
        REC_MODEL,
        packaged_model,
        rapidocr_model,
    )

    paths["ocr-det"] = rapidocr_model(DET_MODEL)
    paths["ocr-rec"] = rapidocr_model(REC_MODEL)
    paths["yolov8n"] = packaged_model(NUDENET[0], NUDENET[1])  # a PyTorch export: SiLU, a box-distribution Softmax
    return paths


SHAPES = {"ocr-det": {"x": (1, 3, 320, 320)}, "ocr-rec": {"x": (1, 3, 48, 320)}, "yolov8n": {"images": (1, 3, 320, 320)}}


def plain_seconds(graph, runs: int, level: str, model=None) -> float:  # type: ignore[no-untyped-def]
    """Median plain run time of `graph`'s model, or of `model` (a part of it, its weights read from the model's
    file), one session at a time: sessions left open side by side keep their thread pools spinning and slowed
    MobileNet from 5.2 to 10.9 ms."""
    from splitnn.onnxsplit.core.ort_session import median_run_seconds
    from splitnn.onnxsplit.model.sample_inputs import random_inputs
    from splitnn.onnxsplit.model.weight_source import open_in_place

    session = open_in_place(model or graph.model, graph.initializers, graph.path, level=level)
    wanted = {i.name for i in session.get_inputs()}
    return median_run_seconds(session, {k: v for k, v in random_inputs(graph).items() if k in wanted}, runs, warmup=3)


def one_round(graphs: dict, train: list[str], test: list[str], runs: int) -> list[dict]:  # type: ignore[type-arg]
    """Fit on `train` (profiler timings), then time `test` plainly and compare."""
    from splitnn.cost_models.catalog import load_device
    from splitnn.cost_models.fitting import fit_profile
    from splitnn.cost_models.latency import seconds
    from splitnn.cost_models.node_timing import time_nodes
    from splitnn.cost_models.registry import node_costs
    from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL

    host = load_device("host")
    measurements = [(graphs[name], time_nodes(graphs[name], runs=runs)) for name in train]
    fitted = fit_profile(measurements, host, "fitted").profile
    measured = {name: plain_seconds(graphs[name], runs, DEVICE_PART_LEVEL) for name in test}
    rows = []
    for name in test:
        graph = graphs[name]
        costs = node_costs(graph)
        placed = [n.index for n in graph.nodes if not n.is_constant]
        row = {"model": name, "in_fit": name in train, "measured_s": measured[name],
               "fitted_s": seconds(graph, costs, placed, fitted), "host_s": seconds(graph, costs, placed, host)}
        row["fitted_error"] = row["fitted_s"] / row["measured_s"] - 1
        row["host_error"] = row["host_s"] / row["measured_s"] - 1
        rows.append(row)
    return rows


PART_SHARES = (1 / 3, 2 / 3)  # --each also times the device part at the cut nearest these shares of the MACs


def device_parts(graph) -> list[tuple[str, list[int], object]]:  # type: ignore[no-untyped-def]
    """(label, device nodes, device part model) at the prefix cuts nearest PART_SHARES of the model's MACs."""
    from splitnn.cost_models.registry import node_costs
    from splitnn.onnxsplit.analysis.cuts import enumerate_cuts
    from splitnn.onnxsplit.artifacts.parts import extract_parts, side_indices

    costs = node_costs(graph)
    cuts = [c for c in enumerate_cuts(graph, costs) if c.device_nodes and c.server_macs]
    total = sum(c.macs for c in costs)
    parts = []
    for share in PART_SHARES:
        cut = min(cuts, key=lambda c: abs(c.device_macs - share * total))
        device, _ = extract_parts(graph, graph.model, cut)
        parts.append((f"{round(share * 3)}/3", side_indices(graph, cut)[0], device))
    return parts


def each_round(graphs: dict, names: list[str], runs: int) -> dict[str, dict[str, float]]:  # type: ignore[type-arg]
    """One round of --each: per fitting model, each model's and each device part's error (predicted / measured
    - 1), keyed "model" and "model@1/3"."""
    from splitnn.cost_models.catalog import load_device
    from splitnn.cost_models.fitting import fit_profile
    from splitnn.cost_models.latency import seconds
    from splitnn.cost_models.node_timing import time_nodes
    from splitnn.cost_models.registry import node_costs
    from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL

    host = load_device("host")
    timings, measured, nodes = {}, {}, {}
    for name in names:  # each model's timings back to back
        graph = graphs[name]
        timings[name] = time_nodes(graph, runs=runs)
        measured[name] = plain_seconds(graph, runs, DEVICE_PART_LEVEL)
        nodes[name] = (name, [n.index for n in graph.nodes if not n.is_constant])
        for label, indices, part in device_parts(graph):
            measured[f"{name}@{label}"] = plain_seconds(graph, runs, DEVICE_PART_LEVEL, part.model)
            nodes[f"{name}@{label}"] = (name, indices)
    profiles = {name: fit_profile([(graphs[name], timings[name])], host, "fitted").profile for name in names}
    profiles["host"] = host
    errors = {}
    for fitted_on, profile in profiles.items():
        errors[fitted_on] = {}
        for key, (name, indices) in nodes.items():
            graph = graphs[name]
            errors[fitted_on][key] = seconds(graph, node_costs(graph), indices, profile) / measured[key] - 1
    return errors


def main_each(graphs: dict, names: list[str], args: argparse.Namespace) -> None:  # type: ignore[type-arg]
    rounds = [each_round(graphs, names, args.runs) for _ in range(args.rounds)]
    keys = list(rounds[0][names[0]])
    table = {}
    for fitted_on in [*names, "host"]:
        errors = {k: statistics.median(r[fitted_on][k] for r in rounds) for k in keys}
        held = [k for k in keys if k.split("@")[0] != fitted_on]  # other models, whole and their device parts

        def held_median(errs: dict[str, float], chosen: list[str]) -> float:
            return statistics.median(abs(errs[k]) for k in chosen)

        table[fitted_on] = {"errors": errors, "median_abs_error_held_out": held_median(errors, [k for k in held if "@" not in k]),
                            "median_abs_error_held_out_parts": held_median(errors, [k for k in held if "@" in k]),
                            "median_abs_error_held_out_per_round": [held_median(r[fitted_on], [k for k in held if "@" not in k])
                                                                    for r in rounds],
                            "median_abs_error_held_out_parts_per_round": [held_median(r[fitted_on], [k for k in held if "@" in k])
                                                                          for r in rounds]}
    if args.json:
        print(json.dumps({"runs": args.runs, "rounds": args.rounds, "part_shares": PART_SHARES, "fits": table}, indent=1))
        return
    print(f"each model fitted in turn on the same round's timings; errors against plain runs (basic level); "
          f"medians over {args.rounds} rounds ({args.runs} runs each); host: the micro-benchmarks, not fitted")
    print(f"{'fitted on':<10} " + " ".join(f"{n:>9}" for n in names) + f" {'held-out':>9}  per round")
    for fitted_on, row in table.items():
        cells = " ".join(f"{row['errors'][n]:+9.1%}" if n != fitted_on else f"{'(' + format(row['errors'][n], '+.1%') + ')':>9}"
                         for n in names)
        per_round = ", ".join(f"{e:.1%}" for e in row["median_abs_error_held_out_per_round"])
        print(f"{fitted_on:<10} {cells} {row['median_abs_error_held_out']:9.1%}  {per_round}")
    print("device parts (the prefix at about 1/3 and 2/3 of each model's MACs), fitted on each model; held-out: the "
          "other models' parts")
    parts = [k for k in keys if "@" in k]
    for fitted_on, row in table.items():
        cells = " ".join(f"{k}:{row['errors'][k]:+.1%}" for k in parts if k.split("@")[0] != fitted_on)
        per_round = ", ".join(f"{e:.1%}" for e in row["median_abs_error_held_out_parts_per_round"])
        print(f"{fitted_on:<10} held-out parts {row['median_abs_error_held_out_parts']:.1%} ({per_round})  {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", nargs="+", default=["resnet18"])
    parser.add_argument("--test", nargs="+", default=["resnet18", "mobilenet", "alexnet", "vgg16", "ocr-det", "ocr-rec",
                                                      "yolov8n"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="fit and measure this many times; the medians are reported")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--each", action="store_true", help="fit on each --test model in turn, from the same timings")
    args = parser.parse_args()

    from splitnn.onnxsplit.model.loading import load_graph

    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-bench-"))
    paths = _model_paths(work)
    graphs = {name: load_graph(paths[name], SHAPES.get(name)) for name in set(args.train) | set(args.test)}
    if args.each:
        main_each(graphs, args.test, args)
        return
    rounds = [one_round(graphs, args.train, args.test, args.runs) for _ in range(args.rounds)]
    rows = []
    for i, name in enumerate(args.test):
        per_round = [r[i] for r in rounds]
        rows.append({"model": name, "in_fit": name in args.train,
                     **{k: statistics.median(r[k] for r in per_round) for k in ("measured_s", "fitted_s", "host_s", "fitted_error", "host_error")},
                     "fitted_error_rounds": [r["fitted_error"] for r in per_round]})
    held_out = [r for r in rows if not r["in_fit"]]

    def median_abs(key: str, chosen: list[dict]) -> float | None:  # type: ignore[type-arg]
        return statistics.median(abs(r[key]) for r in chosen) if chosen else None

    summary = {
        "train": args.train,
        "runs": args.runs,
        "rounds": args.rounds,
        "rows": rows,
        "median_abs_error_held_out": {"fitted": median_abs("fitted_error", held_out), "host": median_abs("host_error", held_out)},
        "median_abs_error_held_out_per_round": [median_abs("fitted_error", [r for r in rr if not r["in_fit"]]) for rr in rounds],
    }
    if args.json:
        print(json.dumps(summary, indent=1))
        return
    print(f"fitted on {', '.join(args.train)}; plain onnxruntime runs (basic level); medians over {args.rounds} rounds "
          f"of fitting and timing ({args.runs} runs each)")
    print(f"{'model':<10} {'measured ms':>12} {'fitted ms':>10} {'error':>7} {'host ms':>9} {'error':>7}  fitted error per round")
    for r in rows:
        mark = " (in fit)" if r["in_fit"] else ""
        rounds_text = " ".join(f"{e:+.1%}" for e in r["fitted_error_rounds"])
        print(f"{r['model']:<10} {r['measured_s'] * 1e3:12.2f} {r['fitted_s'] * 1e3:10.2f} {r['fitted_error']:+7.1%} "
              f"{r['host_s'] * 1e3:9.2f} {r['host_error']:+7.1%}  {rounds_text}{mark}")
    m = summary["median_abs_error_held_out"]
    if held_out:
        per_round = ", ".join(f"{e:.1%}" for e in summary["median_abs_error_held_out_per_round"])
        print(f"median |error| on held-out models (of the per-model medians): fitted {m['fitted']:.1%}, "
              f"host micro-benchmarks {m['host']:.1%}; fitted, each round: {per_round}")


if __name__ == "__main__":
    main()
