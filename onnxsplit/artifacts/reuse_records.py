"""A tile plan's reuse (tiles/reuse.py) as plan.json holds it: each stack's record and its graphs' names.

UnitWork and ReuseTile are what one tile's reuse task needs, as plain data (the task may run on another machine);
ReuseRecord is a stack's reuse in plan.json (whether it is on, its MACs, every tile's task data); ReuseArtifacts
names the phase graphs written beside the tile graphs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from splitnn.onnxsplit.core.records import Record

Region = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open), as tiles/geometry.py has it


@dataclass(frozen=True)
class UnitWork(Record):
    """What a second-phase tile computes of one unit."""

    maps: tuple[str, ...]  # read over `reads`
    vectors: tuple[str, ...]  # whole-map vectors, read whole
    outputs: tuple[str, ...]
    compute: Region | None = None  # the rectangle it computes (None: its neighbours computed all it needs)
    reads: Region | None = None
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    computed: Region | None = None  # a Resize's or ConvTranspose's output on `reads`, cut to `compute`


@dataclass(frozen=True)
class ReuseTile(Record):
    """What one tile's reuse task needs, as plain data (it may run on another machine)."""

    id: int
    first_phase: bool
    tensors: tuple[str, ...]  # every unit's outputs, in the order a first-phase tile returns them
    regions: tuple[Region, ...]  # this tile's region of each of `tensors` (what it needs without reuse)
    outputs_at: tuple[int, ...]  # each stack output's place in `tensors`
    cells: tuple[Region, ...]  # this tile's cell of each stack output
    layouts: dict[str, str]  # of every tensor named here, in memory
    units: tuple[UnitWork, ...] = ()  # second phase: per unit
    input_regions: dict[str, Region] = field(default_factory=dict)  # second phase: its crop of each stack input
    neighbours: dict[str, tuple[Region, ...]] = field(default_factory=dict)  # second phase: id -> their `regions`


@dataclass(frozen=True)
class ReuseRecord(Record):
    """A stack's reuse: off, or its MACs with reuse, what it saves and every tile's task data."""

    enabled: bool = False
    macs: int | None = None  # of the tiles with reuse
    saved_macs: int | None = None  # against the tiles without
    saved_fraction_of_redundant: float | None = None  # of the MACs the tiles compute twice
    tiles: dict[str, ReuseTile] = field(default_factory=dict)  # by tile id


@dataclass(frozen=True)
class ReuseArtifacts(Record):
    """The phase graphs of a stack with reuse, by tile id: first-phase tiles whole, second-phase tiles by unit."""

    first_phase: dict[str, str]
    second_phase_layers: dict[str, dict[str, str]]
