"""Choose a vertical split: predict every cut on a device, a link and a server, then pick one.

Per cut (the model is stated once, here):
  device_s   = roofline time of the device part on the device profile
  encode_s   = bytes at the cut / device memory bandwidth (one copy into the send buffer)
  transfer_s = bytes * 8 / uplink bandwidth + reply bytes * 8 / downlink bandwidth
               + round trip (0 when nothing is sent; the reply is the model outputs
               computed on the server; bytes as on the wire: the tensors and the
               frame around them, cost_models/wire_bytes.py)
  server_s   = roofline time of the server part on the server profile
  total_s    = device_s + encode_s + transfer_s + server_s          (objective `latency`)
  throughput = 1 / max(device_s + encode_s, bytes * 8 / uplink, server_s,
                       reply bytes * 8 / downlink)                    (objective `throughput`:
               frames pipelined through the four stages, as `run-bench --stream`
               runs them; the round trip is latency, not a period: pipelined_fps)
  energy_j   = device compute power * (device_s + encode_s)
               + radio power(bandwidth) * bytes * 8 / bandwidth       (objective `energy`)
Constraints rule cuts out: device memory (device weights + device peak
activations <= usable RAM), the share of MACs on the device, the bytes sent.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from splitnn.cost_models.latency import seconds
from splitnn.cost_models.prediction import Prediction, pipelined_fps
from splitnn.cost_models.profiles import DeviceProfile, LinkProfile
from splitnn.cost_models.registry import UnpricedOps, unpriced_ops
from splitnn.cost_models.wire_bytes import frame_overhead_bytes, tensor_overhead_bytes
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import Cut, cut_of_device_set, placeable_indices
from splitnn.onnxsplit.analysis.min_cut import closed_sets_are_prefixes, min_cut_device_side
from splitnn.onnxsplit.artifacts.plan_file import (
    CandidateRecord,
    Constraints,
    CutRecord,
    RangeCutRecord,
    TraceChoiceRecord,
)
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph

OBJECTIVES = ("latency", "throughput", "energy")


@dataclass(frozen=True)
class Candidate:
    cut: Cut
    predicted: Prediction
    device_memory_bytes: int
    violations: tuple[str, ...] = ()

    @property
    def feasible(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class Plan:
    objective: str
    chosen: Candidate
    candidates: list[Candidate]
    device: DeviceProfile
    server: DeviceProfile
    link: LinkProfile
    constraints: Constraints
    forced: bool = False  # the cut was given by the user
    over_trace: TraceChoiceRecord | None = None  # the cut is the best over a bandwidth trace (link_range)
    over_range: tuple[RangeCutRecord, ...] | None = None  # the cuts best somewhere in a range of rates
    unpriced: UnpricedOps | None = None  # nodes of an unknown operator, priced at 0 s in every prediction here


def cut_record(candidate: Candidate) -> CutRecord:
    """The cut of `candidate` as plan.json records it."""
    cut = candidate.cut
    return CutRecord(id=cut.id, tensors=tuple(cut.tensors), bytes=cut.bytes, reply_bytes=cut.reply_bytes,
                     after_node=cut.last_device_node, device_macs=cut.device_macs,
                     device_param_bytes=cut.device_param_bytes, device_peak_bytes=cut.device_peak_bytes,
                     device_memory_bytes=candidate.device_memory_bytes,
                     device_node_names=cut.device_names)


def candidate_record(candidate: Candidate) -> CandidateRecord:
    return CandidateRecord(**vars(cut_record(candidate)), predicted=candidate.predicted, feasible=candidate.feasible,
                           violations=tuple(candidate.violations))


NodeSeconds = dict[int, float]  # placed node index -> predicted seconds on one profile


def node_seconds_on(analysis: Analysis, profile: DeviceProfile) -> NodeSeconds:
    """Every placed node's predicted seconds on `profile`."""
    graph, costs = analysis.graph, analysis.nodes
    return {i: seconds(graph, costs, [i], profile) for i in placeable_indices(graph)}


