"""What `run-bench` reports for a tile plan: typed records, `to_dict()` for --json (the keys as documented).

`mode` is "tiles" (one image at a time, its tiles spread over the workers) or
"data-parallel" (whole images spread over the workers); the fields that only
one mode has are None in the other and left out of the JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from splitnn.onnxsplit.artifacts.plan_file import GridRecord, NeuronSplitRecord, TilePrediction
from splitnn.onnxsplit.core.records import Record


@dataclass(frozen=True)
class ScalingRow(Record):
    workers: int
    wall_s: float  # median per image (tiles) or for all the images (data-parallel)
    speedup: float  # over the first row (one worker)
    tiles_phase_s: float | None = None
    tiles_speedup: float | None = None
    # CPU seconds this process spent per image (median): the client, which also hosts the embedded scheduler
    client_cpu_s: float | None = None
    # Each stack's phase (median) and its speedup over one worker; what follows the tiles on the client (the
    # remainder, split layers included) and its speedup
    stack_phases_s: tuple[float, ...] | None = None
    stack_speedups: tuple[float, ...] | None = None
    remainder_s: float | None = None
    remainder_speedup: float | None = None
    # Of the remainder: each layer split by neurons across the nodes (its slices sent, run and back), and speedups
    split_layers_s: tuple[float, ...] | None = None
    split_layer_speedups: tuple[float, ...] | None = None
    images: int | None = None
    images_per_s: float | None = None


@dataclass(frozen=True)
class TableRow(Record):
    """The seed's table: seconds for an image count on a worker count."""

    workers: int
    images: int
    wall_s: float


@dataclass(frozen=True)
class TaskRun(Record):
    """Where one tile (or whole image) of the last run ran and for how long."""

    id: int
    worker: str
    seconds: float
    done_s: float | None = None  # since the image's tiles were submitted
    stack: int | None = None  # which stack of a tile plan (0: the first)


@dataclass(frozen=True)
class WorkerUss(Record):
    worker: str
    uss_before_bytes: int | None  # None: the worker replaced a lost one
    uss_after_bytes: int
    growth_bytes: int | None


@dataclass(frozen=True)
class WorkerMemory(Record):
    planned_node_bytes: int
    limit_bytes: int
    workers: tuple[WorkerUss, ...]
    max_growth_bytes: int | None


@dataclass(frozen=True)
class TileBenchReport(Record):
    plan: str
    mode: str
    scheduler: str
    workers: int
    images: int
    makespan_s: float
    wall_s: float
    speedup: float
    scaling: tuple[ScalingRow, ...]
    tiles: tuple[TaskRun, ...]
    retries: int  # tasks the scheduler ran again after a lost worker
    workers_killed: int
    outputs_match: bool | None
    max_abs_err: float | None
    grid: GridRecord | None = None
    stack_labels: tuple[str, ...] | None = None  # each stack: its grid and last tensor, e.g. "3x3 to maxpool3_out"
    tiles_speedup: float | None = None
    redundant_macs_ratio: float | None = None
    reuse: dict[str, Any] | None = None
    neuron_splits: tuple[NeuronSplitRecord, ...] | None = None
    predicted: TilePrediction | None = None
    memory: WorkerMemory | None = None
    table: tuple[TableRow, ...] | None = None
    emulated_nodes: str | None = None  # the node profile every node was held to (--emulate-nodes), else None
    host_slower_tiles: int = 0  # emulated: tiles this host ran slower than predicted (at its own speed)
    plan_nodes: int | None = None  # the node count `predicted` is for
