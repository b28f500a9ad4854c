"""plan.json, the one file every later step reads: one typed record per plan kind, written and read here.

`VerticalPlanFile` (a device part and a server part) and `TilePlanFile` (a
fused tile stack and a remainder) are frozen dataclasses; `write_plan` writes
one, `read_plan` reads one back, checking every field (a bad field is named in
one SplitnnError line). The JSON keys are the field names.

A plan folder is self-contained: paths inside (the artifacts, the original
model) are relative to the folder, the device part's roofline work is kept so
its time can be predicted on any profile, and the verification input and the
original model's outputs on it are kept beside the parts (`verification/`).
Schema 1 files (before these were kept) are read too; for them, what needs
the original model still needs it.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from splitnn.cost_models.latency import NodeWork
from splitnn.cost_models.prediction import Prediction
from splitnn.cost_models.profiles import DeviceProfile, LinkProfile
from splitnn.cost_models.registry import UnpricedOps, unpriced_ops
from splitnn.onnxsplit.artifacts.chain import PartStep, SlicedStep, Step
from splitnn.onnxsplit.artifacts.fingerprint import graph_fingerprint
from splitnn.onnxsplit.artifacts.integrity import check_sha256, folder_sha256
from splitnn.onnxsplit.artifacts.layout import PLAN_FILE, VERIFICATION_INPUTS_FILE, VERIFICATION_REFERENCE_FILE
from splitnn.onnxsplit.artifacts.verification import Verification
from splitnn.onnxsplit.codecs.calibrated import TensorRange
from splitnn.onnxsplit.codecs.specs import Codecs, tensor_codecs
from splitnn.onnxsplit.artifacts.pipeline_records import (
    Hop,
    PipelineFigures,
    PipelineWeightsUpdateRecord,
    PlannedLink,
    PlannedMachine,
    Stage,
    StageFiles,
)
from splitnn.onnxsplit.artifacts.reuse_records import ReuseArtifacts, ReuseRecord
from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic, write_text_atomic
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.records import Record, RecordError
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.sample_inputs import index_bounds

SCHEMA_VERSION = 2
STRATEGIES = ("vertical", "tiles", "adaptive", "pipeline")


@dataclass(frozen=True)
class TensorSpec(Record):
    shape: tuple[int, ...]
    dtype: str
    # For an integer input that indexes a table: random values must stay below it (sample_inputs.index_bounds).
    index_bound: int | None = None


@dataclass(frozen=True)
class PartSpec(Record):
    """The tensors one part reads and returns; `empty` when the side runs no node."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    empty: bool


@dataclass(frozen=True)
class Constraints(Record):
    device_memory_bytes: int
    max_device_share: float | None = None  # fraction of the model's MACs allowed on the device
    max_transfer_bytes: int | None = None


@dataclass(frozen=True)
class CutRecord(Record):
    id: int
    tensors: tuple[str, ...]
    bytes: int
    reply_bytes: int
    after_node: str | None
    device_macs: int
    device_param_bytes: int
    device_peak_bytes: int
    device_memory_bytes: int
    # The device side's nodes, for a min-cut partition that is not a prefix of the graph's order.
    device_node_names: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class CandidateRecord(CutRecord):
    predicted: Prediction
    feasible: bool
    violations: tuple[str, ...]


@dataclass(frozen=True)
class VerticalArtifacts(Record):
    device_model: str | None = None
    device_weights: str | None = None
    device_ort: str | None = None
    server_model: str | None = None
    server_weights: str | None = None


@dataclass(frozen=True)
class Parts(Record):
    device: PartSpec
    server: PartSpec


@dataclass(frozen=True)
class PartUpdateRecord(Record):
    changed: tuple[str, ...]
    changed_bytes: int
    blob_bytes: int


@dataclass(frozen=True)
class TraceChoiceRecord(Record):
    """A cut chosen for a bandwidth trace (partition --trace): its figure over the trace, beside the figure of
    the cut the link's typical rate alone would give."""

    trace: str
    steps: int
    statistic: str  # "mean", or a percentile such as "p95"
    expected_s: float
    typical_cut_id: int
    typical_expected_s: float