def predict(analysis: Analysis, device: DeviceProfile, server: DeviceProfile, link: LinkProfile,
            cuts: list[Cut] | None = None, per_node: tuple[NodeSeconds, NodeSeconds] | None = None) -> list[Prediction]:
    """A Prediction for every cut of `cuts` (default: the analysis's prefix cuts), in order. `per_node`: the
    device's and the server's `node_seconds_on`, when the caller has them already."""
    placeable = placeable_indices(analysis.graph)
    device_node, server_node = per_node or (node_seconds_on(analysis, device), node_seconds_on(analysis, server))
    device_prefix = [0.0]
    server_prefix = [0.0]
    for index in placeable:  # prefix sums: one pass over the nodes per profile
        device_prefix.append(device_prefix[-1] + device_node[index])
        server_prefix.append(server_prefix[-1] + server_node[index])
    server_total = server_prefix[-1]
    frames = _FrameBytes(analysis.graph, placeable)
    predictions = []
    for cut in analysis.cuts if cuts is None else cuts:
        if cut.device_indices is None:
            device_s = device_prefix[cut.device_nodes]
            server_s = server_total - server_prefix[cut.device_nodes]
        else:
            device_s = sum(device_node[i] for i in cut.device_indices)
            server_s = server_total - sum(server_node[i] for i in cut.device_indices)
        encode_s = cut.bytes / device.memory_bytes_per_s
        up, down = (frames.request(cut), frames.reply(cut)) if cut.tensors else (0, 0)
        predictions.append(prediction_of(device_s, encode_s, server_s, up, down, device, link))
    return predictions


def prediction_of(device_s: float, encode_s: float, server_s: float, up_bytes: int, down_bytes: int,
                  device: DeviceProfile, link: LinkProfile, reply_encode_s: float = 0.0,
                  decode_s: tuple[float, float] = (0.0, 0.0)) -> Prediction:
    """A cut's prediction from its stage times and the bytes each way on the wire (0 and 0: nothing is sent).
    Codecs: `reply_encode_s`, the server encoding its answer, is counted in the transfer, where run-bench measures
    it (the server's clock stops before it encodes); `decode_s`, the server decoding the request and the device
    decoding the answer, is its own stage."""
    sends = up_bytes > 0
    transfer_s = link.transfer_seconds(up_bytes, down_bytes) + reply_encode_s if sends else 0.0
    uplink_s, downlink_s = up_bytes * 8 / link.uplink_bps, down_bytes * 8 / link.down_bps
    return Prediction(
        device_s=device_s,
        encode_s=encode_s,
        transfer_s=transfer_s,
        server_s=server_s,
        total_s=device_s + encode_s + transfer_s + server_s + sum(decode_s),
        throughput_fps=pipelined_fps(device_s + encode_s + decode_s[1], uplink_s,
                                     server_s + decode_s[0] + reply_encode_s, downlink_s),
        energy_j=None if device.compute_power_w is None
        else device.compute_power_w * (device_s + encode_s) + link.radio_watts() * uplink_s,
        decode_s=sum(decode_s),
        up_bytes=up_bytes,
        down_bytes=down_bytes,
    )


def with_request_bytes(analysis: Analysis, plan: Plan, up_bytes: int | None = None, encode_s: float = 0.0,
                       decode_s: float = 0.0, candidate: Candidate | None = None, down_bytes: int | None = None,
                       reply_s: tuple[float, float] = (0.0, 0.0)) -> Prediction:
    """A candidate's prediction (by default the chosen one's) when its request takes `up_bytes` on the wire (a
    codec's, measured; None: plain), and the codec takes `encode_s` on the device and `decode_s` on the server on
    top of the plain serialisation; its reply takes `down_bytes` (a reply codec's; None: plain), whose codec takes
    `reply_s` (the server's encode, the device's decode)."""
    chosen = candidate or plan.chosen
    p = chosen.predicted
    frames = _FrameBytes(analysis.graph, placeable_indices(analysis.graph))
    up = frames.request(chosen.cut) if up_bytes is None else up_bytes
    down = frames.reply(chosen.cut) if down_bytes is None else down_bytes
    return prediction_of(p.device_s, p.encode_s + encode_s, p.server_s, up, down, plan.device, plan.link,
                         reply_s[0], (decode_s, reply_s[1]))


def plain_request_bytes(analysis: Analysis, candidate: Candidate) -> int:
    """The bytes of a candidate's request on the wire as plain .npy tensors, with the frame around them."""
    return _FrameBytes(analysis.graph, placeable_indices(analysis.graph)).request(candidate.cut)


def plain_reply_bytes(analysis: Analysis, candidate: Candidate) -> int:
    """The bytes of a candidate's answer on the wire as plain .npy tensors, with the frame around them."""
    return _FrameBytes(analysis.graph, placeable_indices(analysis.graph)).reply(candidate.cut)


