"""Each codec gives back what it was given (exactly, or within its stated error), in fewer bytes."""
from __future__ import annotations

import numpy as np
import pytest

from splitnn.onnxsplit.codecs.base import Raw
from splitnn.onnxsplit.codecs.specs import CODEC_NAMES, is_calibrated, parse_codec
from splitnn.onnxsplit.core.errors import SplitnnError


def _feature_map(seed: int = 0) -> np.ndarray:
    """Post-ReLU-like: smooth positive values, about 60% zeros, per-channel scales that differ tenfold."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 16, 28, 28)).astype(np.float32) - 0.25
    x *= np.geomspace(0.1, 1.0, 16, dtype=np.float32)[None, :, None, None]
    return np.maximum(x, 0)


SELF_CONTAINED = [n for n in CODEC_NAMES if not is_calibrated(n)]  # the calibrated ones: test_calibrated.py


@pytest.mark.parametrize("spec", SELF_CONTAINED)
def test_every_codec_round_trips_within_its_error(spec):
    codec = parse_codec(spec)
    assert parse_codec(codec.name).name == codec.name  # the name is a spec that reads back
    x = _feature_map()
    y = codec.decode(codec.encode(x))
    assert y.shape == x.shape and y.dtype == x.dtype
    if spec in ("none", "lossless"):
        assert np.array_equal(x, y)
    elif spec.startswith("fp16"):
        np.testing.assert_allclose(y, x, rtol=2 ** -10, atol=1e-7)
    else:  # int8: within half a step of its scale, and the zeros stay zeros
        per_channel = spec.startswith("int8:channel")
        top = x.max(axis=(0, 2, 3), keepdims=True) if per_channel else x.max()
        assert np.all(np.abs(y - x) <= top / 255 / 2 + 1e-6)
        assert np.all(y[x == 0] == 0)


def test_the_bytes_shrink_as_each_codec_promises():
    x = _feature_map()
    raw = len(Raw().encode(x))
    sizes = {spec: len(parse_codec(spec).encode(x)) for spec in SELF_CONTAINED}
    assert raw / sizes["fp16"] >= 1.9 and raw / sizes["int8"] >= 3.8 and raw / sizes["int8:channel"] >= 3.7
    assert raw / sizes["lossless"] >= 1.5  # zeros and shuffled exponent bytes
    assert sizes["int8+lossless"] < sizes["int8"] and sizes["fp16+lossless"] < sizes["fp16"]


def test_per_channel_scales_fit_channels_of_different_ranges_better():
    x = _feature_map()
    error = {spec: float(np.abs(parse_codec(spec).decode(parse_codec(spec).encode(x)) - x)[0, 0].max())
             for spec in ("int8", "int8:channel")}
    assert error["int8:channel"] < error["int8"] / 5  # channel 0 spans a tenth of the range of channel 15


def test_integer_tensors_pass_unchanged_and_bad_specs_are_named():
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    for spec in SELF_CONTAINED:
        codec = parse_codec(spec)
        assert np.array_equal(codec.decode(codec.encode(ids)), ids)
    for bad in ("int4", "fp16+zip", "gif"):
        with pytest.raises(SplitnnError, match="unknown codec"):
            parse_codec(bad)


def test_warm_up_loads_what_the_plan_codecs_need_before_a_request():
    """warm_up: the lossless codecs' blosc2 and an image format's Pillow plugin are loaded up front (a device's
    first frame paid about 170 ms importing blosc2), in a fresh interpreter where nothing had loaded them."""
    import subprocess
    import sys

    script = ("import sys\nfrom splitnn.onnxsplit.codecs.specs import warm_up\n"
              "assert 'blosc2' not in sys.modules and 'PIL.WebPImagePlugin' not in sys.modules\n"
              "warm_up(['int8+lossless', 'webp:90:0', 'fp16'])\n"
              "assert 'blosc2' in sys.modules and 'PIL.WebPImagePlugin' in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
