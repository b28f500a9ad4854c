"""The reference networks, layer for layer as in the papers (and torchvision's layouts).

Each builder takes the input's spatial size and a seed and returns an ONNX
model with inline float32 weights. At their default sizes: LeNet-5 61,706
params; AlexNet 61,100,840 params and 714,188,480 Conv+Gemm MACs; VGG-16
138,357,544 and 15,470,264,320; VGG-19 143,667,240 and 19,632,062,464;
ResNet-18 11,689,512 params; MobileNet v1 4,231,976 params.
"""
from __future__ import annotations

import onnx

from splitnn.sample_models.builder import GraphBuilder

VGG16: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
VGG19: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                          512, 512, 512, 512, "M"]


def lenet5(size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """LeCun et al. 1998 (ReLU, average pooling): 2 conv + 3 fully connected layers, 1 channel in."""
    b = GraphBuilder("lenet5", seed)
    x = b.input("input", (1, 1, size, size))
    x = b.pool(b.relu(b.conv(x, 6, 5)), "AveragePool", 2, 2)
    x = b.pool(b.relu(b.conv(x, 16, 5)), "AveragePool", 2, 2)
    x = b.relu(b.linear(b.flatten(x), 120))
    x = b.relu(b.linear(x, 84))
    return b.build(b.linear(x, 10))


def alexnet(size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """torchvision's AlexNet (the single-GPU variant). At 224 the adaptive pooling
    to 6x6 is an identity and is left out; dropout is inactive at inference."""
    b = GraphBuilder("alexnet", seed)
    x = b.input("input", (1, 3, size, size))
    x = b.pool(b.relu(b.conv(x, 64, 11, stride=4, pad=2)), "MaxPool", 3, 2)
    x = b.pool(b.relu(b.conv(x, 192, 5, pad=2)), "MaxPool", 3, 2)
    x = b.relu(b.conv(x, 384, 3, pad=1))
    x = b.relu(b.conv(x, 256, 3, pad=1))
    x = b.pool(b.relu(b.conv(x, 256, 3, pad=1)), "MaxPool", 3, 2)
    x = b.relu(b.linear(b.flatten(x), 4096))
    x = b.relu(b.linear(x, 4096))
    return b.build(b.linear(x, 1000))


def _vgg(name: str, config: list[int | str], size: int, seed: int) -> onnx.ModelProto:
    b = GraphBuilder(name, seed)
    x = b.input("input", (1, 3, size, size))
    for layer in config:
        x = b.pool(x, "MaxPool", 2, 2) if layer == "M" else b.relu(b.conv(x, int(layer), 3, pad=1))
    x = b.relu(b.linear(b.flatten(x), 4096))
    x = b.relu(b.linear(x, 4096))
    return b.build(b.linear(x, 1000))


def vgg16(size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """Simonyan & Zisserman configuration D (torchvision vgg16, no batch norm)."""
    return _vgg("vgg16", VGG16, size, seed)


def vgg19(size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """Simonyan & Zisserman configuration E (torchvision vgg19, no batch norm)."""
    return _vgg("vgg19", VGG19, size, seed)


def resnet18(size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """He et al. 2016, torchvision's resnet18: BasicBlocks [2, 2, 2, 2], unfolded batch norm,
    1x1 projection shortcuts where the shape changes, so the graph has skip connections."""
    b = GraphBuilder("resnet18", seed)
    x = b.input("input", (1, 3, size, size))
    x = b.pool(b.relu(b.batch_norm(b.conv(x, 64, 7, stride=2, pad=3, bias=False))), "MaxPool", 3, 2, pad=1)
    for channels, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        for block in range(2):
            s = stride if block == 0 else 1
            shortcut = x
            y = b.relu(b.batch_norm(b.conv(x, channels, 3, stride=s, pad=1, bias=False)))
            y = b.batch_norm(b.conv(y, channels, 3, pad=1, bias=False))
            if s != 1 or b.shapes[x][1] != channels:
                shortcut = b.batch_norm(b.conv(x, channels, 1, stride=s, bias=False))
            x = b.relu(b.add(y, shortcut))
    x = b.flatten(b.global_avg_pool(x))
    return b.build(b.linear(x, 1000))


def mobilenet_v1(size: int = 224, seed: int = 0) -> onnx.ModelProto:
    """Howard et al. 2017, width 1.0: depthwise 3x3 + pointwise 1x1 blocks, BN and ReLU."""
    b = GraphBuilder("mobilenet_v1", seed)
    x = b.input("input", (1, 3, size, size))
    x = b.relu(b.batch_norm(b.conv(x, 32, 3, stride=2, pad=1, bias=False)))
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for channels, stride in blocks:
        cin = b.shapes[x][1]
        x = b.relu(b.batch_norm(b.conv(x, cin, 3, stride=stride, pad=1, group=cin, bias=False)))
        x = b.relu(b.batch_norm(b.conv(x, channels, 1, bias=False)))
    x = b.flatten(b.global_avg_pool(x))
    return b.build(b.linear(x, 1000))
