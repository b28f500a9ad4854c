"""Codec specs as users write them (`--codec int8+lossless`), and the codec each names."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeAlias

import numpy as np

from splitnn.onnxsplit.codecs.base import Codec, Raw
from splitnn.onnxsplit.codecs.calibrated import CALIBRATED, CalibratedInt8, TensorRange
from splitnn.onnxsplit.codecs.image import IMAGE_FORMATS, WEBP_DEFAULT_METHOD, ImageCodec, image_codec_name
from splitnn.onnxsplit.codecs.lossless import Lossless
from splitnn.onnxsplit.codecs.quantized import Float16, Int8
from splitnn.onnxsplit.core.errors import SplitnnError

# One codec for every tensor, or one per tensor name (calibrated codecs hold each tensor's ranges).
Codecs: TypeAlias = Codec | Mapping[str, Codec]

CODEC_NAMES = ("none", "fp16", "int8", "int8:channel", CALIBRATED, "lossless", "fp16+lossless", "int8+lossless",
               "int8:channel+lossless", f"{CALIBRATED}+lossless")
# The model's input as an image file; Q: quality, 1 to 100; M: WebP's effort, 0 (fastest) to 6 (smallest; cwebp -m).
IMAGE_CODECS = ("jpeg:Q", "webp:Q[:M]", "png")
KNOWN = ", ".join((*CODEC_NAMES, *IMAGE_CODECS))


def parse_codec(spec: str) -> Codec:
    """A codec from its spec: none, fp16, int8 (one scale per tensor), int8:channel (one per channel of axis 1),
    lossless (blosc2: byte shuffle and zstd), and any of the lossy ones followed by +lossless."""
    text = spec.strip().lower()
    lossy, plus, rest = text.partition("+")
    if plus and rest != "lossless":
        raise SplitnnError(f"unknown codec '{spec}': only '+lossless' may follow a codec (known: {KNOWN})")
    inner: Codec
    if needs_ranges(text):
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
        raise SplitnnError(f"unknown codec '{spec}' (known: {KNOWN})")
    return Lossless(inner) if plus else inner


def canonical_codec(spec: str) -> str:
    """The spec as codecs name themselves (an unknown one is refused with the list of known ones)."""
    image = image_spec(spec)
    if image is not None:
        return image_codec_name(*image)
    if is_calibrated(spec):
        lossy, plus, rest = spec.strip().lower().partition("+")
        if plus and rest != "lossless":
            raise SplitnnError(f"unknown codec '{spec}': only '+lossless' may follow a codec (known: {KNOWN})")
        return f"{CALIBRATED}+lossless" if plus else CALIBRATED
    return parse_codec(spec).name


def is_calibrated(spec: str) -> bool:
    return spec.strip().lower().partition("+")[0] == CALIBRATED


def image_spec(spec: str) -> tuple[str, int | None, int | None] | None:
    """(format, quality, WebP effort) of an image codec spec (jpeg:90, webp:80, webp:90:0, png); None for any other
    spec. A malformed image spec (jpeg:0, png:5, jpeg+lossless, webp:90:9) is refused with what to write instead."""
    text, plus, rest = spec.strip().lower().partition("+")
    fmt, colon, tail = text.partition(":")
    if fmt not in IMAGE_FORMATS:
        return None
    if plus:
        raise SplitnnError(f"codec '{spec}': an image file is compressed already; drop '+{rest}'")
    if fmt == "png":
        if colon:
            raise SplitnnError(f"codec '{spec}': PNG is lossless and takes no quality; write png")
        return fmt, None, None
    quality, colon, method = tail.partition(":")
    if not quality.isdigit() or not 1 <= int(quality) <= 100:
        raise SplitnnError(f"codec '{spec}': give {fmt}'s quality from 1 to 100, e.g. {fmt}:90")
    if not colon:
        return fmt, int(quality), None
    if fmt != "webp":
        raise SplitnnError(f"codec '{spec}': only webp takes an effort after its quality; write {fmt}:{quality}")
    if not method.isdigit() or not 0 <= int(method) <= 6:
        raise SplitnnError(f"codec '{spec}': give webp's effort from 0 (fastest) to 6 (smallest), e.g. webp:90:0")
    return fmt, int(quality), None if int(method) == WEBP_DEFAULT_METHOD else int(method)


def require_self_describing(spec: str, where: str) -> None:
    """Refuse a codec whose frames are not all a receiver needs (ranges held on both sides, or "auto") for `where`."""
    if spec.strip().lower() == "auto" or needs_ranges(spec):
        raise SplitnnError(f"{where} takes a codec whose frames describe themselves (fp16, int8, int8:channel, "
                           f"lossless, or one of them +lossless), not {spec}")


def require_one_codec(spec: str, where: str) -> None:
    """Refuse "auto" for `where`, which takes one named codec."""
    if spec.strip().lower() == "auto":
        raise SplitnnError(f"{where} takes one named codec for every kept cut (e.g. int8+lossless, int8:calibrated, "
                           "webp:90), not auto")


def needs_ranges(spec: str) -> bool:
    """Whether the codec maps values with a range calibrated on the user's inputs, held by both sides (never raises:
    the wire asks it of any name a peer sends)."""
    text = spec.strip().lower()
    return is_calibrated(text) or text.partition(":")[0].partition("+")[0] in IMAGE_FORMATS


def codec_of(codecs: Codecs | None, name: str) -> Codec:
    """Tensor `name`'s codec: the one codec, or its own in a mapping (plain .npy where it has none)."""
    own = codecs.get(name) if isinstance(codecs, Mapping) else codecs
    return own or Raw()


def tensor_codecs(spec: str, ranges: Mapping[str, TensorRange]) -> dict[str, Codec] | Codec:
    """The codec of `spec` for every tensor: one codec, or for int8:calibrated and the image codecs one per tensor
    of `ranges` (the tensors without a range travel as they are)."""
    image = image_spec(spec)
    if image is not None:
        return {name: ImageCodec(tensor_range, *image) for name, tensor_range in ranges.items()}
    if not is_calibrated(spec):
        return parse_codec(spec)
    lossless = spec.strip().lower().endswith("+lossless")
    codecs: dict[str, Codec] = {}
    for name, tensor_range in ranges.items():
        inner: Codec = CalibratedInt8(tensor_range)
        codecs[name] = Lossless(inner) if lossless else inner
    return codecs


def warm_up(names: Iterable[str]) -> None:
    """Load what the codecs `names` need before a request does: blosc2 for the lossless ones (importing it takes
    about 170 ms here, which a device's or a server's first frame paid: 82 ms of decoding against 9 after) and
    Pillow's plugin for an image format. Each is run once on a few values."""
    for name in set(names):
        text = name.strip().lower()
        if text.endswith("lossless"):
            lossless = Lossless(Raw())
            lossless.decode(lossless.encode(np.zeros(4, np.float32)))
        image = image_spec(text)  # None for any codec but an image format
        if image is not None:
            tiny = np.zeros((1, 8, 8, 3), np.uint8)
            picture = ImageCodec(TensorRange("warm-up", (0.0,), (1.0,), tiny.dtype.str), *image)
            picture.decode(picture.encode(tiny))