@dataclass(frozen=True)
class RangeCutRecord(Record):
    """A cut that is best for uplink rates [low_bps, high_bps] (vertical/link_range.py)."""

    cut_id: int
    tensors: tuple[str, ...]
    low_bps: float
    high_bps: float
    fixed_s: float  # its predicted latency is fixed_s + wire_bits / uplink_bps
    wire_bits: float


@dataclass(frozen=True)
class WeightsUpdateRecord(Record):
    retrained: str
    parts: dict[str, PartUpdateRecord]
    device_download_bytes: int  # the changed tensors, plus the .ort when it had to be rebuilt
    ort_rebuilt: bool | None = None  # None: the plan has no .ort, or no device weight changed
    # Why it was rebuilt: the changed weights the .ort no longer held as they were (VerticalPlanFile.device_ort_folded);
    # empty where it was rebuilt because, given the new weights at load, it did not reproduce the updated part.
    ort_rebuilt_for: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanHeader(Record):
    """What every plan kind records of its model; `model` is relative to the plan folder."""

    model: str
    graph_fingerprint: str
    inputs: dict[str, TensorSpec]
    outputs: tuple[str, ...]
    # Every other file of the folder, by relative path: its SHA-256 when the plan was written (artifacts/integrity;
    # empty in plans written before).
    artifact_sha256: dict[str, str] = field(default_factory=dict)
    # The model's nodes of an operator with no cost formula, priced at 0 s in every prediction of the plan (None:
    # none, or a plan written before 2026-12-08, which did not keep them).
    unpriced_ops: UnpricedOps | None = None

    def check_artifacts(self, outdir: str | Path, side: str | None) -> None:
        """Refuse a file of `side` ("device", "server"; None: every file) that is missing or not the one written."""
        check_sha256(Path(outdir), self.artifact_sha256, side)


@dataclass(frozen=True)
class CodecTrialRecord(Record):
    """One (cut, codec) pair that partition --codec auto considered: its request's measured bytes, its prediction at
    them, and its verdict (chosen, ruled out by the output change it reached, not checked, or not priced: slower
    than the chosen pair whatever its bytes)."""

    cut_id: int
    tensors: tuple[str, ...]
    codec: str
    total_s: float  # for a pair not priced: the least it could take (its cut's compute and the round trip)
    throughput_fps: float | None  # None for a pair not priced
    verdict: str
    # The request on the wire in this codec, frame included (the median over the inputs priced; 0 when the cut sends
    # nothing). None for a pair not priced, and in plans written before 2026-12-01, which did not keep it.
    request_bytes: int | None = None


@dataclass(frozen=True)
class CodecRecord(Record):
    """The codec the device sends the cut's tensors in (onnxsplit/codecs), and what it did on the inputs it was
    measured on (the user's --calibration inputs, else the verification input): the bytes of a request, and the
    model's outputs through it against the same parts without it."""

    name: str
    raw_bytes: int  # the tensors the server reads, as .npy (per request; the median over the inputs)
    coded_bytes: int
    max_abs_err: float  # the largest over the inputs
    max_rel_err: float  # the largest error over the largest magnitude, per output
    same_top1: bool | None  # for an output of one row of scores: the same class first on every input; None: no such output
    agreement: float | None = None  # the share of inputs whose classifier output kept its top-1 class
    inputs: int = 1  # how many inputs it was measured on
    calibration: str | None = None  # where those inputs came from (None: the verification input)
    ranges: tuple[TensorRange, ...] = ()  # int8:calibrated, image codecs: each tensor's range, held by both sides
    encode_s: float = 0.0  # median per request on the machine that planned
    decode_s: float = 0.0
    # How many times longer the device encodes and the server decodes than the machine that planned
    # (cost_models.latency.codec_time_scale; plan files older than these fields: 1, this machine's time).
    device_scale: float = 1.0
    server_scale: float = 1.0
    # The largest output change on the verification input, which run-bench runs (None: the inputs measured on
    # were that input, and max_abs_err is it).
    verification_abs_err: float | None = None

    @property
    def device_encode_s(self) -> float:
        """The encode time on the device, as the prediction counts it."""
        return self.encode_s * self.device_scale

    @property
    def server_decode_s(self) -> float:
        return self.decode_s * self.server_scale

    def codecs(self) -> Codecs:
        """The codec each tensor travels in (int8:calibrated and the image codecs: one per tensor, with its range)."""
        return tensor_codecs(self.name, {r.name: r for r in self.ranges})

    @property
    def bench_abs_err(self) -> float:
        """How far run-bench's outputs may be from the model's through this codec."""
        return self.max_abs_err if self.verification_abs_err is None else self.verification_abs_err

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.coded_bytes if self.coded_bytes else 1.0


