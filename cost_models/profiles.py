"""Device and link profiles: data files (TOML), not code.

Built-ins live in cost_models/profile_data/; a path to a .toml file of the
same form works everywhere a built-in name does. Rates in the files are in
GMAC/s and GB/s (decimal), times in ms, power in W or mW, as the field names say.
"""
from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from splitnn.cost_models.op_classes import FALLBACK, OP_CLASSES, with_fallbacks
from splitnn.onnxsplit.core.errors import SplitnnError

PROFILE_DATA = resources.files("splitnn.cost_models") / "profile_data"


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    macs_per_s: dict[str, float]  # per operator class (splitnn.cost_models.latency.OP_CLASSES)
    memory_bytes_per_s: float
    per_node_overhead_s: float
    ram_bytes: int
    usable_ram_fraction: float = 0.8
    compute_power_w: float | None = None  # drawn while computing, for the energy objective; None: not measured
    source: str = ""  # where the file came from
    # The rate at which a node's weights are read. At batch 1 each weight is read once per inference, from
    # DRAM once the model outgrows the caches, while activations mostly stay in cache; None: the same as
    # memory_bytes_per_s (the profiles that give one bandwidth).
    weight_bytes_per_s: float | None = None
    # A dense convolution runs at its class's full rate from this many output channels (per group) up; a
    # narrower one at sqrt(channels / this) of it: its GEMM is too narrow for the kernel's register tile. On
    # this x86 host at the device part's optimization level, 16 channels ran at 0.49 of the full rate, 32 at
    # 0.66, 64 at 0.93 (so about 67). None: no such loss (the profiles that do not give it).
    dense_conv_full_channels: float | None = None
    # A depthwise convolution runs along each output row, with a fixed cost per row and kernel tap: a row of
    # width w runs at w / (w + this) of the class's full rate (on this host about 20: 14 columns at 0.4 of
    # it, 160 at 0.9), and a row that steps over columns (stride > 1) at depthwise_strided_efficiency of
    # that (about 0.55 here). None: no such loss (the profiles that do not give it).
    depthwise_row_overhead: float | None = None
    depthwise_strided_efficiency: float | None = None
    # A dense convolution with few output pixels runs below the full rate: pixels / (pixels + this). On this
    # host, inside models, 3x3 layers with 49 pixels ran at 0.72 of the rate of those with 3136, 196 pixels
    # at 0.8 (timed alone, the same shapes ran slower still, so the `host` probes do not measure it: they
    # take HOST_PIXEL_OVERHEAD, and `splitnn profile` fits it). None: no such loss.
    dense_conv_pixel_overhead: float | None = None
    # Seconds for the codec references of cost_models/codec_probe on this device (an image encoded as webp:90:0;
    # a feature map coded as int8+lossless), as `splitnn profile` and the host probes measure them, or as the
    # built-in boards' TOML estimates them. None: unknown, and a codec's time is scaled by the DRAM bandwidths
    # instead (cost_models.latency.codec_time_scale).
    image_codec_s: float | None = None
    array_codec_s: float | None = None

    def __post_init__(self) -> None:
        # A profile written before a class existed (a file, a plan.json, or code) rates it as its fallback.
        object.__setattr__(self, "macs_per_s", with_fallbacks(self.macs_per_s))

    @property
    def weight_bandwidth(self) -> float:
        return self.weight_bytes_per_s or self.memory_bytes_per_s

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeviceProfile":
        """The inverse of to_dict (as stored in plan.json)."""
        return cls(
            name=data["name"], description=data.get("description", ""), macs_per_s=dict(data["macs_per_s"]),
            memory_bytes_per_s=data["memory_bytes_per_s"], per_node_overhead_s=data["per_node_overhead_s"],
            ram_bytes=data["ram_bytes"], usable_ram_fraction=data["usable_ram_fraction"],
            compute_power_w=_known_watts(data.get("compute_power_w")), source=data.get("source", ""),
            weight_bytes_per_s=data.get("weight_bytes_per_s"),
            dense_conv_full_channels=data.get("dense_conv_full_channels"),
            depthwise_row_overhead=data.get("depthwise_row_overhead"),
            depthwise_strided_efficiency=data.get("depthwise_strided_efficiency"),
            dense_conv_pixel_overhead=data.get("dense_conv_pixel_overhead"),
            image_codec_s=data.get("image_codec_s"), array_codec_s=data.get("array_codec_s"),
        )

    @property
    def usable_ram_bytes(self) -> int:
        return int(self.ram_bytes * self.usable_ram_fraction)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "macs_per_s": self.macs_per_s,
            "memory_bytes_per_s": self.memory_bytes_per_s,
            "per_node_overhead_s": self.per_node_overhead_s,
            "ram_bytes": self.ram_bytes,
            "usable_ram_fraction": self.usable_ram_fraction,
            "compute_power_w": self.compute_power_w,
            "source": self.source,
            "weight_bytes_per_s": self.weight_bytes_per_s,
            "dense_conv_full_channels": self.dense_conv_full_channels,
            "depthwise_row_overhead": self.depthwise_row_overhead,
            "depthwise_strided_efficiency": self.depthwise_strided_efficiency,
            "dense_conv_pixel_overhead": self.dense_conv_pixel_overhead,
            "image_codec_s": self.image_codec_s,
            "array_codec_s": self.array_codec_s,
        }