class _FrameBytes:
    """The bytes a cut's request and reply take on the wire: the tensors, and the frame around them (its header,
    each tensor's name and .npy header: cost_models/wire_bytes.py)."""

    def __init__(self, graph: Graph, placeable: list[int]) -> None:
        self.graph = graph
        position = {index: pos for pos, index in enumerate(placeable)}
        # Model outputs computed by a placed node: (name, its position, its node index).
        self.outputs = [(name, position[graph.producer[name]], graph.producer[name]) for name in graph.outputs
                        if graph.producer.get(name) in position]
        self._around: dict[str, int] = {}

    def around(self, name: str) -> int:
        """What tensor `name` adds to a frame beyond its data."""
        if name not in self._around:
            info = self.graph.info(name)
            self._around[name] = tensor_overhead_bytes(name, info.shape, info.dtype)
        return self._around[name]

    def request(self, cut: Cut) -> int:
        return cut.bytes + frame_overhead_bytes([]) + sum(self.around(name) for name in cut.tensors)

    def reply(self, cut: Cut) -> int:
        """The model outputs the server computes come back; the device keeps its own."""
        device = set(cut.device_indices) if cut.device_indices is not None else None
        back = [name for name, pos, index in self.outputs
                if (index not in device if device is not None else pos >= cut.device_nodes)]
        return cut.reply_bytes + frame_overhead_bytes([]) + sum(self.around(name) for name in back)


# The uplinks of the parametric sweep: where the latency-optimal partition changes, it is listed.
SWEEP_UPLINKS_BPS = tuple(float(x) for x in np.geomspace(0.05e6, 1000e6, 24))


def dag_cuts(analysis: Analysis, device: DeviceProfile, server: DeviceProfile, link: LinkProfile,
             per_node: tuple[NodeSeconds, NodeSeconds] | None = None) -> list[Cut]:
    """The min-cut partitions (DADS) at the plan's link and across a sweep of uplinks (the downlink in the same
    ratio) that are not prefixes of the graph's order: the latency-optimal device sides those links lead to.
    `per_node` as in `predict`."""
    graph, costs = analysis.graph, analysis.nodes
    if closed_sets_are_prefixes(graph, placeable_indices(graph)):
        return []
    position = {index: p for p, index in enumerate(placeable_indices(graph))}
    frames = _FrameBytes(graph, placeable_indices(graph))
    device_node, server_node = per_node or (node_seconds_on(analysis, device), node_seconds_on(analysis, server))
    found: list[Cut] = []
    seen: set[frozenset[int]] = set()
    for uplink_bps in (link.uplink_bps, *SWEEP_UPLINKS_BPS):
        downlink_bps = uplink_bps * link.down_bps / link.uplink_bps

        def tensor_s(n: str, up: float = uplink_bps) -> float:
            return graph.info(n).nbytes * (8 / up + 1 / device.memory_bytes_per_s) + frames.around(n) * 8 / up

        def reply_s(n: str, down: float = downlink_bps) -> float:
            return (graph.info(n).nbytes + frames.around(n)) * 8 / down

        side = min_cut_device_side(graph, device_node, server_node, tensor_s=tensor_s, reply_s=reply_s)
        is_prefix = max((position[i] for i in side), default=-1) == len(side) - 1
        if is_prefix or side in seen:
            continue
        seen.add(side)
        found.append(cut_of_device_set(graph, costs, side, len(analysis.cuts) + len(found)))
    return found


def objective_score(prediction: Prediction, objective: str) -> float:
    if objective == "latency":
        return prediction.total_s
    if objective == "throughput":
        return -prediction.throughput_fps
    assert prediction.energy_j is not None  # plan_split refuses the energy objective without a measured power
    return prediction.energy_j


def _check_objective(objective: str, device: DeviceProfile) -> None:
    if objective not in OBJECTIVES:
        raise SplitnnError(f"unknown objective '{objective}': use one of {', '.join(OBJECTIVES)}")
    if objective == "energy" and device.compute_power_w is None:
        raise SplitnnError(f"the device profile '{device.name}' has no measured power, so energy cannot be predicted: "
                           "give a profile with [power] compute_w (splitnn profile --compute-watts W), or use "
                           "--objective latency or throughput")


