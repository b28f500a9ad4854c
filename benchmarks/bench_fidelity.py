"""Numbers a user can trust: what `partition` predicts against what `run-bench` measures (issue 18, item 10).

For each model and each built-in link, as a user would run it (child processes, --json): `splitnn partition`
(rockpro64 device, cloud-cpu server, --objective latency or throughput), then `splitnn run-bench --stream` on the plan. Per row:
the chosen cut, and predicted against measured for the device compute, the transfer, the server compute, end to
end, the stream's frames per second, and both baselines (all on the device, all on the server). Measured
figures are medians over the requests of one run. The all-on-server baseline is skipped where its prediction
is over --max-baseline-s a request (a 600 kB image over Cat-1 takes 37 s).

The device part is emulated (measure/emulated_board.py): it waits until the profile's prediction has passed, so
its measured time meets the prediction whenever this host is faster than the board; the report says where it
is not. The server is this host, not the cloud-cpu profile: its column shows how far this host is from it.

    python benchmarks/bench_fidelity.py --requests 10 [--objective throughput] [--models alexnet,resnet18] [--json]
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
from benchmarks.cli_runs import splitnn_json as _splitnn
from tests.helpers import MINILM, MTCNN_ONET, NUDENET, packaged_model  # noqa: E402

SAMPLES = ("alexnet", "resnet18", "mobilenet")
REAL = {"nudenet": NUDENET, "mtcnn-onet": MTCNN_ONET, "minilm": MINILM}
LINKS = ("cat1", "3g", "4g", "wifi")


def _model(name: str, work: Path) -> tuple[Path, list[str]]:
    if name in REAL:
        package, relative, shapes = REAL[name]
        args = [a for n, dims in shapes.items() for a in ("--input-shape", f"{n}:{'x'.join(map(str, dims))}")]
        return packaged_model(package, relative), args
    return sample_model(name, work), []


def _row(name: str, link: str, objective: str, requests: int, max_baseline_s: float, work: Path) -> dict:
    path, shapes = _model(name, work)
    outdir = work / f"{name}-{link}-{objective}"
    plan = _splitnn("partition", str(path), *shapes, "-o", str(outdir), "--link", link, "--objective", objective,
                    cwd=work)
    all_server = next(c["predicted"]["total_s"] for c in plan["candidates"] if c["id"] == 0)
    baselines = all_server <= max_baseline_s
    report = _splitnn("run-bench", str(outdir), "--requests", str(requests), "--stream",
                      *([] if baselines else ["--no-baselines"]), cwd=work)
    p, stages, base = plan["predicted"], report["stages"], report["baselines"]
    row = {
        "model": name, "link": link, "cut": plan["cut"]["tensors"], "bytes": plan["cut"]["bytes"],
        "host_slower": report["slowdown"]["device_part"]["host_slower"],
        "device": (p["device_s"], stages["device_s"]["p50"]),
        "transfer": (p["transfer_s"], stages["transfer_s"]["p50"]),
        "server": (p["server_s"], stages["server_s"]["p50"]),
        "e2e": (p["total_s"], stages["e2e_s"]["p50"]),
        "fps": (p["throughput_fps"], report["stream"]["throughput_fps"]),
        "all_device": (base["predicted_all_device"]["total_s"], base["all_device_s"]) if base else None,
        "all_server": (base["predicted_all_server"]["total_s"], base["all_server_s"]) if base else None,
        "outputs_match": report["outputs_match"],
    }
    return row


def _cell(pair: tuple[float, float] | None, scale: float = 1e3, digits: int = 1) -> str:
    if pair is None:
        return "skipped"
    predicted, measured = pair
    if not predicted:
        return f"{predicted * scale:.{digits}f} / {measured * scale:.{digits}f}"
    return f"{predicted * scale:.{digits}f} / {measured * scale:.{digits}f} ({measured / predicted - 1:+.0%})"


def _errors(rows: list[dict], key: str) -> list[float]:
    return [abs(r[key][1] / r[key][0] - 1) for r in rows if r[key] is not None and r[key][0]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join((*SAMPLES, *REAL)))
    parser.add_argument("--links", default=",".join(LINKS))
    parser.add_argument("--objective", choices=("latency", "throughput"), default="latency")
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--max-baseline-s", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="splitnn-fidelity-") as folder:
        rows = [_row(model, link, args.objective, args.requests, args.max_baseline_s, Path(folder))
                for model in args.models.split(",") for link in args.links.split(",")]
    summary = {key: statistics.median(_errors(rows, key)) if _errors(rows, key) else None
               for key in ("device", "transfer", "server", "e2e", "fps", "all_device", "all_server")}
    if args.json:
        print(json.dumps({"rows": rows, "median_abs_error": summary}, indent=1))
        return
    print("| model | link | cut | device ms | transfer ms | server ms | end to end ms | stream fps | all on device ms "
          "| all on server ms | outputs |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cut = ", ".join(r["cut"]) or "(all on the device)"
        cut = cut if len(cut) <= 24 else cut[:21] + "..."
        print(f"| {r['model']} | {r['link']} | {cut} | {_cell(r['device'])}{' (host slower)' if r['host_slower'] else ''} "
              f"| {_cell(r['transfer'])} | {_cell(r['server'])} | {_cell(r['e2e'])} | {_cell(r['fps'], 1, 2)} "
              f"| {_cell(r['all_device'])} | {_cell(r['all_server'])} | {'match' if r['outputs_match'] else 'DIFFER'} |")
    print("\nmedian |measured / predicted - 1|: " + ", ".join(
        f"{k} {v:.1%}" for k, v in summary.items() if v is not None))


if __name__ == "__main__":
    main()
