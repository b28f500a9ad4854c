"""The model's input as an image file (JPEG, WebP, PNG), on real photographs."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from splitnn.onnxsplit.codecs.base import pack
from splitnn.onnxsplit.codecs.image import ImageCodec, image_axis, image_range
from splitnn.onnxsplit.codecs.specs import canonical_codec, needs_ranges, tensor_codecs
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.runtime.wire import ProtocolError, decode_tensors, encode_tensors
from splitnn.onnxsplit.vertical.codec_check import calibrated_ranges
from tests.helpers import imagenet_input, photos


@pytest.fixture(scope="module")
def photo_inputs() -> list[np.ndarray]:
    return [imagenet_input(Image.open(path)) for path in photos()[:4]]


def _codec(spec: str, samples: list[np.ndarray]) -> ImageCodec:
    (codec,) = tensor_codecs(spec, calibrated_ranges(spec, [{"x": s} for s in samples])).values()  # type: ignore[union-attr]
    return codec


def test_a_photo_travels_as_an_image_file_in_far_fewer_bytes(photo_inputs):
    x = photo_inputs[0]
    sizes, errors = {}, {}
    for spec in ("png", "jpeg:95", "jpeg:90", "jpeg:70", "webp:80"):
        codec = _codec(spec, photo_inputs)
        y = codec.decode(codec.encode(x))
        assert y.shape == x.shape and y.dtype == x.dtype
        sizes[spec], errors[spec] = len(codec.encode(x)), float(np.abs(y - x).mean())
    # One range per channel: where the photos reach black and white in every channel, the codes are the original
    # 8-bit pixels and PNG gives the input back exactly (float32 rounding aside).
    assert errors["png"] < 1e-6
    assert sizes["png"] > sizes["jpeg:95"] > sizes["jpeg:90"] > sizes["jpeg:70"]
    assert errors["jpeg:70"] > errors["jpeg:90"] > errors["jpeg:95"] > errors["png"]
    assert x.nbytes / sizes["jpeg:90"] > 20 and x.nbytes / sizes["webp:80"] > 20
    # WebP's effort changes how hard libwebp searches, not what it keeps: effort 6 packs a little more than 0.
    fast, small = _codec("webp:80:0", photo_inputs), _codec("webp:80:6", photo_inputs)
    assert fast.name == "webp:80:0" and _codec("webp:80:4", photo_inputs).name == "webp:80"
    assert len(small.encode(x)) < len(fast.encode(x)) < 1.5 * len(small.encode(x))  # 1.29x on this photo
    assert float(np.abs(fast.decode(fast.encode(x)) - x).mean()) < 2 * errors["webp:80"]
    # The range is the inputs' own, per channel: ImageNet's normalization maps 0..255 to (0 - mean) / std ..
    # (1 - mean) / std in each, so the step is one pixel level, 1 / (255 std).
    tensor_range = _codec("jpeg:90", photo_inputs).range
    for c, (mean, std) in enumerate(zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))):
        assert tensor_range.low[c] == pytest.approx(min(float(s[0, c].min()) for s in photo_inputs))
        assert tensor_range.low[c] == pytest.approx(-mean / std, abs=1e-5)
        assert tensor_range.step[c] == pytest.approx(1 / (255 * std), rel=1e-5)


def test_layouts_grey_and_uint8_inputs():
    pixels = np.asarray(Image.open(photos()[0]).convert("RGB").resize((64, 48)))  # H 48, W 64, uint8
    nhwc = pixels[None]
    codec = ImageCodec(image_range("x", [nhwc]), "png", None)
    assert codec.range.step == (1.0,) and np.array_equal(codec.decode(codec.encode(nhwc)), nhwc)  # uint8: exact
    nchw = (pixels.transpose(2, 0, 1)[None] / 255).astype(np.float32)
    back = _codec("png", [nchw]).decode(_codec("png", [nchw]).encode(nchw))
    assert back.shape == (1, 3, 48, 64) and np.abs(back - nchw).max() <= 0.5 / 255 + 1e-6
    # An NHWC float input (a Keras export's, scaled to -1..1): per channel of the last axis, PNG gives it back.
    nhwc_float = (pixels[None] / 127.5 - 1).astype(np.float32)
    png = _codec("png", [nhwc_float])
    assert len(png.range.low) == 3 and np.abs(png.decode(png.encode(nhwc_float)) - nhwc_float).max() < 1e-6
    grey = nchw[:, :1]
    assert _codec("jpeg:90", [grey]).decode(_codec("jpeg:90", [grey]).encode(grey)).shape == (1, 1, 48, 64)
    assert [image_axis(s) for s in [(1, 3, 8, 8), (1, 8, 8, 3), (1, 1, 8, 8), (1, 16, 8, 8), (2, 3, 8, 8), (3, 8, 8)]] == \
        [1, 3, 1, None, None, None]
    with pytest.raises(ValueError, match="not one image"):
        codec.encode(np.zeros((1, 16, 8, 8), np.uint8))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 4)) + chunk(b"IEND", b""))


def test_the_receiver_checks_an_image_before_decoding_it(photo_inputs):
    codec = _codec("png", photo_inputs)
    with pytest.raises(ValueError, match="pixels allowed"):  # 81 M pixels: under Pillow's own guard, over ours
        codec.decode(pack(b"nchw", _png_header_only(9_000, 9_000)))
    with pytest.raises(ValueError, match="not a readable PNG"):
        codec.decode(pack(b"nchw", _png_header_only(100_000, 100_000)))
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    with pytest.raises(ValueError, match="expected a PNG"):
        codec.decode(pack(b"nchw", buffer.getvalue()))
    # On the wire the range is the server's own: a frame that names an image codec it holds none for is refused.
    payload = encode_tensors({"x": photo_inputs[0]}, {"x": codec})
    assert np.allclose(decode_tensors(payload, {"x": codec})["x"], photo_inputs[0], atol=codec.range.step[0])
    with pytest.raises(ProtocolError, match="holds no calibration"):
        decode_tensors(payload)


def test_image_specs_are_read_or_refused_with_what_to_write():
    assert canonical_codec(" JPEG:90 ") == "jpeg:90" and canonical_codec("png") == "png"
    assert canonical_codec("webp:100") == "webp:100"
    assert canonical_codec("webp:90:0") == "webp:90:0" and canonical_codec("webp:90:4") == "webp:90"  # 4: libwebp's default
    assert needs_ranges("jpeg:90") and needs_ranges("png") and needs_ranges("int8:calibrated")
    assert not needs_ranges("int8+lossless") and not needs_ranges("garbage:::")
    for bad, says in (("jpeg", "quality from 1 to 100"), ("jpeg:0", "quality from 1 to 100"),
                      ("webp:high", "quality from 1 to 100"), ("png:5", "takes no quality"),
                      ("jpeg:90+lossless", "compressed already"), ("gif:80", "unknown codec"),
                      ("jpeg:90:0", "only webp takes an effort.*write jpeg:90"), ("webp:90:7", "effort from 0 \\(fastest\\) to 6")):
        with pytest.raises(SplitnnError, match=says):
            canonical_codec(bad)
