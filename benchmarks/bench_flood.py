"""A flood of junk connections against `splitnn serve` (issue 30, item 7), on loopback only, bounded in count and time.

`splitnn serve` runs in its own process with its default limits (--max-connections 64, --max-per-address 32), on a
LeNet-5 split (the model does not matter here: the connections do). Then, from this process:

1. slow clients: --silent connections from 127.0.0.2 that connect and send nothing, held open to the end (the
   server holds at most --max-per-address of them; the others are turned away);
2. the flood: --junk connections from 127.0.0.3, all opened at once (non-blocking), each sending one frame
   header of garbage and reading until the server closes it. A junk connection is refused when it reads the
   server's error frame, or an end, or a reset. Meanwhile a probe device on 127.0.0.1 sends a request on a fresh
   connection every 0.25 s: how long a real device waited behind the flood;
3. then --devices devices on 127.0.0.1, each on its own connection and thread, send --requests requests each.

Targets (issue 30): every junk connection refused in under 15 s, then every device answered.

    python benchmarks/bench_flood.py [--junk 2000] [--devices 20] [--silent 40] [--token] [--json]

The whole run is bounded (--limit seconds per phase); it talks to 127.0.0.0/8 only (Linux routes all of it to
loopback, which is how the three kinds of clients get addresses of their own).
"""
from __future__ import annotations

import argparse
import datetime
import errno
import json
import os
import platform
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart  # noqa: E402
from splitnn.onnxsplit.runtime.wire import ERROR, HEADER  # noqa: E402

SILENT_FROM, JUNK_FROM = "127.0.0.2", "127.0.0.3"
JUNK_TARGET_S = 15.0


def _prepare(work: Path) -> Path:
    model, plan = work / "lenet5.onnx", work / "plan"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", "lenet5", "-o", str(model)],
                       check=True, capture_output=True)
    if not (plan / "plan.json").exists():
        subprocess.run([sys.executable, "-m", "splitnn.cli", "partition", str(model), "-o", str(plan), "--cut",
                        "averagepool2_out"], check=True, capture_output=True)
    return plan


class Server:
    """`splitnn serve PLAN --port 0` in its own process; its log read on a thread (a full pipe would stall it)."""

    def __init__(self, plan: Path, token_file: Path | None) -> None:
        command = [sys.executable, "-m", "splitnn.cli", "serve", str(plan), "--port", "0",
                   *(["--token-file", str(token_file)] if token_file is not None else [])]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "400"})
        self.log: list[str] = []
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.log.append(line.rstrip())
            if line.startswith("serving "):
                host, port = line.split(" on ")[1].split()[0].rsplit(":", 1)
                self.address = (host, int(port))
                break
        else:
            raise SystemExit(f"the server did not start: {self.process.wait()}\n" + "\n".join(self.log))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.log.append(line.rstrip())

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=5)


def _frame_kinds(data: bytes) -> list[int]:
    """The kinds of the whole frames in `data` (a challenge, then an error frame, with serve --token-file)."""
    kinds, pos = [], 0
    while pos + HEADER.size <= len(data):
        header = HEADER.unpack(data[pos : pos + HEADER.size])
        kinds.append(header[2])
        pos += HEADER.size + header[-1]
    return kinds


