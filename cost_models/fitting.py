"""Fit a device profile's figures to measured kernel times.

The model is the roofline of cost_models.latency, per original node:
    t(node) = max(MACs / (rate[class] x rate efficiency),
                  activation bytes / bandwidth + weight bytes / weight bandwidth) + overhead
and a kernel group (splitnn.cost_models.node_timing) is predicted as the sum over the
nodes it computes. The rate efficiency of a narrow dense convolution and of a
depthwise one's rows comes from the base profile (dense_conv_full_channels,
depthwise_row_overhead and depthwise_strided_efficiency, which the `host`
micro-benchmarks measure); it is not fitted. A dense convolution's loss at
few output pixels, pixels / (pixels + dense_conv_pixel_overhead), is fitted
(the last figure) where the base profile gives it: the `host` probes cannot
measure it (convolutions timed alone lose more than inside a model), while a
model's layers from 49 to 50176 pixels pin it down. The figures (one rate per
operator class, two bandwidths, overhead, pixels) are fitted in log space by
scipy's `least_squares` (trust-region reflective, each
figure bounded within a factor of 10^6 of the base profile's) on the residuals

    sqrt(w) * log(predicted / measured) per group,
    w = half the group's share of the measured time + half of 1 / groups,

so the slow kernels that make up the total count most while the many small
ones still pin down the per-node overhead. `objective` reports the plain
weighted squared log error at the optimum.

The base profile is also a prior: each figure's log distance from the
base's, times sqrt(prior), is one more residual. A figure the measured
models do not determine (no depthwise convolution in VGG-16, say) so stays
at the base's value, and one they barely touch moves only as far as the data
pays for: a detector with 4.7 MB of weights, which sit in the cache, once
"determined" a DRAM weight bandwidth 0.30x the micro-benchmarks', and
predicted AlexNet's fully connected layers 3x too slow. The base is meant to
be measured on the same machine (`--base host`: its micro-benchmarks); the
report marks the figures the data did not determine.

The kernels are timed under onnxruntime's profiler, which adds to every
kernel's time; a prediction is compared with runs without it. So each
model's plain run is timed too (NodeTimings.plain_seconds), and what the
kernels' medians add up to beyond it is taken off every kernel in equal
parts before the fit (PP-OCRv4's detector: 10.8 ms of kernels in a 9.9 ms
run, 328 kernels). Where the plain run is the longer, the difference is time
spent between kernels (the executor, threads waking up), and it is added to
every kernel in equal parts: on this shared machine, in its slower hours,
ResNet-18 ran 13.1 ms plainly against 10.9 ms of kernels, and a fit on the
kernels alone predicted it, in the fit, 17% too fast. Last, one common factor on all figures makes the summed
prediction equal the summed measurement, since the log error alone leaves
the total a little off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from splitnn.cost_models.latency import node_work, shape_efficiency
from splitnn.cost_models.node_timing import NodeTimings
from splitnn.cost_models.op_classes import OP_CLASSES
from splitnn.cost_models.profiles import DeviceProfile
from splitnn.cost_models.registry import node_costs
from splitnn.onnxsplit.model.graph import Graph

MEMORY = "memory"  # the activations' bandwidth, reported beside the classes
WEIGHTS = "weights"  # the weights' bandwidth
# Indices of the non-class figures in the fitted vector, after one rate per class.
BANDWIDTH, OVERHEAD, WEIGHT_BANDWIDTH, PIXELS = range(len(OP_CLASSES), len(OP_CLASSES) + 4)
NO_PIXEL_LOSS = 1e-9  # the pixel overhead of a base profile without one: no loss, and fitted no further
# A figure counts as determined when halving or doubling it worsens the objective by more than this fraction.
SENSITIVITY = 0.01
# A figure not determined counts as pulled by the data when it ends more than this factor from the base's value
# (beyond the common factor every figure takes): the data pushed it one way, the prior held it, nothing pinned it.
PULLED = 1.25


@dataclass(frozen=True)
class ClassFit:
    """How well the fitted profile predicts the kernel groups dominated by one operator class."""

    name: str  # an operator class of cost_models.latency, "memory" or "weights"
    fitted: bool  # False: the measured models did not determine it (scaled from the base profile)
    groups: int  # kernel groups where this class has the largest predicted time
    measured_s: float
    predicted_s: float
    base_value: float | None = None  # the base profile's figure (MAC/s or bytes/s)
    # Not determined, yet the data moved it more than PULLED from the base's figure (a figure the data pushes one
    # way, against the prior, without pinning it down): not the base's value, though not fitted either.
    pulled: bool = False

    @property
    def error(self) -> float:
        """Relative error of the class's summed time (predicted / measured - 1)."""
        return self.predicted_s / self.measured_s - 1 if self.measured_s else 0.0


