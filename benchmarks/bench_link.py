"""Fidelity of the user-space link emulator (onnxsplit/link_emulator.py).

Throughput: one second's worth of bytes at each setting is pushed through the
relay to a sink that answers one byte at the end; effective rate = bytes / time.
Delay: median round trip of 1-byte ping-pongs through the relay at each round
trip setting, minus the same through a relay with no delay (loopback cost).
Targets (issue 4): throughput within 5% of the setting from 1 to 100 Mbit/s,
added delay within 1 ms.

    python benchmarks/bench_link.py [--json]
"""
from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, settings_for  # noqa: E402


def _sink() -> tuple[str, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            conn, _ = server.accept()

            def handle(conn: socket.socket = conn) -> None:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while data := conn.recv(1 << 16):
                    if data.endswith(b"!"):
                        conn.sendall(b"k")
                conn.close()

            threading.Thread(target=handle, daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[:2]


def throughput(sink: tuple[str, int], mbps: float) -> float:
    with LinkRelay(sink, settings_for(mbps * 1e6, 0.0)) as relay:
        conn = socket.create_connection(relay.address)
        count = int(mbps * 1e6 / 8)
        start = time.perf_counter()
        conn.sendall(b"x" * (count - 1) + b"!")
        conn.recv(1)
        elapsed = time.perf_counter() - start
        conn.close()
    return count * 8 / elapsed / 1e6


def round_trip(sink: tuple[str, int], rtt_s: float, pings: int = 30) -> float:
    with LinkRelay(sink, settings_for(None, rtt_s)) as relay:
        conn = socket.create_connection(relay.address)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for _ in range(pings):
            start = time.perf_counter()
            conn.sendall(b"!")
            conn.recv(1)
            times.append(time.perf_counter() - start)
        conn.close()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sink = _sink()
    rates = {mbps: throughput(sink, mbps) for mbps in (1, 5.85, 18.88, 50, 100)}
    base = round_trip(sink, 0.0)
    delays = {rtt_ms: (round_trip(sink, rtt_ms / 1000) - base) * 1000 for rtt_ms in (10, 50, 100)}
    result = {
        "throughput": [{"set_mbps": k, "measured_mbps": v, "error": v / k - 1} for k, v in rates.items()],
        "loopback_rtt_ms": base * 1000,
        "delay": [{"set_rtt_ms": k, "added_rtt_ms": v, "error_ms": v - k} for k, v in delays.items()],
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for row in result["throughput"]:
        print(f"{row['set_mbps']:7.2f} Mbit/s -> {row['measured_mbps']:8.3f} Mbit/s ({row['error']:+.2%})")
    print(f"loopback round trip through the relay {base * 1000:.3f} ms")
    for row in result["delay"]:
        print(f"rtt {row['set_rtt_ms']:5.1f} ms -> added {row['added_rtt_ms']:7.3f} ms ({row['error_ms']:+.3f} ms)")


if __name__ == "__main__":
    main()
