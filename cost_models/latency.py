"""Roofline latency of a node on a device profile.

time(node) = max(MACs / (rate of the node's operator class x width efficiency),
                 activation bytes / memory bandwidth + weight bytes / weight bandwidth)
             + per-node overhead
where activation bytes = the node's input activations + its outputs. At
batch 1 a fully connected layer reads each weight once, so it is memory
bound; a 3x3 convolution reuses each weight many times and is compute bound.
Weights and activations get a bandwidth each where the profile says so:
weights are read once per inference, from DRAM once the model outgrows the
caches, while a layer's activations were mostly just written and are still
in cache (on this 2-core host, about 40 against 170 GB/s). Operator classes
follow how runtimes implement them. The rate efficiency is 1 but for
- a dense convolution with fewer output channels per group than the profile's
  dense_conv_full_channels: sqrt(channels / full channels);
- a depthwise convolution, whose kernel runs along each output row: width /
  (width + depthwise_row_overhead), times depthwise_strided_efficiency where it
  steps more than one column;
- a dense convolution with few output pixels (its GEMM is short on that side):
  pixels / (pixels + dense_conv_pixel_overhead) (see DeviceProfile).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from splitnn.cost_models.op_classes import DENSE_CONV, DEPTHWISE_CONV, op_class
from splitnn.cost_models.profiles import DeviceProfile
from splitnn.cost_models.registry import NodeCost
from splitnn.onnxsplit.model.graph import Graph, Node


def bytes_moved(node: Node, cost: NodeCost, graph: Graph) -> int:
    reads = sum(graph.info(name).nbytes for name in node.all_inputs if not graph.is_constant(name) and name in graph.tensors)
    return reads + cost.param_bytes + cost.output_bytes


@dataclass(frozen=True)
class NodeWork:
    """What the roofline needs of one node. plan.json keeps it for the device part, so the part's time can
    be predicted on any profile without the model."""

    op_class: str
    macs: int
    bytes_moved: int  # activations and weights
    weight_bytes: int = 0  # of which weights (plan files older than this field: 0, one bandwidth for all)
    channels: int = 0  # a dense convolution's output channels per group (0: another node, or an older plan file)
    row: int = 0  # a depthwise convolution's output width (0: another node, or an older plan file)
    row_stride: int = 1  # and its stride along the row
    pixels: int = 0  # a dense convolution's output pixels (height x width; 0: another node, or an older plan file)


def node_work(node: Node, cost: NodeCost, graph: Graph) -> NodeWork:
    klass = op_class(node, graph)
    out = graph.shape(node.outputs[0])
    channels, row, row_stride, pixels = 0, 0, 1, 0
    if klass == DENSE_CONV and len(out) > 1:
        channels = max(1, out[1] // max(1, int(node.attrs.get("group", 1))))
    if klass == DEPTHWISE_CONV and len(out) == 4:
        row, row_stride = out[3], int((node.attrs.get("strides") or [1])[-1])
    if klass == DENSE_CONV and len(out) > 2:
        pixels = math.prod(out[2:])
    return NodeWork(klass, cost.macs, bytes_moved(node, cost, graph), cost.param_bytes, channels, row, row_stride, pixels)


def shape_efficiency(work: NodeWork, profile: DeviceProfile) -> float:
    """The fraction of its class's full rate a node reaches for its channels or rows (a narrow dense
    convolution, a depthwise one's rows), before the pixels (pixel_efficiency)."""
    full = profile.dense_conv_full_channels
    if work.channels > 0 and full and work.channels < full:
        return math.sqrt(work.channels / full)
    if work.row > 0 and profile.depthwise_row_overhead:
        strided = profile.depthwise_strided_efficiency or 1.0
        return work.row / (work.row + profile.depthwise_row_overhead) * (strided if work.row_stride > 1 else 1.0)
    return 1.0


def pixel_efficiency(pixels: int, overhead: float | None) -> float:
    """The fraction of the full rate a dense convolution with `pixels` output pixels reaches."""
    return pixels / (pixels + overhead) if pixels > 0 and overhead else 1.0


def rate_efficiency(work: NodeWork, profile: DeviceProfile) -> float:
    """The fraction of its class's full rate a node reaches (the module doc says which nodes lose some)."""
    return shape_efficiency(work, profile) * pixel_efficiency(work.pixels, profile.dense_conv_pixel_overhead)


def work_seconds(work: NodeWork, profile: DeviceProfile) -> float:
    compute = work.macs / (profile.macs_per_s[work.op_class] * rate_efficiency(work, profile))
    memory = (work.bytes_moved - work.weight_bytes) / profile.memory_bytes_per_s + work.weight_bytes / profile.weight_bandwidth
    return max(compute, memory) + profile.per_node_overhead_s


def node_seconds(node: Node, cost: NodeCost, graph: Graph, profile: DeviceProfile) -> float:
    if node.is_constant:
        return 0.0
    return work_seconds(node_work(node, cost, graph), profile)


def codec_time_scale(profile: DeviceProfile, here: DeviceProfile, image: bool = False) -> float:
    """How many times longer `profile` takes than this machine (`here`, its measured profile) for a codec's encode
    or decode timed here (`image`: an image codec's): the ratio of their times for the matching codec reference
    (cost_models/codec_probe) where both profiles have it (the built-in boards carry estimates from single-core
    ratings: a RockPro64 about 2.6 times this host); else the ratio of their bandwidths to DRAM (the weights',
    which is the one bandwidth of a profile that gives one; a RockPro64 against this host: about 19), which is
    right for work that streams through memory and overstates a board's time for work in its caches."""
    theirs, ours = ((profile.image_codec_s, here.image_codec_s) if image
                    else (profile.array_codec_s, here.array_codec_s))
    if theirs and ours:
        return theirs / ours
    return here.weight_bandwidth / profile.weight_bandwidth


def seconds(graph: Graph, costs: list[NodeCost], indices: Iterable[int], profile: DeviceProfile) -> float:
    """Predicted time of running nodes `indices` one after the other on `profile`."""
    return sum(node_seconds(graph.nodes[i], costs[i], graph, profile) for i in indices)