@dataclass(frozen=True)
class LinkProfile:
    """A link: bandwidth each way, round trip, and the radio's power while sending.

    transfer time = bytes_up * 8 / uplink_bps + bytes_back * 8 / downlink_bps + rtt_s
                    (one request, one reply)
    radio power   = mw_per_mbps * throughput_mbps + base_mw (Huang et al., MobiSys 2012)
    The downlink is the uplink's rate unless given (the literature's settings are uplinks).
    """

    name: str
    uplink_bps: float
    rtt_s: float
    radio_mw_per_mbps: float = 0.0
    radio_base_mw: float = 0.0
    description: str = ""
    downlink_bps: float | None = None  # None: as fast as the uplink (set so on construction)

    def __post_init__(self) -> None:
        if self.downlink_bps is None:
            object.__setattr__(self, "downlink_bps", self.uplink_bps)

    @property
    def down_bps(self) -> float:
        return self.downlink_bps if self.downlink_bps is not None else self.uplink_bps

    def transfer_seconds(self, nbytes: int, reply_bytes: int = 0) -> float:
        return nbytes * 8 / self.uplink_bps + reply_bytes * 8 / self.down_bps + self.rtt_s

    def radio_watts(self) -> float:
        return (self.radio_mw_per_mbps * self.uplink_bps / 1e6 + self.radio_base_mw) / 1000

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LinkProfile":
        """The inverse of to_dict (as stored in plan.json)."""
        return cls(
            name=data["name"], uplink_bps=float(data["uplink_bps"]), rtt_s=float(data["rtt_s"]),
            radio_mw_per_mbps=float(data.get("radio_mw_per_mbps", 0.0)),
            radio_base_mw=float(data.get("radio_base_mw", 0.0)),
            description=str(data.get("description", "")),
            downlink_bps=float(data["downlink_bps"]) if data.get("downlink_bps") is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uplink_bps": self.uplink_bps,
            "downlink_bps": self.down_bps,
            "rtt_s": self.rtt_s,
            "radio_mw_per_mbps": self.radio_mw_per_mbps,
            "radio_base_mw": self.radio_base_mw,
            "description": self.description,
        }