@dataclass(frozen=True)
class ReplyCodecRecord(Record):
    """The codec the server answers in (partition --reply-codec: one whose frames describe themselves, so the device
    decodes by the name each tensor carries), and what it did to the server part's outputs on the inputs it was
    measured on. Its times are priced where they run: the encode on the server, the decode on the device; run-bench
    measures both inside the transfer stage, and the prediction counts them there."""

    name: str
    raw_bytes: int  # the outputs coming back, as .npy (per request; the median over the inputs)
    coded_bytes: int
    max_abs_err: float  # the largest change of an output the codec makes, over the inputs
    max_rel_err: float  # that change over the output's largest magnitude
    agreement: float | None  # the share of inputs whose classifier output kept its top-1 class (None: no such output)
    inputs: int
    encode_s: float  # median per reply on the machine that planned
    decode_s: float
    server_encode_s: float  # the encode on the server, the decode on the device, as the prediction counts them
    device_decode_s: float

    @property
    def ratio(self) -> float:
        return self.raw_bytes / self.coded_bytes if self.coded_bytes else 1.0


@dataclass(frozen=True, kw_only=True)
class VerticalPlanFile(PlanHeader):
    objective: str
    forced_cut: bool
    cut: CutRecord
    predicted: Prediction
    device_profile: DeviceProfile
    server_profile: DeviceProfile
    link: LinkProfile
    constraints: Constraints
    candidates: tuple[CandidateRecord, ...]
    parts: Parts
    verification: Verification
    artifacts: VerticalArtifacts = field(default_factory=VerticalArtifacts)
    device_work: tuple[NodeWork, ...] | None = None  # the device part's nodes, for predictions without the model
    weights_update: WeightsUpdateRecord | None = None
    # The .ort predates a weights update that kept it: at load it takes every weight from the device blob
    # (add_initializer), which update-weights checked reproduces the updated part.
    device_ort_weights_from_blob: bool = False
    # The device part's weights its .ort does not hold as they were (part_files.ort_folded_weights: onnxruntime
    # folded, fused, reshaped or dropped them writing it): never given to it at load, and a retrained one rebuilds
    # it. None: a plan written before this was recorded.
    device_ort_folded: tuple[str, ...] | None = None
    over_trace: TraceChoiceRecord | None = None  # partition --trace: the cut is the best over that trace
    # partition --bandwidth-range (or --trace): the cuts that are best somewhere in that range, fastest first
    over_range: tuple[RangeCutRecord, ...] | None = None
    codec: CodecRecord | None = None  # partition --codec: how the cut's tensors travel (None: plain .npy)
    codec_trials: tuple[CodecTrialRecord, ...] | None = None  # partition --codec auto: every pair priced, fastest first
    reply_codec: ReplyCodecRecord | None = None  # partition --reply-codec: how the answer travels (None: plain .npy)
    strategy: str = "vertical"
    schema_version: int = SCHEMA_VERSION

    @property
    def request_codecs(self) -> tuple[CodecRecord, ...]:
        """The codec records the requests travel in (none: plain .npy)."""
        return (self.codec,) if self.codec is not None else ()

    @property
    def codec_names(self) -> tuple[str, ...]:
        """Every codec the plan's frames travel in, requests and answers (codecs.specs.warm_up loads them)."""
        return _codec_names(self.request_codecs, self.reply_codec)

    @property
    def device_file(self) -> str | None:
        """The device part a device runs: the .ort when written, else the .onnx; None when the part is empty."""
        return self.artifacts.device_ort or self.artifacts.device_model

    @property
    def planned_for(self) -> str:
        """The device, link and server the plan's prediction is for."""
        link = self.link
        return (f"{self.device_profile.name} -> {link.name} {link.uplink_bps / 1e6:g} Mbit/s, rtt {link.rtt_s * 1e3:g} "
                f"ms -> {self.server_profile.name}")