def _silent(address: tuple[str, int], count: int, limit_s: float) -> tuple[list[socket.socket], int, int]:
    """`count` connections that send nothing; returns the ones still open after a moment, and how many were held
    and turned away (an error frame, an end or a reset within 0.5 s)."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(address, timeout=limit_s, source_address=(SILENT_FROM, 0))
        socks.append(sock)
    time.sleep(0.5)
    held, refused = [], 0
    for sock in socks:
        sock.setblocking(False)
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            data = None  # nothing: held
        except OSError:
            data = b""
        if data is not None and (not data or ERROR in _frame_kinds(data)):
            refused += 1  # an error frame, an end or a reset
            sock.close()
        else:
            held.append(sock)  # nothing yet, or a challenge (serve --token-file): held, waiting
    return held, len(held), refused


def _flood(address: tuple[str, int], count: int, limit_s: float) -> dict:  # type: ignore[type-arg]
    """`count` junk connections at once; when each ended and how."""
    selector = selectors.DefaultSelector()
    garbage = b"JUNK" + os.urandom(HEADER.size - 4)
    start = time.perf_counter()
    state: dict[int, dict] = {}  # type: ignore[type-arg]
    outcomes = {"error frame": 0, "closed": 0, "reset": 0, "connect failed": 0, "unfinished": 0}
    ended: list[float] = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((JUNK_FROM, 0))
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            outcomes["connect failed"] += 1
            ended.append(time.perf_counter() - start)
            sock.close()
            continue
        state[sock.fileno()] = {"sock": sock, "sent": False, "data": b""}
        selector.register(sock, selectors.EVENT_WRITE, i)
    deadline = start + limit_s
    while state and time.perf_counter() < deadline:
        for key, events in selector.select(timeout=0.1):
            entry = state[key.fileobj.fileno()]  # type: ignore[union-attr]
            sock = entry["sock"]
            outcome = None
            if not entry["sent"]:
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    outcome = "connect failed"
                else:
                    try:
                        sock.send(garbage)
                    except OSError:
                        pass  # refused already: its end is read below
                    entry["sent"] = True
                    selector.modify(sock, selectors.EVENT_READ, key.data)
                    continue
            else:
                try:
                    chunk = sock.recv(1 << 16)
                except ConnectionResetError:
                    chunk, outcome = b"", "reset"
                except BlockingIOError:
                    continue
                if chunk:
                    entry["data"] += chunk
                    continue
                if outcome is None:
                    outcome = "error frame" if ERROR in _frame_kinds(entry["data"]) else "closed"
            outcomes[outcome] += 1
            ended.append(time.perf_counter() - start)
            selector.unregister(sock)
            del state[sock.fileno()]
            sock.close()
    outcomes["unfinished"] = len(state)
    for entry in state.values():
        entry["sock"].close()
    selector.close()
    ended.sort()
    refused = len(ended) - outcomes["connect failed"]
    return {"junk": count, "outcomes": outcomes, "all_refused_s": ended[-1] if not state and ended else None,
            "refused_within_target": sum(1 for t in ended if t < JUNK_TARGET_S) - outcomes["connect failed"],
            "refused": refused, "p50_end_s": ended[len(ended) // 2] if ended else None}


def _probe(part: DevicePart, address: tuple[str, int], payload: dict, token: bytes | None, stop: threading.Event,
           out: list) -> None:  # type: ignore[type-arg]
    """A real device during the flood: a fresh connection and one request every 0.25 s."""
    while not stop.is_set():
        client = DeviceClient(part, address, timeout_s=30, token=token, name="probe")
        begin = time.perf_counter()
        try:
            result = client.exchange(payload)
            out.append((result.ok, time.perf_counter() - begin, result.error))
        except Exception as exc:  # a refusal or a server out of reach: a failed probe, said as it is
            out.append((False, time.perf_counter() - begin, str(exc)))
        client.close()
        stop.wait(0.25)


def _devices(part: DevicePart, address: tuple[str, int], payload: dict, token: bytes | None, count: int,
             requests: int, timeout_s: float) -> dict:  # type: ignore[type-arg]
    results: list[list] = [[] for _ in range(count)]  # type: ignore[type-arg]

    def one(i: int) -> None:
        client = DeviceClient(part, address, timeout_s=timeout_s, token=token, name=f"device-{i:02d}")
        for _ in range(requests):
            try:
                result = client.exchange(payload)
                results[i].append((result.ok, result.e2e_s, result.error))
            except Exception as exc:
                results[i].append((False, 0.0, str(exc)))
        client.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    flat = [r for rs in results for r in rs]
    ok = [e2e for good, e2e, _ in flat if good]
    errors = sorted({error for good, _, error in flat if not good})
    return {"devices": count, "requests": len(flat), "ok": len(ok), "devices_all_answered": sum(
        all(good for good, _, _ in rs) and len(rs) == requests for rs in results), "seconds": seconds,
            "max_e2e_ms": max(ok) * 1e3 if ok else None, "errors": errors[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--junk", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--requests", type=int, default=5, help="per device")
    parser.add_argument("--silent", type=int, default=40, help="connections that send nothing, held to the end")
    parser.add_argument("--token", action="store_true", help="serve --token-file (devices answer its challenge)")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds at most per phase")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.junk <= 5000 or not 1 <= args.devices <= 60 or args.silent > 64:
        raise SystemExit("bounded: --junk 1..5000, --devices 1..60, --silent at most 64")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-flood-"))
    plan = _prepare(work)
    token = b"bench-flood-token" if args.token else None
    if token is not None:
        (work / "token.txt").write_bytes(token)
    part = DevicePart(plan)
    feeds = {n: np.random.default_rng(0).standard_normal(s.shape).astype(np.float32) for n, s in part.plan.inputs.items()}
    tensors = part.run(feeds)
    payload = {n: tensors[n] for n in part.sends}

    server = Server(plan, work / "token.txt" if token is not None else None)
    try:
        held_socks, held, silent_refused = _silent(server.address, args.silent, args.limit)
        stop, probes = threading.Event(), []  # type: ignore[var-annotated]
        prober = threading.Thread(target=_probe, args=(part, server.address, payload, token, stop, probes))
        prober.start()
        flood = _flood(server.address, args.junk, args.limit)
        stop.set()
        prober.join(timeout=args.limit)
        devices = _devices(part, server.address, payload, token, args.devices, args.requests, min(30.0, args.limit))
        for sock in held_socks:
            sock.close()
    finally:
        server.stop()
    probe_ok = [s for ok, s, _ in probes if ok]
    report = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or platform.platform()}",
        "python": platform.python_version(),
        "token": token is not None,
        "silent": {"opened": args.silent, "held": held, "turned_away": silent_refused},
        "flood": flood,
        "probe_during_flood": {"requests": len(probes), "ok": len(probe_ok),
                               "max_ms": max(probe_ok) * 1e3 if probe_ok else None,
                               "errors": sorted({e for ok, _, e in probes if not ok})[:3]},
        "devices_after": devices,
        "server_summary": [line for line in server.log if line.startswith("served ")],
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    f = flood
    print(f"{report['date']}, {report['machine']}, Python {report['python']}, token {'on' if token else 'off'}")
    print(f"silent: {args.silent} connections from {SILENT_FROM} sending nothing: {held} held, {silent_refused} turned away")
    all_s = f"{f['all_refused_s']:.2f} s" if f["all_refused_s"] is not None else f"not all within {args.limit:g} s"
    print(f"flood: {f['junk']} junk connections from {JUNK_FROM}: all refused in {all_s} (median {f['p50_end_s']:.2f} s; "
          f"{f['refused_within_target']} within {JUNK_TARGET_S:g} s; {f['outcomes']})")
    probe = report["probe_during_flood"]
    print(f"during the flood: a device on a fresh connection every 0.25 s: {probe['ok']}/{probe['requests']} answered, "
          f"slowest {probe['max_ms']:.0f} ms" if probe["max_ms"] is not None else
          f"during the flood: {probe['requests']} probe requests, none answered {probe['errors']}")
    d = devices
    print(f"then: {d['devices']} devices x {args.requests} requests: {d['ok']}/{d['requests']} answered, "
          f"{d['devices_all_answered']}/{d['devices']} devices all answered, in {d['seconds']:.2f} s"
          + (f", slowest {d['max_e2e_ms']:.0f} ms" if d["max_e2e_ms"] is not None else "")
          + (f"; errors {d['errors']}" if d["errors"] else ""))
    for line in report["server_summary"]:
        print(f"server: {line}")
    met = f["all_refused_s"] is not None and f["all_refused_s"] < JUNK_TARGET_S and d["devices_all_answered"] == d["devices"]
    print(f"target (every junk connection refused in under {JUNK_TARGET_S:g} s, then every device answered): "
          f"{'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