def read_toml(path: Path | Any, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SplitnnError(f"{what} '{path}' is not valid TOML ({exc}): fix the file") from None


def _known_watts(value: Any) -> float | None:
    """A power figure, or None when it is missing or 0 (no device computes for nothing: 0 was how older
    profiles wrote 'not measured')."""
    return float(value) if value is not None and float(value) > 0 else None


def _optional(table: dict[str, Any], key: str) -> float | None:
    return float(table[key]) if key in table else None


def device_from_dict(data: dict[str, Any], source: str) -> DeviceProfile:
    try:
        compute = data["compute"]
        memory = data["memory"]
        rates = {cls: float(compute[f"{cls}_gmac_per_s"]) * 1e9 for cls in OP_CLASSES
                 if cls not in FALLBACK or f"{cls}_gmac_per_s" in compute}
        return DeviceProfile(
            name=str(data["name"]),
            description=str(data.get("description", "")),
            macs_per_s=rates,
            memory_bytes_per_s=float(memory["bandwidth_gb_per_s"]) * 1e9,
            per_node_overhead_s=float(compute.get("per_node_overhead_ms", 0.0)) / 1000,
            dense_conv_full_channels=_optional(compute, "dense_conv_full_channels"),
            depthwise_row_overhead=_optional(compute, "depthwise_row_overhead"),
            depthwise_strided_efficiency=_optional(compute, "depthwise_strided_efficiency"),
            dense_conv_pixel_overhead=_optional(compute, "dense_conv_pixel_overhead"),
            ram_bytes=int(float(memory["ram_gb"]) * 1e9),
            usable_ram_fraction=float(memory.get("usable_fraction", 0.8)),
            compute_power_w=_known_watts(data.get("power", {}).get("compute_w")),
            source=source,
            weight_bytes_per_s=(float(memory["weight_bandwidth_gb_per_s"]) * 1e9
                                if "weight_bandwidth_gb_per_s" in memory else None),
            **_codec_references(data.get("codecs", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SplitnnError(f"device profile '{source}' lacks or mistypes field {exc}: see cost_models/profile_data/devices/ for the form") from None


def _codec_references(codecs: dict[str, Any]) -> dict[str, float | None]:
    """The [codecs] table's reference times (cost_models/codec_probe), in seconds; absent: None."""
    return {field: float(codecs[key]) / 1000 if key in codecs else None
            for field, key in (("image_codec_s", "image_reference_ms"), ("array_codec_s", "array_reference_ms"))}


def device_to_toml(profile: DeviceProfile, comments: Sequence[str] = ()) -> str:
    """The TOML text of `profile`, in the form `device_from_dict` reads, after `comments` as # lines."""
    lines = [
        *[f"# {line}".rstrip() for line in comments],
        f"name = {json.dumps(profile.name)}",
        f"description = {json.dumps(profile.description)}",
        "",
        "[compute]",
        *[f"{cls}_gmac_per_s = {profile.macs_per_s[cls] / 1e9:.4g}" for cls in OP_CLASSES],
        f"per_node_overhead_ms = {profile.per_node_overhead_s * 1000:.4g}",
        *[f"{key} = {value:.4g}" for key, value in (("dense_conv_full_channels", profile.dense_conv_full_channels),
                                                      ("depthwise_row_overhead", profile.depthwise_row_overhead),
                                                      ("depthwise_strided_efficiency", profile.depthwise_strided_efficiency),
                                                      ("dense_conv_pixel_overhead", profile.dense_conv_pixel_overhead))
          if value],
        "",
        "[memory]",
        f"bandwidth_gb_per_s = {profile.memory_bytes_per_s / 1e9:.4g}",
        *([f"weight_bandwidth_gb_per_s = {profile.weight_bytes_per_s / 1e9:.4g}"] if profile.weight_bytes_per_s else []),
        f"ram_gb = {profile.ram_bytes / 1e9:.4g}",
        f"usable_fraction = {profile.usable_ram_fraction}",
        "",
        "[power]",
        f"compute_w = {profile.compute_power_w}" if profile.compute_power_w is not None
        else "# compute_w: not measured (energy predictions are unknown until a measured figure is given)",
        *(["", "[codecs]", "# the codec references of cost_models/codec_probe.py, timed on this device",
           f"image_reference_ms = {profile.image_codec_s * 1000:.4g}",
           f"array_reference_ms = {profile.array_codec_s * 1000:.4g}"]
          if profile.image_codec_s is not None and profile.array_codec_s is not None else []),
    ]
    return "\n".join(lines) + "\n"
