"""Parse quantities with units from the command line: bandwidths, durations, byte counts."""
from __future__ import annotations

import re

from splitnn.onnxsplit.core.errors import SplitnnError

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_BANDWIDTH = {"": 1e6, "bit": 1, "bps": 1, "kbit": 1e3, "kbps": 1e3, "mbit": 1e6, "mbps": 1e6, "gbit": 1e9, "gbps": 1e9}
_DURATION = {"": 1e-3, "ms": 1e-3, "s": 1.0, "us": 1e-6}
_BYTES = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def _parse(text: str, units: dict[str, float], what: str, example: str) -> float:
    match = re.fullmatch(_NUMBER + r"\s*([a-zA-Z]*)(?:/s)?", text.strip())
    if not match or match.group(2).lower() not in units:
        raise SplitnnError(f"bad {what} '{text}': write a number with a unit, e.g. {example}")
    value = float(match.group(1)) * units[match.group(2).lower()]
    if value <= 0 and what == "bandwidth":
        raise SplitnnError(f"bad bandwidth '{text}': it must be above zero")
    return value


def parse_bandwidth_bps(text: str) -> float:
    """'5.85Mbit' -> 5.85e6 bit/s; a bare number is Mbit/s."""
    return _parse(text, _BANDWIDTH, "bandwidth", "5.85Mbit, 500kbit or 1Gbit")


def parse_duration_s(text: str) -> float:
    """'40ms' -> 0.04 s; a bare number is milliseconds."""
    return _parse(text, _DURATION, "duration", "40ms or 0.04s")


def parse_bytes(text: str) -> int:
    """'2MB' -> 2,000,000; 'MiB' and friends are binary."""
    return int(_parse(text, _BYTES, "byte count", "500kB, 2MB or 1GiB"))
