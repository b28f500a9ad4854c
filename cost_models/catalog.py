"""Profiles by name: the built-in devices and links shipped as TOML, `host` (this machine), or a .toml path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from splitnn.cost_models.host import SINGLE_THREAD, host_profile
from splitnn.cost_models.profiles import (
    PROFILE_DATA,
    DeviceProfile,
    LinkProfile,
    device_from_dict,
    read_toml,
)
from splitnn.onnxsplit.core.errors import SplitnnError


def builtin_devices() -> list[str]:
    return sorted(p.name[:-5] for p in (PROFILE_DATA / "devices").iterdir() if p.name.endswith(".toml"))


def builtin_links() -> dict[str, dict[str, Any]]:
    return read_toml(PROFILE_DATA / "links.toml", "link profiles")


def load_device(name_or_path: str) -> DeviceProfile:
    """A built-in device by name, `host` (this machine, measured once and cached; `host-1thread`: onnxruntime on
    one thread, as a Dask tile worker runs it), or a .toml path."""
    if name_or_path == "host":
        return host_profile()
    if name_or_path == SINGLE_THREAD:  # a Dask tile worker: one onnxruntime thread
        return host_profile(threads=1)
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise SplitnnError(f"device profile file '{path}' does not exist: check the path")
        return device_from_dict(read_toml(path, "device profile"), str(path))
    builtin = PROFILE_DATA / "devices" / f"{name_or_path}.toml"
    if not builtin.is_file():
        raise SplitnnError(
            f"unknown device profile '{name_or_path}': use one of {', '.join(builtin_devices() + ['host', SINGLE_THREAD])} "
            "or a .toml file"
        )
    return device_from_dict(read_toml(builtin, "device profile"), f"builtin:{name_or_path}")


def load_link(name: str | None = None, bandwidth_bps: float | None = None, rtt_s: float | None = None) -> LinkProfile:
    """A built-in link by name, optionally overridden, or a custom link from bandwidth and round trip."""
    links = builtin_links()
    if name is not None:
        if name not in links:
            raise SplitnnError(f"unknown link '{name}': use one of {', '.join(links)}, or --bandwidth and --rtt")
        spec = links[name]
        return LinkProfile(
            name=name,
            uplink_bps=bandwidth_bps if bandwidth_bps is not None else float(spec["uplink_mbps"]) * 1e6,
            rtt_s=rtt_s if rtt_s is not None else float(spec["rtt_ms"]) / 1000,
            radio_mw_per_mbps=float(spec.get("radio_mw_per_mbps", 0.0)),
            radio_base_mw=float(spec.get("radio_base_mw", 0.0)),
            description=str(spec.get("description", "")),
            downlink_bps=(bandwidth_bps if bandwidth_bps is not None
                          else float(spec["downlink_mbps"]) * 1e6 if "downlink_mbps" in spec else None),
        )
    if bandwidth_bps is None:
        raise SplitnnError("no link given: use --link NAME, or --bandwidth (e.g. 5.85Mbit) with --rtt (e.g. 40ms)")
    return LinkProfile(name="custom", uplink_bps=bandwidth_bps, rtt_s=rtt_s or 0.0)