@dataclass(frozen=True)
class GridRecord(Record):
    rows: int
    cols: int


@dataclass(frozen=True)
class WindowRecord(Record):
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pads: tuple[int, ...]
    dilation: tuple[int, ...]


@dataclass(frozen=True)
class StackLayerRecord(Record):
    node: str
    op_type: str
    input: str
    output: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int
    window: WindowRecord | None
    in_layout: str = "NCHW"  # of `input` in memory; tiles are regions of its H and W axes
    out_layout: str = "NCHW"
    inputs: tuple[str, ...] = ()  # every data input where there are several (a residual Add, a Concat)


@dataclass(frozen=True)
class TileRecord(Record):
    id: int
    row: int
    col: int
    input_region: tuple[int, ...]
    output_region: tuple[int, ...]
    macs: int
    peak_bytes: int
    pads: tuple[tuple[int, ...], ...]
    predicted_s: float
    output_regions: tuple[tuple[int, ...], ...] = ()  # a stack with several outputs: each one's, in its outputs' order
    input_regions: tuple[tuple[int, ...], ...] = ()  # a stack with several inputs: each one's, in its inputs' order


@dataclass(frozen=True)
class StopRecord(Record):
    """A node that reads the tileable region and cannot join it (tiles/stack_region.StackStop)."""

    node: str
    op_type: str
    reason: str
    whole_map: bool
    after_layers: int


@dataclass(frozen=True)
class CoverageRecord(Record):
    """How far tiles reach in the model, and where the tileable region stops (tiles/stack_region.TileCoverage)."""

    model_macs: int
    region_macs: int
    deepest_stack_macs: int
    tiled_macs: int  # every stack of this plan, each layer once
    whole_map_node: str | None
    whole_map_op: str | None
    macs_before_whole_map: int
    tiled_time_share: float  # the stacks' layers' share of the model's predicted time on one node
    speedup_bound: float  # the most the nodes could give with those layers split perfectly
    stops: tuple[StopRecord, ...]
    region_layers: int = 0
    deepest_stack_layers: int = 0
    live_after_stack: tuple[str, ...] = ()  # where the longest stack ends before the region: the maps still live
    client_steps: int = 0  # squeeze-and-excitation vectors the region goes past (the client computes them)


@dataclass(frozen=True)
class TileMemory(Record):
    stack_param_bytes: int
    node_bytes: int
    node_usable_bytes: int


@dataclass(frozen=True)
class SliceRecord(Record):
    neurons: tuple[int, int]
    bytes: int


@dataclass(frozen=True)
class NeuronSplitRecord(Record):
    node: str
    op_type: str
    input: str
    output: str
    param_bytes: int
    slices: tuple[SliceRecord, ...]
    why: str = "memory"  # "memory": too big for a node; "time": predicted faster across the nodes


@dataclass(frozen=True)
class TilePrediction(Record):
    tiles_phase_s: float
    remainder_s: float
    makespan_s: float
    single_node_s: float
    speedup: float | None
    # Each stack's client step, tiles and bytes on the cluster link (older plan files: its tiles alone, or none).
    stack_phases_s: tuple[float, ...] = ()
    stack_transfer_bytes: tuple[int, ...] = ()  # what each stack's tiles move between the client and the nodes
    cluster_link_bps: float | None = None  # the link those bytes were priced at (older plan files: none, not priced)


@dataclass(frozen=True)
class ClientStepRecord(Record):
    """What the client computes from the stitched maps before a stack's tiles go out (a squeeze-and-excitation
    vector): the nodes, the vectors every tile of the stack reads whole, and the step's predicted seconds."""

    nodes: tuple[str, ...]
    outputs: tuple[str, ...]
    predicted_s: float


