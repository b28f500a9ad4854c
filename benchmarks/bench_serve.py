"""Load test of `splitnn serve` (issue 15, item 6; issue 30, item 10): N devices at once, through the emulated link.

Two server parts (--models): the ResNet-18 sample cut after its second stage (add5_out, 200.7 kB at the cut,
about half the model on the server; its convolutions are compute-bound, so a batch costs about as much per item
as one request), and the VGG-16 sample cut at its last pool's output (maxpool5_out, 100.4 kB; the server runs
the three fully connected layers, about 124 M parameters, 494 MB read once per session run whatever the batch:
bound by reading its weights, where batching pays on a CPU too). Each is served by `splitnn serve` in its own
process, as a user would start it. N device threads in this
process each hold their own connection through a link relay (another process: each connection has its own
emulated link, 4G by default) and loop: wait the board's predicted compute for the device part (the rockpro64
profile's; the device part's tensors are computed once, so the load is the server's, not this host's), then send
the cut tensors and wait for the answer. Every device sends one request before the timed window opens (its
connection, TLS handshake and name), then sends for --duration seconds.

Latency is the device's exchange (encode, link, server, answer): p50, p95 and p99; throughput is answers per
second over the window; `sent = ok + errors` counts every request the devices sent. At the end the server gets
SIGTERM, drains and exits; its own log (per-device counters, batch sizes) is kept in the JSON.

Configurations: for each model, each N of --devices, batching on (--max-batch 8) and off (1), TLS on and off
(--tls), each measured --rounds times (on and off taking turns within a round, so that load from elsewhere on
the machine falls on both); the summary gives medians over the rounds and, per model, the ratio of the median
throughputs (batching on / off) with the mean batch size. Before its runs, each part is also timed alone in
this process at a batch of 1 and of 8 (per item), which is the most that batching can gain on this CPU.

    python benchmarks/bench_serve.py [--models resnet18,vgg16] [--devices 1,10,50] [--duration 60] [--rounds 3]
                                     [--link 4g] [--tls both] [--json]

Paced by a board and a 4G link, 50 devices offer the server less than it can answer, so batching cannot raise
the throughput there; `--link none` measures the server's capacity instead: no link and no board, each device
sending its next request as soon as it has its answer.

The targets it checks (issue 15): at 50 devices nothing lost (errors 0) and p99 within 3x the single-device p50
of the same configuration; batching at least 1.5x the throughput of one request at a time at 50 devices; TLS
at most +10% on the single device's p50.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitnn.cost_models.catalog import load_link  # noqa: E402
from splitnn.onnxsplit.artifacts.plan_file import read_vertical_plan  # noqa: E402
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart  # noqa: E402
from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, settings_for  # noqa: E402
from splitnn.onnxsplit.runtime.tls import client_context  # noqa: E402

# Each model: the sample's name and the tensor the cut sends.
CUTS = {"resnet18": "add5_out", "vgg16": "maxpool5_out"}
BATCH = 8  # --max-batch with batching on


@dataclass
class Row:
    model: str
    round: int
    devices: int
    batching: bool
    tls: bool
    sent: int
    ok: int
    errors: int
    seconds: float
    throughput: float  # answers per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_batch: float | None  # from the server's log
    drained: bool  # the server exited 0 after SIGTERM
    server_log: list[str]


def _relay(target: tuple[str, int], link: str, conn) -> None:  # type: ignore[no-untyped-def]
    """A process that relays every connection to `target` through the emulated link, until told to stop."""
    profile = load_link(link)
    settings = settings_for(profile.uplink_bps, profile.rtt_s, downlink_bps=profile.down_bps)
    with LinkRelay(target, settings) as relay:
        conn.send(relay.address)
        conn.recv()


def _serve(plan: Path, batch: int, tls_dir: Path | None) -> tuple[subprocess.Popen, tuple[str, int]]:  # type: ignore[type-arg]
    command = [sys.executable, "-m", "splitnn.cli", "serve", str(plan), "--port", "0", "--max-connections", "200",
               "--max-per-address", "200",  # every device is on this host
               "--max-batch", str(batch), *(["--self-signed", str(tls_dir)] if tls_dir is not None else [])]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "400"})
    for line in process.stderr:  # type: ignore[union-attr]
        if ": one request at a time: " in line:  # batching asked for, but the part takes none: no ratio to measure
            print(f"server: {line.strip()}", file=sys.stderr, flush=True)
        if line.startswith("serving "):
            host, port = line.split(" on ")[1].split()[0].rsplit(":", 1)
            return process, (host, int(port))
    raise SystemExit(f"the server did not start: {process.wait()}")


def _device_loop(client: DeviceClient, payload: dict, board_s: float, start: float, end: float,  # type: ignore[type-arg]
                 out: list) -> None:  # type: ignore[type-arg]
    time.sleep(max(start - time.perf_counter(), 0.0))
    while time.perf_counter() < end:
        time.sleep(board_s)  # the board computing its part
        result = client.exchange(payload)
        out.append((result.ok, result.e2e_s, result.error))


def run_one(model: str, round_: int, plan: Path, devices: int, batching: bool, tls_dir: Path | None, link: str,
            duration: float, board_s: float, payload: dict) -> Row:  # type: ignore[type-arg]
    process, address = _serve(plan, BATCH if batching else 1, tls_dir)
    parent, child = multiprocessing.Pipe()
    relay = multiprocessing.Process(target=_relay, args=(address, link, child), daemon=True)
    if link != "none":
        relay.start()
    relay_address = parent.recv() if link != "none" else address
    tls = client_context(tls_dir / "cert.pem") if tls_dir is not None else None
    part = DevicePart(plan)
    clients = [DeviceClient(part, relay_address, timeout_s=30, tls=tls, name=f"device-{i:02d}") for i in range(devices)]
    warm = [threading.Thread(target=c.exchange, args=(payload,)) for c in clients]
    for thread in warm:
        thread.start()
    for thread in warm:
        thread.join()
    results: list[list] = [[] for _ in clients]  # type: ignore[type-arg]
    start = time.perf_counter() + 0.5
    end = start + duration
    # Each device starts at its own offset within one cycle, as boards switched on at different times would.
    threads = [threading.Thread(target=_device_loop, args=(c, payload, board_s, start + board_s * i / devices, end, r))
               for i, (c, r) in enumerate(zip(clients, results))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    for client in clients:
        client.close()
    process.send_signal(signal.SIGTERM)
    log = process.stderr.read().strip().splitlines()  # type: ignore[union-attr]
    drained = process.wait(timeout=60) == 0
    if link != "none":
        parent.send("stop")
        relay.join(timeout=10)
    flat = [r for rs in results for r in rs]
    latencies = sorted(e2e for ok, e2e, _ in flat if ok)
    ok = len(latencies)
    batch_line = next((line for line in log if line.startswith("batched: ")), None)
    mean_batch = float(batch_line.split("(mean ")[1].split(",")[0]) if batch_line else None

    def pct(q: float) -> float:
        return float(np.percentile(latencies, q)) * 1e3 if latencies else float("nan")

    return Row(model, round_, devices, batching, tls_dir is not None, len(flat), ok, len(flat) - ok, seconds,
               ok / seconds, pct(50), pct(95), pct(99), mean_batch, drained, log[-6:])


def _prepare(work: Path, model_name: str) -> tuple[Path, float, dict]:  # type: ignore[type-arg]
    model, plan = work / f"{model_name}.onnx", work / f"plan-{model_name}"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", model_name, "-o", str(model)],
                       check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "splitnn.cli", "partition", str(model), "-o", str(plan), "--device",
                    "rockpro64", "--link", "4g", "--cut", CUTS[model_name], "--json"], check=True, capture_output=True)
    board_s = read_vertical_plan(plan).predicted.device_s
    part = DevicePart(plan)
    feeds = {n: np.random.default_rng(0).standard_normal(s.shape).astype(np.float32) for n, s in part.plan.inputs.items()}
    tensors = part.run(feeds)
    return plan, board_s, {n: tensors[n] for n in part.sends}


def _part_alone(plan: Path, payload: dict, runs: int = 10) -> tuple[float, float] | None:  # type: ignore[type-arg]
    """The server part timed alone in this process, as `serve` opens it (its own session at a batch of 1, the
    checked batched copy at BATCH): the median ms per item of each; None where the part takes no batch."""
    from splitnn.onnxsplit.core.ort_session import create_session, median_run_seconds
    from splitnn.onnxsplit.runtime.batching import batchable_session
    from splitnn.onnxsplit.runtime.server import server_models

    (model,) = server_models(plan)
    single = create_session(model, spin=False)
    check = batchable_session(model, single, spin=False)
    if check.session is None:
        return None
    per_item = []
    for session, size in ((single, 1), (check.session, BATCH)):
        feeds = {n: np.concatenate([v] * size) for n, v in payload.items()}
        per_item.append(median_run_seconds(session, feeds, runs) / size * 1e3)
    return per_item[0], per_item[1]


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def _summary(rows: list[Row]) -> dict[tuple[str, int, bool, bool], dict]:  # type: ignore[type-arg]
    """Per (model, devices, batching, TLS): the medians over the rounds (errors summed)."""
    keys = sorted({(r.model, r.devices, r.batching, r.tls) for r in rows}, key=lambda k: (k[0], k[1], not k[2], k[3]))
    out = {}
    for key in keys:
        group = [r for r in rows if (r.model, r.devices, r.batching, r.tls) == key]
        batches = [r.mean_batch for r in group if r.mean_batch is not None]
        out[key] = {"rounds": len(group), "errors": sum(r.errors for r in group),
                    "throughput": _median([r.throughput for r in group]),
                    "throughputs": [round(r.throughput, 1) for r in group],
                    "p50_ms": _median([r.p50_ms for r in group]), "p99_ms": _median([r.p99_ms for r in group]),
                    "mean_batch": _median(batches) if batches else None,
                    "drained": all(r.drained for r in group)}
    return out


def _targets(rows: list[Row]) -> list[str]:
    summary = _summary(rows)
    lines = []
    for model in dict.fromkeys(r.model for r in rows):
        def find(devices: int, batching: bool, tls: bool) -> dict | None:  # type: ignore[type-arg]
            return summary.get((model, devices, batching, tls))  # noqa: B023

        top = max(r.devices for r in rows if r.model == model)
        for batching in (True, False):
            for tls in (False, True):
                one, many = find(1, batching, tls), find(top, batching, tls)
                if one and many and top != 1:
                    lines.append(f"{model}, {top} devices, batching {'on' if batching else 'off'}, TLS "
                                 f"{'on' if tls else 'off'}: errors {many['errors']}, p99 {many['p99_ms']:.0f} ms = "
                                 f"{many['p99_ms'] / one['p50_ms']:.2f}x the single device's p50 {one['p50_ms']:.0f} "
                                 "ms (target <= 3x)")
        for tls in (False, True):
            on, off = find(top, True, tls), find(top, False, tls)
            if on and off:
                batch = f", mean batch {on['mean_batch']:.2f}" if on["mean_batch"] is not None else ""
                lines.append(f"{model}, batching at {top} devices, TLS {'on' if tls else 'off'}: "
                             f"{on['throughput']:.1f} against {off['throughput']:.1f} answers/s = "
                             f"{on['throughput'] / off['throughput']:.2f}x "
                             f"(target >= 1.5x){batch}; medians of {on['rounds']} rounds (on {on['throughputs']}, "
                             f"off {off['throughputs']}); p99 {on['p99_ms']:.0f} against {off['p99_ms']:.0f} ms")
        for batching in (True, False):
            plain, tls_row = find(1, batching, False), find(1, batching, True)
            if plain and tls_row:
                lines.append(f"{model}, TLS, one device, batching {'on' if batching else 'off'}: p50 "
                             f"{tls_row['p50_ms']:.1f} against {plain['p50_ms']:.1f} ms = "
                             f"{tls_row['p50_ms'] / plain['p50_ms'] - 1:+.1%} (target <= +10%)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet18,vgg16", help=f"among {', '.join(CUTS)}")
    parser.add_argument("--devices", default="1,10,50")
    parser.add_argument("--duration", type=float, default=60.0, help="timed seconds per configuration")
    parser.add_argument("--rounds", type=int, default=3, help="times each configuration is measured (medians)")
    parser.add_argument("--tls", choices=["both", "on", "off"], default="both")
    parser.add_argument("--link", default="4g", help="a link preset, or none: straight to the server on loopback, "
                                                     "each device sending as soon as it has its answer (the server's "
                                                     "capacity)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in CUTS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}: choose among {', '.join(CUTS)}")
    tls_modes = {"both": (False, True), "on": (True,), "off": (False,)}[args.tls]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-serve-"))
    rows: list[Row] = []
    prepared = {}
    for model in models:
        plan, board_s, payload = _prepare(work, model)
        if args.link == "none":  # the server's own capacity: devices send back to back, straight to it
            board_s = 0.0
        alone = _part_alone(plan, payload)
        prepared[model] = {"cut": CUTS[model], "board_s": board_s,
                           "part_ms_per_item": None if alone is None else {"1": alone[0], str(BATCH): alone[1]}}
        if not args.json:
            timing = ("takes no batch" if alone is None else f"alone in this process {alone[0]:.2f} ms per item at a "
                      f"batch of 1, {alone[1]:.2f} at {BATCH} ({alone[0] / alone[1]:.2f}x)")
            print(f"{model} cut at {CUTS[model]}: server part {timing}", flush=True)
        for round_ in range(args.rounds):
            for devices in [int(n) for n in args.devices.split(",")]:
                # on then off in even rounds, off then on in odd ones: a drift in the machine's load falls on both
                for batching in (True, False) if round_ % 2 == 0 else (False, True):
                    for tls in tls_modes:
                        row = run_one(model, round_, plan, devices, batching, work / "tls" if tls else None,
                                      args.link, args.duration, board_s, payload)
                        rows.append(row)
                        if not args.json:
                            print(f"{model} round {round_ + 1}: {devices:3d} devices, batching "
                                  f"{'on ' if batching else 'off'}, TLS {'on ' if tls else 'off'}: sent {row.sent} = "
                                  f"{row.ok} ok + {row.errors} errors, {row.throughput:6.1f} answers/s, p50 "
                                  f"{row.p50_ms:6.1f} p95 {row.p95_ms:6.1f} p99 {row.p99_ms:6.1f} ms"
                                  + (f", mean batch {row.mean_batch:.2f}" if row.mean_batch is not None else "")
                                  + ("" if row.drained else ", SERVER DID NOT EXIT 0 ON SIGTERM"), flush=True)
    targets = _targets(rows)
    if args.json:
        print(json.dumps({"link": args.link, "duration_s": args.duration, "rounds": args.rounds, "models": prepared,
                          "rows": [asdict(r) for r in rows], "targets": targets}, indent=1))
    else:
        boards = ", ".join(f"{m} {p['board_s'] * 1e3:.1f} ms" for m, p in prepared.items())
        print(f"\n{args.link}, board per request: {boards}; {args.duration:g} s per configuration, {args.rounds} "
              "round(s); latency = the device's exchange (encode, link, server)")
        for line in targets:
            print(line)


if __name__ == "__main__":
    main()
