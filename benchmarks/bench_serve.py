"""Load test of `splitnn serve` (issue 15, item 6): N devices at once, through the emulated link.

The ResNet-18 sample is cut after its second stage (add5_out, 200.7 kB at the cut, about half the model on the
server) and served by `splitnn serve` in its own process, as a user would start it. N device threads in this
process each hold their own connection through a link relay (another process: each connection has its own
emulated link, 4G by default) and loop: wait the board's predicted compute for the device part (the rockpro64
profile's; the device part's tensors are computed once, so the load is the server's, not this host's), then send
the cut tensors and wait for the answer. Every device sends one request before the timed window opens (its
connection, TLS handshake and name), then sends for --duration seconds.

Latency is the device's exchange (encode, link, server, answer): p50, p95 and p99; throughput is answers per
second over the window; `sent = ok + errors` counts every request the devices sent. At the end the server gets
SIGTERM, drains and exits; its own log (per-device counters, batch sizes) is kept in the JSON.

Configurations: each N of --devices, batching on (--max-batch 8) and off (1), TLS on and off.

    python benchmarks/bench_serve.py [--devices 1,10,50] [--duration 60] [--link 4g] [--json]

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

CUT = "add5_out"


@dataclass
class Row:
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


def run_one(plan: Path, devices: int, batching: bool, tls_dir: Path | None, link: str, duration: float,
            board_s: float, payload: dict) -> Row:  # type: ignore[type-arg]
    process, address = _serve(plan, 8 if batching else 1, tls_dir)
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

    return Row(devices, batching, tls_dir is not None, len(flat), ok, len(flat) - ok, seconds, ok / seconds, pct(50),
               pct(95), pct(99), mean_batch, drained, log[-6:])


def _prepare(work: Path) -> tuple[Path, float, dict]:  # type: ignore[type-arg]
    model, plan = work / "resnet18.onnx", work / "plan"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", "resnet18", "-o", str(model)], check=True,
                       capture_output=True)
    subprocess.run([sys.executable, "-m", "splitnn.cli", "partition", str(model), "-o", str(plan), "--device",
                    "rockpro64", "--link", "4g", "--cut", CUT, "--json"], check=True, capture_output=True)
    board_s = read_vertical_plan(plan).predicted.device_s
    part = DevicePart(plan)
    feeds = {n: np.random.default_rng(0).standard_normal(s.shape).astype(np.float32) for n, s in part.plan.inputs.items()}
    tensors = part.run(feeds)
    return plan, board_s, {n: tensors[n] for n in part.sends}


def _targets(rows: list[Row]) -> list[str]:
    def find(devices: int, batching: bool, tls: bool) -> Row | None:
        return next((r for r in rows if (r.devices, r.batching, r.tls) == (devices, batching, tls)), None)

    lines = []
    for batching in (True, False):
        for tls in (False, True):
            one, many = find(1, batching, tls), find(max(r.devices for r in rows), batching, tls)
            if one and many and many is not one:
                lines.append(f"{many.devices} devices, batching {'on' if batching else 'off'}, TLS {'on' if tls else 'off'}: "
                             f"errors {many.errors}, p99 {many.p99_ms:.0f} ms = {many.p99_ms / one.p50_ms:.2f}x the single "
                             f"device's p50 {one.p50_ms:.0f} ms (target <= 3x)")
    top = max(r.devices for r in rows)
    for tls in (False, True):
        on, off = find(top, True, tls), find(top, False, tls)
        if on and off:
            lines.append(f"batching at {top} devices, TLS {'on' if tls else 'off'}: {on.throughput:.1f} against "
                         f"{off.throughput:.1f} answers/s = {on.throughput / off.throughput:.2f}x (target >= 1.5x)")
    for batching in (True, False):
        plain, tls_row = find(1, batching, False), find(1, batching, True)
        if plain and tls_row:
            lines.append(f"TLS, one device, batching {'on' if batching else 'off'}: p50 {tls_row.p50_ms:.1f} against "
                         f"{plain.p50_ms:.1f} ms = {tls_row.p50_ms / plain.p50_ms - 1:+.1%} (target <= +10%)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", default="1,10,50")
    parser.add_argument("--duration", type=float, default=60.0, help="timed seconds per configuration")
    parser.add_argument("--link", default="4g", help="a link preset, or none: straight to the server on loopback, "
                                                     "each device sending as soon as it has its answer (the server's "
                                                     "capacity)")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-serve-"))
    plan, board_s, payload = _prepare(work)
    if args.link == "none":  # the server's own capacity: devices send back to back, straight to it
        board_s = 0.0
    rows = []
    for devices in [int(n) for n in args.devices.split(",")]:
        for batching in (True, False):
            for tls in (False, True):
                row = run_one(plan, devices, batching, work / "tls" if tls else None, args.link, args.duration, board_s,
                              payload)
                rows.append(row)
                if not args.json:
                    print(f"{devices:3d} devices, batching {'on ' if batching else 'off'}, TLS {'on ' if tls else 'off'}: "
                          f"sent {row.sent} = {row.ok} ok + {row.errors} errors, {row.throughput:6.1f} answers/s, "
                          f"p50 {row.p50_ms:6.1f} p95 {row.p95_ms:6.1f} p99 {row.p99_ms:6.1f} ms"
                          + (f", mean batch {row.mean_batch:.2f}" if row.mean_batch is not None else "")
                          + ("" if row.drained else ", SERVER DID NOT EXIT 0 ON SIGTERM"), flush=True)
    targets = _targets(rows)
    if args.json:
        print(json.dumps({"link": args.link, "cut": CUT, "board_s": board_s, "duration_s": args.duration,
                          "rows": [asdict(r) for r in rows], "targets": targets}, indent=1))
    else:
        print(f"\nResNet-18 sample cut at {CUT}, {args.link}, board {board_s * 1e3:.1f} ms per request, {args.duration:g} s "
              "per configuration; latency = the device's exchange (encode, link, server)")
        for line in targets:
            print(line)


if __name__ == "__main__":
    main()