@dataclass(frozen=True)
class StackRecord(Record):
    """One fused stack and its tiles. plan.json lists the stacks after the first in `later_stacks` (each cropped from
    the previous stack's stitched output); the first's fields are TilePlanFile's own, and
    TilePlanFile.all_stacks gives every stack in this one form."""

    grid: GridRecord
    input: str  # the previous stack's output
    fuse_until: str  # this stack's output
    stack: tuple[StackLayerRecord, ...]
    tiles: tuple[TileRecord, ...]
    stack_macs: int
    tiled_macs: int
    max_tile_peak_bytes: int
    param_bytes: int
    predicted_phase_s: float  # its client step, tiles and bytes on the cluster link (the round trip aside)
    reuse: ReuseRecord = field(default_factory=ReuseRecord)  # as TilePlanFile.reuse, for this stack
    inputs: tuple[str, ...] = ()  # a stack that reads several maps: all of them (`input` is the first)
    outputs: tuple[str, ...] = ()  # a stack that hands on several maps: all of them (`fuse_until` is the last)
    client_step: ClientStepRecord | None = None  # run on the client before this stack's tiles

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.inputs or (self.input,)

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.outputs or (self.fuse_until,)


@dataclass(frozen=True)
class StackArtifacts(Record):
    """A later stack's files: its graph, its weight blob and one graph per tile, in a folder of their own."""

    stack_model: str
    stack_weights: str
    tiles: tuple[str, ...]
    reuse: ReuseArtifacts | None = None  # as TileArtifacts.reuse, for this stack
    client_step: PartStep | None = None  # the graph of StackRecord.client_step, its inputs and outputs


@dataclass(frozen=True)
class TileArtifacts(Record):
    stack_model: str
    stack_weights: str
    tiles: tuple[str, ...]
    later_stacks: tuple[StackArtifacts, ...] = ()
    reuse: ReuseArtifacts | None = None  # the reuse phases' graphs
    remainder_steps: tuple[PartStep | SlicedStep, ...] | None = None
    remainder_model: str | None = None
    remainder_weights: str | None = None


@dataclass(frozen=True, kw_only=True)
class TilePlanFile(PlanHeader):
    image_input: str
    nodes: int
    node_profile: DeviceProfile
    grid: GridRecord
    fuse_until: str
    image_layout: str = "NCHW"  # "NHWC": tiles are regions of axes 1 and 2 of the image
    stack: tuple[StackLayerRecord, ...]
    tiles: tuple[TileRecord, ...]
    stack_outputs: tuple[str, ...] = ()  # the first stack's maps handed on, where several (`fuse_until` is the last)
    stack_macs: int
    tiled_macs: int
    redundant_macs_ratio: float
    stack_peak_bytes: int
    max_tile_peak_bytes: int
    tile_peak_fraction: float
    later_stacks: tuple[StackRecord, ...] = ()  # the stacks after the first, in order
    memory: TileMemory
    neuron_splits: tuple[NeuronSplitRecord, ...] = ()
    coverage: CoverageRecord | None = None  # plan files older than this field: none
    predicted: TilePrediction
    remainder: PartSpec
    reuse: ReuseRecord = field(default_factory=ReuseRecord)  # its MACs and each tile's task data, where on
    verification: Verification
    artifacts: TileArtifacts
    strategy: str = "tiles"
    schema_version: int = SCHEMA_VERSION

    @property
    def reuse_enabled(self) -> bool:
        return self.reuse.enabled

    @property
    def all_stacks(self) -> tuple[StackRecord, ...]:
        """Every stack in order, the first (which reads the image) in the later stacks' form."""
        p = self.predicted
        first = StackRecord(
            grid=self.grid, input=self.image_input, fuse_until=self.fuse_until, stack=self.stack, tiles=self.tiles,
            stack_macs=self.stack_macs, tiled_macs=self.tiled_macs, max_tile_peak_bytes=self.max_tile_peak_bytes,
            param_bytes=self.memory.stack_param_bytes - sum(s.param_bytes for s in self.later_stacks),
            predicted_phase_s=p.stack_phases_s[0] if p.stack_phases_s else p.tiles_phase_s, reuse=self.reuse,
            outputs=self.stack_outputs)
        return (first, *self.later_stacks)

    @property
    def tiled_output(self) -> str:
        """The tensor the remainder starts from: the last stack's output."""
        return self.later_stacks[-1].fuse_until if self.later_stacks else self.fuse_until

    def remainder_chain(self) -> tuple[Step, ...]:
        """What runs after the tiles are stitched, as chain steps (none when the stack is the whole model)."""
        if self.artifacts.remainder_steps:
            return self.artifacts.remainder_steps
        if self.artifacts.remainder_model is not None:
            return (PartStep(self.artifacts.remainder_model, self.remainder.inputs, self.remainder.outputs),)
        return ()