def plan_split(
    analysis: Analysis,
    device: DeviceProfile,
    server: DeviceProfile,
    link: LinkProfile,
    objective: str = "latency",
    constraints: Constraints | None = None,
    forced_tensors: tuple[str, ...] | None = None,
) -> Plan:
    """Predict every cut, apply the constraints and pick the best by `objective`.

    With `forced_tensors`, the cut whose crossing tensors are exactly those is
    taken (it must still satisfy the constraints). Raises SplitnnError when no
    cut is feasible, naming what ruled each one out.
    """
    _check_objective(objective, device)
    constraints = constraints or Constraints(device_memory_bytes=device.usable_ram_bytes)
    total_macs = analysis.totals.macs
    candidates = []
    per_node = (node_seconds_on(analysis, device), node_seconds_on(analysis, server))  # once for both
    cuts = [*analysis.cuts, *dag_cuts(analysis, device, server, link, per_node)]
    for cut, prediction in zip(cuts, predict(analysis, device, server, link, cuts, per_node)):
        memory = cut.device_param_bytes + cut.device_peak_bytes
        violations = []
        if memory > constraints.device_memory_bytes:
            violations.append(f"device memory {memory:,} B > {constraints.device_memory_bytes:,} B usable")
        if constraints.max_device_share is not None and total_macs and cut.device_macs / total_macs > constraints.max_device_share + 1e-12:
            violations.append(f"device share {cut.device_macs / total_macs:.1%} > {constraints.max_device_share:.1%}")
        if constraints.max_transfer_bytes is not None and cut.bytes > constraints.max_transfer_bytes:
            violations.append(f"transfer {cut.bytes:,} B > {constraints.max_transfer_bytes:,} B")
        candidates.append(Candidate(cut, prediction, memory, tuple(violations)))

    if forced_tensors is not None:
        wanted = set(forced_tensors)
        matches = [c for c in candidates if set(c.cut.tensors) == wanted]
        if not matches:
            raise SplitnnError(_no_such_cut(wanted, candidates))
        chosen = min(matches, key=lambda c: c.cut.id)
        if not chosen.feasible:
            raise SplitnnError(f"the cut at {', '.join(chosen.cut.tensors)} breaks a constraint: {'; '.join(chosen.violations)}")
        return Plan(objective, chosen, candidates, device, server, link, constraints, forced=True,
                    unpriced=unpriced_ops(analysis.graph))

    feasible = [c for c in candidates if c.feasible]
    if not feasible:
        reasons: dict[str, list[int]] = {}
        for c in candidates:
            for violation in c.violations:
                kind = violation.split(" ")[0] + " " + violation.split(" ")[1]
                reasons.setdefault(kind, []).append(c.cut.id)
        summary = "; ".join(f"{kind} rules out {len(ids)} cuts ({_ranges(ids)})" for kind, ids in reasons.items())
        raise SplitnnError(f"no cut is feasible: {summary}; relax a constraint or pick a device with more memory")
    return Plan(objective, best_candidate(feasible, objective), candidates, device, server, link, constraints,
                unpriced=unpriced_ops(analysis.graph))


def _no_such_cut(wanted: set[str], candidates: list[Candidate]) -> str:
    """Why --cut names no cut: the cuts that send these tensors with others (the shallowest first, each with the
    --cut that takes it), or, where none does, some cuts of one tensor."""
    named = ", ".join(sorted(wanted)) or "(nothing)"
    holding = sorted((c.cut for c in candidates if wanted and wanted < set(c.cut.tensors)),
                     key=lambda cut: (len(cut.tensors), cut.id))
    if holding:
        shown = "; ".join(f"cut {cut.id} sends {', '.join(cut.tensors)} (--cut {','.join(cut.tensors)})"
                          for cut in holding[:3])
        more = f"; and {len(holding) - 3} more" if len(holding) > 3 else ""
        return (f"no cut sends exactly {named}: {'it crosses' if len(wanted) == 1 else 'they cross'} only with other "
                f"tensors: {shown}{more}")
    singles = [c.cut.tensors[0] for c in candidates if len(c.cut.tensors) == 1][:8]
    return (f"no cut sends exactly {named}: give the full set of tensors crossing a cut (see `splitnn analyze`), "
            f"e.g. {', '.join(singles)}")


def best_candidate(candidates: Iterable[Candidate], objective: str) -> Candidate:
    """The candidate that scores best on `objective` (the shallower cut on a tie)."""
    return min(candidates, key=lambda c: (objective_score(c.predicted, objective), c.cut.id))


def _ranges(ids: list[int]) -> str:
    spans: list[str] = []
    start = prev = ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return "cuts " + ", ".join(spans)
