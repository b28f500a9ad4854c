"""How fast a machine runs splitnn's codecs: two reference workloads, timed where they run.

- the image reference: a 224x224 photograph-like picture (seeded: smooth shading, edges, grain) encoded as
  webp:90:0 through codecs/image.ImageCodec, the path a plan that sends its input as an image takes;
- the array reference: a 64x56x56 post-ReLU feature map (seeded, about half zeros) coded as int8+lossless
  (int8 and blosc2), the path a coded cut tensor takes.

`splitnn profile` records both in the profile it writes for a board, and the `host` probes in this machine's
(cost_models.host). A codec's time measured here is then scaled to the board by the ratio of the matching
reference (cost_models.latency.codec_time_scale), as a board's compute is scaled by its fitted rates. The
built-in boards carry estimates (no board here to run them on): this reference time on the development machine
times the ratio of published single-thread 7-Zip ratings (see their TOML). A profile without them is scaled by
the ratio of DRAM bandwidths, which overstates a board's time for work that stays in its caches, such as an
image's encode.

Written by hand because no library times a codec against a reference that travels with a device profile; the
codecs themselves are splitnn's (Pillow's libwebp, blosc2).
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import numpy as np

from splitnn.cost_models.profiles import DeviceProfile

REFERENCE_RUNS = 21


def reference_image() -> np.ndarray:
    """A 1x3x224x224 float picture in 0..1 with what makes photographs cost what they cost to encode: smooth
    shading, hard edges and sensor grain (seeded: the same pixels everywhere)."""
    rng = np.random.default_rng(20261201)
    y, x = np.mgrid[0:224, 0:224].astype(np.float32) / 224
    channels = [0.5 + 0.4 * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
                for fx, fy, phase in ((1.0, 0.5, 0.0), (0.3, 1.7, 1.0), (2.1, 0.2, 2.0))]
    picture = np.stack(channels)
    for _ in range(12):  # rectangles of flat colour: edges
        top, left = rng.integers(0, 200, size=2)
        height, width = rng.integers(8, 64, size=2)
        picture[:, top:top + height, left:left + width] = rng.random((3, 1, 1), dtype=np.float32)
    picture += rng.normal(0, 0.03, picture.shape).astype(np.float32)
    return np.clip(picture, 0, 1)[None].astype(np.float32)


def reference_map() -> np.ndarray:
    """A 1x64x56x56 float32 feature map after a ReLU: about half zeros (seeded)."""
    rng = np.random.default_rng(20261201)
    return np.maximum(rng.normal(0, 1, (1, 64, 56, 56)), 0).astype(np.float32)


def codec_reference_seconds(runs: int = REFERENCE_RUNS) -> tuple[float, float]:
    """This machine's median seconds for the image reference and the array reference (see the module doc)."""
    from splitnn.onnxsplit.codecs.calibrated import calibrate_range
    from splitnn.onnxsplit.codecs.image import ImageCodec
    from splitnn.onnxsplit.codecs.specs import parse_codec

    image, feature_map = reference_image(), reference_map()
    picture = ImageCodec(calibrate_range("image", [image]), "webp", 90, 0)
    array = parse_codec("int8+lossless")
    return _median(lambda: picture.encode(image), runs), _median(lambda: array.encode(feature_map), runs)


def _median(work: Callable[[], object], runs: int) -> float:
    for _ in range(3):  # the first calls load the library and start its threads
        work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def with_codec_references(profile: DeviceProfile) -> DeviceProfile:
    """`profile` with this machine's codec references (what `splitnn profile` adds to the profile it fits)."""
    image_s, array_s = codec_reference_seconds()
    return dataclasses.replace(profile, image_codec_s=image_s, array_codec_s=array_s)
