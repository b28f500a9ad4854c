"""The model's input as an image file (issue 14): JPEG, WebP or PNG through Pillow, for the cut that sends the
input itself to the server. This is the baseline most split-computing methods lose to (SC2, Matsubara et al.,
TMLR 2023): compress the picture and send it all.

The input is a float tensor of one image, (1, C, H, W) or (1, H, W, C) with C = 3 (RGB) or 1 (grey); the
layout is read from the shape (the axis of size 3 or 1; NCHW where both could be). Its values are mapped to
0..255 with one affine range per channel, calibrated from the user's inputs like int8:calibrated's
(codecs/calibrated.TensorRange), which both sides hold. Normalization is per channel too (an ImageNet mean and
std), so on inputs that reach black and white in every channel the pixel codes are the original 8-bit pixels
exactly: PNG is then lossless on the model's input, and JPEG's or WebP's change is their own. (One range for
the whole tensor, -2.12..2.64, made codes 9% coarser than the pixels; on VGG-16 over 26 photographs that
rounding alone moved the outputs 0.65%.) A uint8 input is sent as it is (range 0..255, step 1). Plans written
with one range for the whole tensor are read as they are.

Pillow is the encoder because it is the well-kept one every Python imaging stack already carries (libjpeg-turbo,
libwebp and zlib inside its wheels); its JPEG uses 4:2:0 chroma subsampling below quality 95 and none above.
"""
from __future__ import annotations

import io

import numpy as np

from splitnn.onnxsplit.codecs.base import pack, unpack
from splitnn.onnxsplit.codecs.calibrated import TensorRange, calibrate_range

# spec prefix -> Pillow's format name; PNG is lossless and takes no quality.
IMAGE_FORMATS = {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG"}
# libwebp's effort (cwebp -m, Pillow's `method`) when a spec names none: 4, a few percent fewer bytes than effort 0
# for a few times its encode time (docs/measurements.md, figures behind the code's choices).
WEBP_DEFAULT_METHOD = 4
# An image header may claim any size: one larger than this is refused before a pixel is decoded.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024


def image_axis(shape: tuple[int, ...]) -> int | None:
    """The channel axis of one image's tensor: 1 (NCHW) or 3 (NHWC); None when the shape is not one image."""
    if len(shape) != 4 or shape[0] != 1:
        return None
    if shape[1] in (1, 3):
        return 1
    return 3 if shape[3] in (1, 3) else None


def image_range(name: str, samples: list[np.ndarray]) -> TensorRange:
    """The affine range per channel that maps the image tensor's values over `samples` to 0..255 (int8:calibrated's;
    uint8: the identity)."""
    if samples[0].dtype == np.uint8:
        return TensorRange(name, (0.0,), (1.0,), samples[0].dtype.str)
    axis = image_axis(samples[0].shape)
    return calibrate_range(name, [np.moveaxis(s, axis, 1) for s in samples] if axis == 3 else samples)


def image_codec_name(fmt: str, quality: int | None, method: int | None = None) -> str:
    """The spec an image codec names itself by: png, jpeg:90, webp:90 (libwebp's default effort), webp:90:0."""
    name = fmt if quality is None else f"{fmt}:{quality}"
    return name if method is None else f"{name}:{method}"


class ImageCodec:
    """One image tensor as a JPEG, WebP or PNG file (see the module doc)."""

    def __init__(self, tensor_range: TensorRange, fmt: str, quality: int | None, method: int | None = None) -> None:
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"unknown image format '{fmt}'")
        self.range, self.format, self.quality, self.method = tensor_range, fmt, quality, method
        self.name = image_codec_name(fmt, quality, method)

    def encode(self, array: np.ndarray) -> bytes:
        from PIL import Image

        axis = image_axis(array.shape)
        if axis is None:
            raise ValueError(f"tensor '{self.range.name}' of shape {list(array.shape)} is not one image "
                             "(1xCxHxW or 1xHxWxC with 3 or 1 channels)")
        # The arithmetic in the tensor's own layout, contiguous, in place; only the uint8 codes are moved to H, W, C
        # (several times faster than through a transposed view: docs/measurements.md).
        channels = array.shape[axis]
        low, step = self._scales(channels)
        shape = (low.size, 1, 1) if axis == 1 else (1, 1, low.size)  # (one range for all: size 1)
        values = np.subtract(array[0], low.reshape(shape), dtype=np.float32)
        np.divide(values, step.reshape(shape), out=values)
        np.rint(values, out=values)
        np.clip(values, 0, 255, out=values)
        codes = values.astype(np.uint8)
        codes = np.ascontiguousarray(codes if axis == 3 else codes.transpose(1, 2, 0))  # H, W, C
        image = Image.fromarray(codes[:, :, 0] if codes.shape[2] == 1 else codes, "L" if codes.shape[2] == 1 else "RGB")
        buffer = io.BytesIO()
        options = {} if self.quality is None else {"quality": self.quality}
        if self.format == "jpeg" and self.quality is not None and self.quality >= 95:
            options["subsampling"] = 0  # 4:4:4: at this quality the colours are kept too
        if self.format == "webp":
            options["method"] = WEBP_DEFAULT_METHOD if self.method is None else self.method
        image.save(buffer, format=IMAGE_FORMATS[self.format], **options)
        return pack(b"nhwc" if axis == 3 else b"nchw", buffer.getvalue())

    def _scales(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """low and step per channel of the last axis (one for every channel in a plan made before the ranges were
        per channel)."""
        low, step = np.asarray(self.range.low, np.float32), np.asarray(self.range.step, np.float32)
        if low.size not in (1, channels):
            raise ValueError(f"tensor '{self.range.name}' has {channels} channels, calibrated for {low.size}")
        return low, step

    def decode(self, data: bytes | memoryview) -> np.ndarray:
        from PIL import Image

        layout, encoded = unpack(data)
        if layout not in (b"nchw", b"nhwc"):
            raise ValueError(f"image layout {layout[:8]!r} is neither nchw nor nhwc")
        try:
            with Image.open(io.BytesIO(encoded)) as image:  # reads the header only
                if image.format != IMAGE_FORMATS[self.format]:
                    raise ValueError(f"expected a {IMAGE_FORMATS[self.format]} image, got {image.format}")
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise ValueError(f"a {image.width}x{image.height} image is over the {MAX_IMAGE_PIXELS} pixels allowed")
                codes = np.asarray(image)
        except (OSError, SyntaxError, Image.DecompressionBombError) as exc:  # what Pillow raises on a bad file
            raise ValueError(f"not a readable {IMAGE_FORMATS[self.format]} image ({exc})") from None
        codes = codes[:, :, None] if codes.ndim == 2 else codes
        if self.range.dtype == np.dtype(np.uint8).str:
            values = codes
        else:
            low, step = self._scales(codes.shape[-1])
            values = low + codes.astype(np.float32) * step
        values = values.astype(np.dtype(self.range.dtype))
        return values[None] if layout == b"nhwc" else np.moveaxis(values, -1, 0)[None]
