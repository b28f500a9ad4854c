"""Codec specs as users write them (`--codec int8+lossless`), and the codec each names."""
from __future__ import annotations

from splitnn.onnxsplit.codecs.base import Codec, Raw
from splitnn.onnxsplit.codecs.lossless import Lossless
from splitnn.onnxsplit.codecs.quantized import Float16, Int8
from splitnn.onnxsplit.core.errors import SplitnnError

CODEC_NAMES = ("none", "fp16", "int8", "int8:channel", "lossless", "fp16+lossless", "int8+lossless",
               "int8:channel+lossless")


def parse_codec(spec: str) -> Codec:
    """A codec from its spec: none, fp16, int8 (one scale per tensor), int8:channel (one per channel of axis 1),
    lossless (blosc2: byte shuffle and zstd), and any of the lossy ones followed by +lossless."""
    text = spec.strip().lower()
    lossy, plus, rest = text.partition("+")
    if plus and rest != "lossless":
        raise SplitnnError(f"unknown codec '{spec}': only '+lossless' may follow a codec (known: {', '.join(CODEC_NAMES)})")
    inner: Codec
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