@dataclass(frozen=True)
class AdaptiveCutRecord(Record):
    """One cut an adaptive plan keeps: where it is best, its latency line, and the server graph that finishes it."""

    cut: CutRecord
    predicted: Prediction  # at the plan's typical link
    low_bps: float
    high_bps: float
    fixed_s: float  # predicted latency = fixed_s + wire_bits / uplink_bps
    wire_bits: float
    server: PartSpec
    server_model: str | None  # None: all on the device
    codec: CodecRecord | None = None  # partition --adaptive --codec: how this cut's tensors travel (None: plain .npy)


@dataclass(frozen=True)
class AdaptiveArtifacts(Record):
    device_model: str
    device_weights: str
    server_weights: str | None = None  # one blob that every server graph reads
    device_ort: str | None = None


@dataclass(frozen=True, kw_only=True)
class AdaptivePlanFile(PlanHeader):
    """A split for a link that moves (partition --adaptive): every cut that is best somewhere in a range of
    uplink rates, the device part running up to the deepest of them (or the whole model, to answer alone), and
    one server graph per cut sharing one weight blob."""

    device_profile: DeviceProfile
    server_profile: DeviceProfile
    link: LinkProfile
    constraints: Constraints
    low_bps: float
    high_bps: float
    kept: tuple[AdaptiveCutRecord, ...]
    device: PartSpec
    answers_alone: bool  # the device holds the whole model: it can answer without the server
    verification: Verification
    artifacts: AdaptiveArtifacts
    reply_codec: ReplyCodecRecord | None = None  # partition --reply-codec: how every answer travels (None: plain)
    strategy: str = "adaptive"
    schema_version: int = SCHEMA_VERSION

    @property
    def request_codecs(self) -> tuple[CodecRecord, ...]:
        """The codec records the kept cuts' requests travel in (a cut without one: plain .npy)."""
        return tuple(k.codec for k in self.kept if k.codec is not None)

    @property
    def codec_names(self) -> tuple[str, ...]:
        """Every codec the plan's frames travel in, requests and answers (codecs.specs.warm_up loads them)."""
        return _codec_names(self.request_codecs, self.reply_codec)


def _codec_names(requests: tuple[CodecRecord, ...], reply: ReplyCodecRecord | None) -> tuple[str, ...]:
    return tuple(r.name for r in requests) + ((reply.name,) if reply is not None else ())


@dataclass(frozen=True, kw_only=True)
class PipelinePlanFile(PlanHeader):
    """Stages over the machines of a machines file (issue 33): which machine runs which part, what crosses each
    link, the prediction beside the best two-machine plan and the source alone, each stage's files."""

    objective: str
    machines_file: str  # as given to partition
    machines: tuple[PlannedMachine, ...]
    links: tuple[PlannedLink, ...]
    stages: tuple[Stage, ...]
    hops: tuple[Hop, ...]  # hops[s]: stage s to stage s + 1
    reply: tuple[Hop, ...]  # the answer's route back to the source
    predicted: PipelineFigures
    two_machines: PipelineFigures | None = None  # the best plan over the source and one other machine
    source_alone: PipelineFigures | None = None  # None: the model does not fit the source
    files: tuple[StageFiles, ...]
    verification: Verification
    weights_update: PipelineWeightsUpdateRecord | None = None  # the last update-weights
    strategy: str = "pipeline"
    schema_version: int = SCHEMA_VERSION

    def stage_files(self, machine: str) -> StageFiles:
        found = next((f for f in self.files if f.machine == machine), None)
        if found is None:
            raise SplitnnError(f"no stage runs on '{machine}' in this plan: the stages are on "
                               f"{', '.join(f.machine for f in self.files)}")
        return found