@dataclass(frozen=True)
class ModelFit:
    model: str
    measured_s: float  # sum of kernel medians
    predicted_s: float  # sum of the fitted roofline over the same nodes
    group_error: float  # time-weighted mean of |predicted / measured - 1| over groups

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1 if self.measured_s else 0.0


@dataclass(frozen=True)
class ProfileFit:
    profile: DeviceProfile
    classes: tuple[ClassFit, ...]
    models: tuple[ModelFit, ...]
    objective: float  # the weighted squared log error at the optimum
    pixel_overhead_fitted: bool = False  # the dense convolutions' pixel overhead was determined by the models

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.to_dict(),
            "classes": [
                {"name": c.name, "fitted": c.fitted, "pulled": c.pulled, "base_value": c.base_value,
                 "groups": c.groups, "measured_s": c.measured_s, "predicted_s": c.predicted_s, "error": c.error}
                for c in self.classes
            ],
            "models": [
                {"model": m.model, "measured_s": m.measured_s, "predicted_s": m.predicted_s, "error": m.error,
                 "group_error": m.group_error}
                for m in self.models
            ],
            "objective": self.objective,
            "pixel_overhead_fitted": self.pixel_overhead_fitted,
        }


@dataclass(frozen=True)
class _Design:
    """The fit's data as flat arrays: one entry per measured node, one per group."""

    macs: np.ndarray
    bytes: np.ndarray  # activations read and written
    weights: np.ndarray  # weight bytes read
    klass: np.ndarray  # index into OP_CLASSES
    pixels: np.ndarray  # a dense convolution's output pixels (0: another node)
    group: np.ndarray  # index of the node's group
    measured: np.ndarray  # per group
    weight: np.ndarray  # per group
    model_of_group: np.ndarray


def _design(measurements: list[tuple[Graph, NodeTimings]], base: DeviceProfile) -> _Design:
    """The measured groups as arrays. A node counts as MACs / its shape efficiency on `base` (a narrow dense
    convolution, a depthwise one's rows; cost_models.latency): the fit finds the full rate, which the
    efficiency then scales down as in prediction."""
    macs, nbytes, weights, klass, pixels, group, model_of = [], [], [], [], [], [], []
    measured: list[float] = []
    for model_index, (graph, timings) in enumerate(measurements):
        costs = node_costs(graph)
        inflation = profiler_cost_per_kernel(timings)
        for g in timings.groups:
            seconds = g.seconds - inflation * len(g.kernels)
            if not g.nodes or seconds <= 0:
                continue  # nothing to predict it from (or too fast to see)
            for index in g.nodes:
                work = node_work(graph.nodes[index], costs[index], graph)
                macs.append(work.macs / shape_efficiency(work, base))
                pixels.append(work.pixels)
                nbytes.append(work.bytes_moved - work.weight_bytes)
                weights.append(work.weight_bytes)
                klass.append(OP_CLASSES.index(work.op_class))
                group.append(len(measured))
            measured.append(seconds)
            model_of.append(model_index)
    if not measured:
        raise ValueError("no measured kernel group to fit")
    measured_arr = np.array(measured)
    weight = 0.5 * measured_arr / measured_arr.sum() + 0.5 / len(measured_arr)
    return _Design(np.array(macs, float), np.array(nbytes, float), np.array(weights, float), np.array(klass),
                   np.array(pixels, float), np.array(group),
                   measured_arr, weight, np.array(model_of))


def profiler_cost_per_kernel(timings: NodeTimings) -> float:
    """What the profiler adds to each kernel's time: how far the kernels' summed medians exceed the whole run's
    time without the profiler, spread over the kernels (0 when the plain run was not timed; negative when the
    plain run is the longer: the time between kernels, which each kernel then carries its share of)."""
    kernels = sum(len(g.kernels) for g in timings.groups)
    if timings.plain_seconds is None or not kernels:
        return 0.0
    return (timings.kernel_seconds - timings.plain_seconds) / kernels


