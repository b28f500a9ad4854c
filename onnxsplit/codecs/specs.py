"""Codec specs as users write them (`--codec int8+lossless`), and the codec each names."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

from splitnn.onnxsplit.codecs.base import Codec, Raw
from splitnn.onnxsplit.codecs.calibrated import CALIBRATED, CalibratedInt8, TensorRange
from splitnn.onnxsplit.codecs.lossless import Lossless
from splitnn.onnxsplit.codecs.quantized import Float16, Int8
from splitnn.onnxsplit.core.errors import SplitnnError

# One codec for every tensor, or one per tensor name (calibrated codecs hold each tensor's ranges).
Codecs: TypeAlias = Codec | Mapping[str, Codec]

CODEC_NAMES = ("none", "fp16", "int8", "int8:channel", CALIBRATED, "lossless", "fp16+lossless", "int8+lossless",
               "int8:channel+lossless", f"{CALIBRATED}+lossless")


def parse_codec(spec: str) -> Codec:
    """A codec from its spec: none, fp16, int8 (one scale per tensor), int8:channel (one per channel of axis 1),
    lossless (blosc2: byte shuffle and zstd), and any of the lossy ones followed by +lossless."""
    text = spec.strip().lower()
    lossy, plus, rest = text.partition("+")
    if plus and rest != "lossless":
        raise SplitnnError(f"unknown codec '{spec}': only '+lossless' may follow a codec (known: {', '.join(CODEC_NAMES)})")
    inner: Codec
    if lossy == CALIBRATED:
        raise SplitnnError(f"'{spec}' needs each tensor's calibrated range: build it with tensor_codecs")
    if lossy == "none" or (lossy == "lossless" and not plus):
        inner = Raw()
        if lossy == "lossless":
            return Lossless(inner)
    elif lossy == "fp16":
        inner = Float16()
    elif lossy in ("int8", "int8:tensor"):
        inner = Int8(per_channel=False)
    elif lossy == "int8:channel":
        inner = Int8(per_channel=True)
    else:
        raise SplitnnError(f"unknown codec '{spec}' (known: {', '.join(CODEC_NAMES)})")
    return Lossless(inner) if plus else inner


def canonical_codec(spec: str) -> str:
    """The spec as codecs name themselves (an unknown one is refused with the list of known ones)."""
    if is_calibrated(spec):
        lossy, plus, rest = spec.strip().lower().partition("+")
        if plus and rest != "lossless":
            raise SplitnnError(f"unknown codec '{spec}': only '+lossless' may follow a codec (known: {', '.join(CODEC_NAMES)})")
        return f"{CALIBRATED}+lossless" if plus else CALIBRATED
    return parse_codec(spec).name


def is_calibrated(spec: str) -> bool:
    return spec.strip().lower().partition("+")[0] == CALIBRATED


def codec_of(codecs: Codecs | None, name: str) -> Codec:
    """Tensor `name`'s codec: the one codec, or its own in a mapping (plain .npy where it has none)."""
    own = codecs.get(name) if isinstance(codecs, Mapping) else codecs
    return own or Raw()


def tensor_codecs(spec: str, ranges: Mapping[str, TensorRange]) -> dict[str, Codec] | Codec:
    """The codec of `spec` for every tensor: one codec, or for int8:calibrated one per tensor of `ranges` (the
    tensors without a range, integer ones, travel as they are)."""
    if not is_calibrated(spec):
        return parse_codec(spec)
    lossless = spec.strip().lower().endswith("+lossless")
    codecs: dict[str, Codec] = {}
    for name, tensor_range in ranges.items():
        inner: Codec = CalibratedInt8(tensor_range)
        codecs[name] = Lossless(inner) if lossless else inner
    return codecs