PlanFile = VerticalPlanFile | TilePlanFile | AdaptivePlanFile | PipelinePlanFile
_Plan = TypeVar("_Plan", VerticalPlanFile, TilePlanFile, AdaptivePlanFile, PipelinePlanFile)  # one kind in, the same out
_KINDS: dict[str, type[PlanFile]] = {"vertical": VerticalPlanFile, "tiles": TilePlanFile,
                                     "adaptive": AdaptivePlanFile, "pipeline": PipelinePlanFile}

# Why a plan of another kind cannot be used where one of `strategy` is wanted.
_WRONG_KIND = {
    "vertical": "holds a tile plan, which has no device and server parts: run it with `splitnn run-bench OUTDIR`",
    "tiles": "holds a vertical split, not a tile plan: partition with --strategy tiles",
    "pipeline": "holds no pipeline plan: partition with --machines FILE",
}
_ADAPTIVE_NOT_YET = ("holds an adaptive plan (partition --adaptive): run it with `splitnn run-bench OUTDIR`, or "
                     "`splitnn serve` and `splitnn device`; update-weights does not handle adaptive plans yet: "
                     "partition the retrained model again")


_PIPELINE_ELSEWHERE = ("holds a pipeline plan (partition --machines), whose stages run one per machine: this command "
                       "does not run one yet")


def plan_strategy(outdir: str | Path) -> str:
    """"vertical" (device + server), "adaptive", "tiles" or "pipeline", read from the folder's plan.json."""
    return _strategy(_load_json(Path(outdir)), Path(outdir) / PLAN_FILE)


def read_plan(outdir: str | Path, strategy: str | None = None) -> PlanFile:
    """The plan written by `splitnn partition` into `outdir`; with `strategy`, it must be of that kind."""
    outdir = Path(outdir)
    data = _load_json(outdir)
    path = outdir / PLAN_FILE
    kind = _strategy(data, path)
    if strategy is not None and kind != strategy:
        elsewhere = {"adaptive": _ADAPTIVE_NOT_YET, "pipeline": _PIPELINE_ELSEWHERE}
        why = elsewhere.get(kind) or _WRONG_KIND.get(strategy, f"holds a {kind} plan, not an {strategy} one: partition "
                                                               "with --adaptive")
        raise SplitnnError(f"'{outdir}' {why}")
    data = {k: v for k, v in data.items() if k != "splitnn_version"}  # schema 1's name for the version
    data.setdefault("schema_version", 1)
    try:
        return _KINDS[kind].from_dict(data)
    except RecordError as exc:
        raise SplitnnError(f"'{path}' is not a valid plan: {exc}; partition again") from None


def read_vertical_plan(outdir: str | Path) -> VerticalPlanFile:
    """`read_plan` for a vertical split (a tile plan is refused with the reason)."""
    plan = read_plan(outdir, "vertical")
    assert isinstance(plan, VerticalPlanFile)
    return plan


def read_tile_plan(outdir: str | Path) -> TilePlanFile:
    """`read_plan` for a tile plan (a vertical split is refused with the reason)."""
    plan = read_plan(outdir, "tiles")
    assert isinstance(plan, TilePlanFile)
    return plan


def read_pipeline_plan(outdir: str | Path) -> PipelinePlanFile:
    """`read_plan` for a pipeline plan (partition --machines)."""
    plan = read_plan(outdir, "pipeline")
    assert isinstance(plan, PipelinePlanFile)
    return plan