def _node_terms(d: _Design, log_params: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    rates = np.exp(log_params[:len(OP_CLASSES)])
    bandwidth, overhead = math.exp(log_params[BANDWIDTH]), math.exp(log_params[OVERHEAD])
    pixel_loss = np.where(d.pixels > 0, 1 + math.exp(log_params[PIXELS]) / np.maximum(d.pixels, 1), 1.0)
    return d.macs / rates[d.klass] * pixel_loss, d.bytes / bandwidth + d.weights / math.exp(log_params[WEIGHT_BANDWIDTH]), overhead


def _group_predictions(d: _Design, log_params: np.ndarray, smooth: float | None = None) -> np.ndarray:
    """Per group, the summed roofline of its nodes; with `smooth` = p, max(a, b) is taken as (a^p + b^p)^(1/p)."""
    compute, memory, overhead = _node_terms(d, log_params)
    if smooth is None:
        node_time = np.maximum(compute, memory)
    else:  # never flat: the solver sees the compute rate even where the memory term wins (and the reverse)
        top = np.maximum(np.maximum(compute, memory), 1e-30)
        node_time = top * ((compute / top) ** smooth + (memory / top) ** smooth) ** (1 / smooth)
    return np.bincount(d.group, weights=node_time + overhead, minlength=len(d.measured))


def _objective(d: _Design, log_params: np.ndarray) -> float:
    return float(np.sum(d.weight * np.log(_group_predictions(d, log_params) / d.measured) ** 2))


def _residuals(d: _Design, log_params: np.ndarray, smooth: float | None = None) -> np.ndarray:
    return np.sqrt(d.weight) * np.log(_group_predictions(d, log_params, smooth) / d.measured)


# Plain squares: a robust loss (soft-L1) predicted the models left out of the fit worse
# (benchmarks/bench_profile_fit.py; the figures are in docs/measurements.md).
LOSS = "linear"
# How far from the base profile a fitted figure may go (in each direction).
BOUND_FACTOR = 1e6


# The weight of the base profile as a prior, against the groups' weighted squared log errors (whose weights add
# up to 1): a figure twice the base's costs as much as a 22% error on every group. Chosen with
# benchmarks/bench_profile_fit.py (docs/measurements.md has the figures).
PRIOR = 0.1


def _solve(d: _Design, start: np.ndarray, prior: float) -> np.ndarray:
    """The log-parameters minimising the weighted log error plus the prior, within BOUND_FACTOR of `start`.

    The roofline's max() leaves the error flat in a rate while the other term wins, where a local solver
    stalls; so the solver first runs on a smooth max, which sharpens each round, then on the exact one.
    """
    from scipy.optimize import least_squares

    span = math.log(BOUND_FACTOR)
    params = start
    for smooth in (2.0, 8.0, 32.0, None):
        params = least_squares(lambda p: np.concatenate([_residuals(d, p, smooth), math.sqrt(prior) * (p - start)]),
                               params, bounds=(start - span, start + span), method="trf", loss=LOSS, x_scale=1.0).x
    return np.asarray(params)


def fit_profile(
    measurements: list[tuple[Graph, NodeTimings]], base: DeviceProfile, name: str,
    compute_power_w: float | None = None, description: str = "", prior: float = PRIOR
) -> ProfileFit:
    """Fit `base`'s per-class rates, bandwidth and overhead to the measured kernel groups, `base` weighing in as
    a prior (`prior` 0: the data alone). The power is what the user measured (`compute_power_w`), never the base
    profile's: timing a model tells nothing about watts."""
    d = _design(measurements, base)
    start = np.log([*(base.macs_per_s[c] for c in OP_CLASSES), base.memory_bytes_per_s, max(base.per_node_overhead_s, 1e-7),
                    base.weight_bandwidth, base.dense_conv_pixel_overhead or NO_PIXEL_LOSS])
    params = _solve(d, start, prior)
    determined = _determined(d, params)
    # Last, one common factor on all figures makes the summed prediction equal the summed measurement.
    factor = float(_group_predictions(d, params).sum() / d.measured.sum())
    params[[*range(len(OP_CLASSES)), BANDWIDTH, WEIGHT_BANDWIDTH]] += math.log(factor)
    params[OVERHEAD] -= math.log(factor)

    predicted = _group_predictions(d, params)
    classes = _class_fits(d, params, determined, predicted, start, factor)
    models = []
    for index, (graph, _) in enumerate(measurements):
        mask = d.model_of_group == index
        measured, pred = d.measured[mask], predicted[mask]
        group_error = float(np.sum(np.abs(pred / measured - 1) * measured) / measured.sum()) if mask.any() else 0.0
        models.append(ModelFit(str(graph.path), float(measured.sum()), float(pred.sum()), group_error))
    profile = replace(
        base,
        name=name,
        description=description or f"fitted by splitnn profile to {len(measurements)} model(s)",
        macs_per_s={c: float(math.exp(params[i])) for i, c in enumerate(OP_CLASSES)},
        memory_bytes_per_s=float(math.exp(params[BANDWIDTH])),
        per_node_overhead_s=float(math.exp(params[OVERHEAD])),
        weight_bytes_per_s=float(math.exp(params[WEIGHT_BANDWIDTH])),
        dense_conv_pixel_overhead=float(math.exp(params[PIXELS])) if base.dense_conv_pixel_overhead else None,
        compute_power_w=compute_power_w,
        source="fitted",
    )
    return ProfileFit(profile, tuple(classes), tuple(models), _objective(d, params),
                      bool(base.dense_conv_pixel_overhead) and determined[PIXELS])


def _determined(d: _Design, params: np.ndarray) -> list[bool]:
    """Per figure, whether halving or doubling it worsens the fit noticeably."""
    best = _objective(d, params)
    determined = []
    for k in range(len(params)):
        worse = min(_objective(d, params + step * np.eye(len(params))[k]) for step in (-math.log(2), math.log(2)))
        determined.append(worse > best * (1 + SENSITIVITY) + 1e-9)
    return determined


def _class_fits(d: _Design, params: np.ndarray, determined: list[bool], predicted: np.ndarray, start: np.ndarray,
                factor: float) -> list[ClassFit]:
    """Per operator class, and per bandwidth, the groups where it takes most of the predicted time; each figure
    beside the base's (`start`, in log), and whether the data pulled it from there without determining it."""
    def base(k: int) -> dict[str, Any]:
        moved = abs(params[k] - start[k] - math.log(factor))
        pulled = bool(not determined[k] and moved > math.log(PULLED))
        return {"base_value": float(math.exp(start[k])), "pulled": pulled}

    compute, memory, _ = _node_terms(d, params)
    node_time = np.maximum(compute, memory)
    per_class_time = np.zeros((len(d.measured), len(OP_CLASSES)))
    np.add.at(per_class_time, (d.group, d.klass), node_time)
    dominant = per_class_time.argmax(axis=1)
    memory_bound = np.bincount(d.group, weights=np.where(memory > compute, node_time, 0.0), minlength=len(d.measured))
    group_node_time = np.bincount(d.group, weights=node_time, minlength=len(d.measured))
    classes = []
    for i, c in enumerate(OP_CLASSES):
        mask = dominant == i
        classes.append(ClassFit(c, determined[i], int(mask.sum()), float(d.measured[mask].sum()),
                                float(predicted[mask].sum()), **base(i)))
    mask = memory_bound > 0.5 * group_node_time  # groups whose predicted time is mostly memory traffic
    classes.append(ClassFit(MEMORY, determined[BANDWIDTH], int(mask.sum()), float(d.measured[mask].sum()),
                            float(predicted[mask].sum()), **base(BANDWIDTH)))
    weight_time = np.bincount(d.group, weights=np.where(memory > compute, d.weights / math.exp(params[WEIGHT_BANDWIDTH]), 0.0),
                              minlength=len(d.measured))
    mask = weight_time > 0.5 * group_node_time  # groups whose predicted time is mostly reading weights
    classes.append(ClassFit(WEIGHTS, determined[WEIGHT_BANDWIDTH], int(mask.sum()), float(d.measured[mask].sum()),
                            float(predicted[mask].sum()), **base(WEIGHT_BANDWIDTH)))
    return classes


def fit_report_lines(fit: ProfileFit, measurements: list[tuple[Graph, NodeTimings]]) -> list[str]:
    """How the profile was obtained, as comment lines for its TOML file."""
    first = measurements[0][1]
    lines = [
        "Fitted by `splitnn profile` (cost_models/fitting.py) from onnxruntime profiler timings:",
        f"optimization level {first.level}, {first.runs} timed runs after {first.warmup} warm-up runs, "
        f"threads {first.threads or 'onnxruntime default'}.",
    ]
    for model in fit.models:
        lines.append(f"  {model.model}: measured {model.measured_s * 1e3:.3f} ms, predicted {model.predicted_s * 1e3:.3f} ms "
                     f"({model.error:+.1%}; per kernel group {model.group_error:.1%})")
    lines.append("Per class (groups where it dominates): measured -> predicted")
    for c in fit.classes:
        unit = "GB/s" if c.name in (MEMORY, WEIGHTS) else "GMAC/s"
        state = ("fitted" if c.fitted else
                 f"moved by these models from the base profile's {(c.base_value or 0) / 1e9:.3g} {unit} without "
                 "being determined" if c.pulled else "not determined by these models: the base profile's")
        lines.append(f"  {c.name}: {c.groups} groups, {c.measured_s * 1e3:.3f} -> {c.predicted_s * 1e3:.3f} ms ({c.error:+.1%}); {state}")
    return lines
