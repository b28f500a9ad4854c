"""The named samples `splitnn samples` offers."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import onnx

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.sample_models import networks


@dataclass(frozen=True)
class Sample:
    name: str
    description: str
    default_size: int
    min_size: int
    build: Callable[[int, int], onnx.ModelProto]


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample("lenet5", "LeNet-5, 1x32x32 input, 61,706 params", 32, 16, networks.lenet5),
        Sample("alexnet", "AlexNet (torchvision layout), 61.1 M params, 0.71 GMACs at 224", 224, 63, networks.alexnet),
        Sample("vgg16", "VGG-16, 138.4 M params (about 553 MB), 15.5 GMACs at 224", 224, 32, networks.vgg16),
        Sample("vgg19", "VGG-19, 143.7 M params (about 575 MB), 19.6 GMACs at 224", 224, 32, networks.vgg19),
        Sample("resnet18", "ResNet-18 with skip connections and batch norm, 11.7 M params", 224, 32, networks.resnet18),
        Sample("mobilenet", "MobileNet v1: depthwise-separable convolutions, 4.2 M params", 224, 32, networks.mobilenet_v1),
    )
}


def build_sample(name: str, size: int | None = None, seed: int = 0) -> onnx.ModelProto:
    """Build sample `name` at input size `size` (its default when None)."""
    if name not in SAMPLES:
        raise SplitnnError(f"unknown sample '{name}': choose one of {', '.join(SAMPLES)}")
    sample = SAMPLES[name]
    size = sample.default_size if size is None else size
    if size < sample.min_size:
        raise SplitnnError(f"--input-size {size} is too small for {name}: use at least {sample.min_size}")
    return sample.build(size, seed)