def read_adaptive_plan(outdir: str | Path) -> AdaptivePlanFile:
    """`read_plan` for an adaptive plan (a plan of another kind is refused with the reason)."""
    plan = read_plan(outdir, "adaptive")
    assert isinstance(plan, AdaptivePlanFile)
    return plan


def write_plan(folder: Path, plan: _Plan) -> _Plan:
    """Write plan.json into `folder` (atomically: readers see the old file or the new one), with the SHA-256 of every
    other file of the folder as it is now; return the plan as written."""
    plan = replace(plan, artifact_sha256=folder_sha256(folder))
    write_text_atomic(folder / PLAN_FILE, json.dumps(plan.to_dict(), indent=1))
    return plan


def model_path(outdir: str | Path, plan: PlanFile) -> Path:
    """Where the plan's original model is, from the folder's point of view (it may be gone)."""
    return Path(outdir) / plan.model


def relative_model(model: str | Path, outdir: str | Path) -> str:
    """The model's path as plan.json keeps it: relative to the plan folder, forward slashes."""
    return Path(os.path.relpath(Path(model).resolve(), Path(outdir).resolve())).as_posix()


def header_fields(graph: Graph, outdir: str | Path) -> dict[str, Any]:
    """The PlanHeader fields of a plan of `graph` written to `outdir` (the graph must have been loaded from a file)."""
    assert graph.path is not None
    bounds = index_bounds(graph)
    return dict(model=relative_model(graph.path, outdir),
                graph_fingerprint=graph_fingerprint(graph.model),  # of the skeleton read at load time
                inputs={n: TensorSpec(tuple(graph.info(n).shape), graph.info(n).dtype, bounds.get(n)) for n in graph.inputs},
                outputs=tuple(graph.outputs), unpriced_ops=unpriced_ops(graph))


def save_verification_data(folder: Path, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    """Keep the verification input and the original model's outputs on it beside the parts (.npz: numpy's own
    format, one .npy per tensor; never pickled)."""
    for name, tensors in ((VERIFICATION_INPUTS_FILE, inputs), (VERIFICATION_REFERENCE_FILE, reference)):
        write_bytes_atomic(folder / name, _npz_bytes(tensors))


def _npz_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz of `tensors`, laid out as np.savez lays it out (a zip of NAME.npy entries). Written
    here because np.savez takes the names as keyword arguments: a tensor named 'file' clashed with its first
    parameter and one named 'allow_pickle' was taken for that flag and left out."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in tensors.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:  # zip64 as np.savez forces it
                np.lib.format.write_array(entry, np.asanyarray(value), allow_pickle=False)
    return buffer.getvalue()


def load_verification_data(outdir: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """The verification input and reference outputs kept in the folder; None for a schema 1 folder."""
    outdir = Path(outdir)
    paths = [outdir / VERIFICATION_INPUTS_FILE, outdir / VERIFICATION_REFERENCE_FILE]
    if not all(p.is_file() for p in paths):
        return None
    try:
        loaded = []
        for path in paths:
            with np.load(path, allow_pickle=False) as archive:
                loaded.append({name: archive[name] for name in archive.files})
    except (OSError, ValueError) as exc:
        raise SplitnnError(f"'{outdir}' has a damaged verification file ({exc}): partition again") from None
    return loaded[0], loaded[1]


def _load_json(outdir: Path) -> dict[str, Any]:
    path = outdir / PLAN_FILE
    if not path.is_file():
        raise SplitnnError(f"'{outdir}' has no {PLAN_FILE}: give the folder written by `splitnn partition MODEL -o FOLDER`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SplitnnError(f"'{path}' is not a valid plan ({exc}): partition again") from None
    if not isinstance(data, dict):
        raise SplitnnError(f"'{path}' is not a valid plan (not a JSON object): partition again")
    return data


def _strategy(data: dict[str, Any], path: Path) -> str:
    kind = data.get("strategy", "vertical")  # schema 1 vertical plans had no strategy field
    if kind not in STRATEGIES:
        raise SplitnnError(f"'{path}' is not a valid plan: field 'strategy' is {kind!r}, not one of "
                           f"{', '.join(STRATEGIES)}; partition again")
    return str(kind)
