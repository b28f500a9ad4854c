"""Lossless compression of another codec's bytes, with blosc2 (a library made for numeric arrays): a byte
shuffle (the same byte of every value side by side, so a map of small or zero values compresses) then zstd."""
from __future__ import annotations

import numpy as np

from splitnn.onnxsplit.codecs.base import Codec, pack, unpack

# A few bytes of zstd can claim gigabytes: the claim is checked before anything is decompressed.
MAX_DECODED_BYTES = 1 << 30


class Lossless:
    """`inner` (Raw, Float16, Int8), its bytes compressed; the shuffle uses the inner codec's value size."""

    def __init__(self, inner: Codec, level: int = 5) -> None:
        self.inner, self.level = inner, level
        self.name = "lossless" if inner.name == "none" else f"{inner.name}+lossless"

    def encode(self, array: np.ndarray) -> bytes:
        import blosc2

        data = self.inner.encode(array)
        size = {"none": array.dtype.itemsize, "fp16": 2}.get(self.inner.name, 1)
        return pack(blosc2.compress2(data, typesize=size, codec=blosc2.Codec.ZSTD, clevel=self.level,
                                     filters=[blosc2.Filter.SHUFFLE]))

    def decode(self, data: bytes | memoryview) -> np.ndarray:
        import blosc2

        (compressed,) = unpack(data)
        size = blosc2.get_cbuffer_sizes(compressed)[0]  # what it would expand to, read from its header
        if size > MAX_DECODED_BYTES:
            raise ValueError(f"compressed tensor would expand to {size} bytes, over the {MAX_DECODED_BYTES} allowed")
        return self.inner.decode(blosc2.decompress2(compressed))
