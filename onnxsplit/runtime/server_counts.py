"""What a server has done, in all and per device (issue 15, item 4: per-device counters are logged).

A device is known by the name it announces on each connection (`device --name`, by default its host name;
a request carrying only DEVICE_NAME_TENSOR), else by its address. The counts of one device add up over all
its connections, so a device that reconnects is still one line.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class DeviceCounts:
    """One device's requests, bytes and server time, over all its connections."""

    name: str
    address: str
    ok: int = 0
    errors: int = 0
    bytes_in: int = 0  # frames read from it, headers included
    bytes_out: int = 0  # answers sent to it
    server_s: float = 0.0  # summed time its answered requests took the server
    connections: int = 0

    def line(self) -> str:
        mean_ms = self.server_s / self.ok * 1e3 if self.ok else 0.0
        return (f"device {self.name} ({self.address}): {self.ok} ok, {self.errors} errors, {self.connections} "
                f"connection(s), {self.bytes_in / 1e6:.2f} MB in, {self.bytes_out / 1e6:.2f} MB out, "
                f"{mean_ms:.1f} ms server time per answer")


@dataclass
class ServerCounts:
    ok: int = 0
    errors: int = 0
    connections: int = 0  # admitted, since the start
    open: int = 0  # admitted and not yet closed
    refused_busy: int = 0  # turned away at --max-connections
    refused_address: int = 0  # turned away at --max-per-address
    devices: dict[str, DeviceCounts] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def device(self, name: str, address: str) -> DeviceCounts:
        """The counts of the device `name` (created on its first connection)."""
        with self.lock:
            counts = self.devices.get(name)
            if counts is None:
                counts = self.devices[name] = DeviceCounts(name, address)
            counts.address = address
            return counts

    def add(self, ok: bool, device: DeviceCounts | None = None, bytes_in: int = 0, bytes_out: int = 0,
            server_s: float = 0.0) -> None:
        with self.lock:
            if ok:
                self.ok += 1
            else:
                self.errors += 1
            if device is not None:
                device.ok += ok
                device.errors += not ok
                device.bytes_in += bytes_in
                device.bytes_out += bytes_out
                device.server_s += server_s if ok else 0.0

    def lines(self) -> list[str]:
        """One log line per device, the busiest first."""
        with self.lock:
            return [d.line() for d in sorted(self.devices.values(), key=lambda d: (-d.ok - d.errors, d.name))]
