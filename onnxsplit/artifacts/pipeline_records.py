"""A pipeline plan (issue 33) as plan.json holds it: its machines and links, each stage and hop, each stage's files.

`Stage` and `Hop` are what the planner (onnxsplit/pipeline/planning.py) chooses and predicts; `StageFiles` is what
partition wrote for a stage and what its process receives, runs and sends on.
"""
from __future__ import annotations

from dataclasses import dataclass

from splitnn.cost_models.profiles import DeviceProfile, LinkProfile
from splitnn.onnxsplit.core.records import Record


@dataclass(frozen=True)
class Stage(Record):
    """A stage: the placed nodes at positions [start, end) of the graph's order on one machine."""

    machine: str
    start: int
    end: int
    first_node: str | None  # None: an empty stage, which forwards what it receives (a relay)
    last_node: str | None
    macs: int
    compute_s: float  # predicted on the machine's profile
    memory_bytes: int  # weights + activations
    usable_bytes: int  # the machine's (80% of its memory)

    @property
    def empty(self) -> bool:
        return self.end == self.start


@dataclass(frozen=True)
class Hop(Record):
    """One frame from one machine to the next."""

    sender: str
    receiver: str
    cut: int  # the position the frame is cut at (the model's node count: the answer)
    tensors: tuple[str, ...]
    bytes: int  # on the wire, with the frame around the tensors
    seconds: float  # one way: serialisation, half the round trip, the sender's copy into its buffer
    serialise_s: float  # bytes * 8 / the direction's rate: what it adds to a stream's period


@dataclass(frozen=True)
class PipelineFigures(Record):
    """A plan's prediction: one request's latency and a stream's period, over `machines` in order."""

    machines: tuple[str, ...]
    latency_s: float
    period_s: float

    @property
    def throughput_fps(self) -> float:
        return 1.0 / self.period_s if self.period_s > 0 else float("inf")


@dataclass(frozen=True)
class PlannedMachine(Record):
    name: str
    profile: DeviceProfile  # the machines file's memory in place of the profile's RAM
    count: int = 1
    source: bool = False


@dataclass(frozen=True)
class PlannedLink(Record):
    a: str
    b: str
    link: LinkProfile  # a -> b at its uplink, b -> a at its downlink


@dataclass(frozen=True)
class StageFiles(Record):
    """What a stage's process does: receive the frame `receives`, run `model` (None: a relay) on `inputs` of it,
    send `sends` (received or computed) on."""

    machine: str
    folder: str | None  # relative to the plan folder; None: a relay
    receives: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    sends: tuple[str, ...]
    model: str | None = None
    weights: str | None = None
    ort: str | None = None  # the ORT-format part of a board-class machine


@dataclass(frozen=True)
class StageUpdateRecord(Record):
    """What update-weights changed in one stage's part, and what must travel to its machine."""

    machine: str
    changed: tuple[str, ...]  # the weights whose values changed
    changed_bytes: int
    blob_bytes: int  # the stage's weights.bin after the update
    ort_rebuilt: bool | None = None  # None: the stage has no .ort, or none of its weights changed
    download_bytes: int = 0  # the changed tensors, and the stage's .ort where it was rebuilt


@dataclass(frozen=True)
class PipelineWeightsUpdateRecord(Record):
    """An update-weights of a pipeline plan: each stage's share, and the stages chained against the retrained
    model on the kept verification input."""

    retrained: str
    stages: tuple[StageUpdateRecord, ...]  # the stages with a part, in order
    max_abs_err: float
