"""Choose a vertical split: predict every cut on a device, a link and a server, then pick one.

Per cut (the model is stated once, here):
  device_s   = roofline time of the device part on the device profile
  encode_s   = bytes at the cut / device memory bandwidth (one copy into the send buffer)
  transfer_s = bytes * 8 / uplink bandwidth + reply bytes * 8 / downlink bandwidth
               + round trip (0 when nothing is sent; the reply is the model outputs
               computed on the server)
  server_s   = roofline time of the server part on the server profile
  total_s    = device_s + encode_s + transfer_s + server_s          (objective `latency`)
  throughput = 1 / max(device_s + encode_s, transfer_s, server_s)   (objective `throughput`,
               frames pipelined through the three stages)
  energy_j   = device compute power * (device_s + encode_s)
               + radio power(bandwidth) * bytes * 8 / bandwidth       (objective `energy`)
Constraints rule cuts out: device memory (device weights + device peak
activations <= usable RAM), the share of MACs on the device, the bytes sent.
"""
from __future__ import annotations

from dataclasses import dataclass

from splitnn.cost_models.latency import seconds
from splitnn.cost_models.prediction import Prediction
from splitnn.cost_models.profiles import DeviceProfile, LinkProfile
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.analysis.cuts import Cut, placeable_indices
from splitnn.onnxsplit.artifacts.plan_file import CandidateRecord, Constraints, CutRecord
from splitnn.onnxsplit.core.errors import SplitnnError

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


def cut_record(candidate: Candidate) -> CutRecord:
    """The cut of `candidate` as plan.json records it."""
    cut = candidate.cut
    return CutRecord(id=cut.id, tensors=tuple(cut.tensors), bytes=cut.bytes, reply_bytes=cut.reply_bytes,
                     after_node=cut.last_device_node, device_macs=cut.device_macs,
                     device_param_bytes=cut.device_param_bytes, device_peak_bytes=cut.device_peak_bytes,
                     device_memory_bytes=candidate.device_memory_bytes)


def candidate_record(candidate: Candidate) -> CandidateRecord:
    return CandidateRecord(**vars(cut_record(candidate)), predicted=candidate.predicted, feasible=candidate.feasible,
                           violations=tuple(candidate.violations))


def predict(analysis: Analysis, device: DeviceProfile, server: DeviceProfile, link: LinkProfile) -> list[Prediction]:
    """A Prediction for every cut, in cut order (prefix sums: one pass over the nodes per profile)."""
    graph, costs = analysis.graph, analysis.nodes
    placeable = placeable_indices(graph)
    device_prefix = [0.0]
    server_prefix = [0.0]
    for index in placeable:
        device_prefix.append(device_prefix[-1] + seconds(graph, costs, [index], device))
        server_prefix.append(server_prefix[-1] + seconds(graph, costs, [index], server))
    server_total = server_prefix[-1]
    predictions = []
    for cut in analysis.cuts:
        device_s = device_prefix[cut.id]
        server_s = server_total - server_prefix[cut.id]
        encode_s = cut.bytes / device.memory_bytes_per_s
        send_s = cut.bytes * 8 / link.uplink_bps
        transfer_s = link.transfer_seconds(cut.bytes, cut.reply_bytes) if cut.tensors else 0.0
        slowest = max(device_s + encode_s, transfer_s, server_s)
        predictions.append(
            Prediction(
                device_s=device_s,
                encode_s=encode_s,
                transfer_s=transfer_s,
                server_s=server_s,
                total_s=device_s + encode_s + transfer_s + server_s,
                throughput_fps=1.0 / slowest if slowest > 0 else float("inf"),
                energy_j=device.compute_power_w * (device_s + encode_s) + link.radio_watts() * send_s,
            )
        )
    return predictions


def _score(prediction: Prediction, objective: str) -> float:
    if objective == "latency":
        return prediction.total_s
    if objective == "throughput":
        return -prediction.throughput_fps
    return prediction.energy_j


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
    if objective not in OBJECTIVES:
        raise SplitnnError(f"unknown objective '{objective}': use one of {', '.join(OBJECTIVES)}")
    constraints = constraints or Constraints(device_memory_bytes=device.usable_ram_bytes)
    total_macs = analysis.totals.macs
    candidates = []
    for cut, prediction in zip(analysis.cuts, predict(analysis, device, server, link)):
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
            singles = [c.cut.tensors[0] for c in candidates if len(c.cut.tensors) == 1][:8]
            raise SplitnnError(
                f"no cut sends exactly {', '.join(sorted(wanted)) or '(nothing)'}: give the full set of tensors crossing a "
                f"cut (see `splitnn analyze`), e.g. {', '.join(singles)}"
            )
        chosen = min(matches, key=lambda c: c.cut.id)
        if not chosen.feasible:
            raise SplitnnError(f"the cut at {', '.join(chosen.cut.tensors)} breaks a constraint: {'; '.join(chosen.violations)}")
        return Plan(objective, chosen, candidates, device, server, link, constraints, forced=True)

    feasible = [c for c in candidates if c.feasible]
    if not feasible:
        reasons: dict[str, list[int]] = {}
        for c in candidates:
            for violation in c.violations:
                kind = violation.split(" ")[0] + " " + violation.split(" ")[1]
                reasons.setdefault(kind, []).append(c.cut.id)
        summary = "; ".join(f"{kind} rules out {len(ids)} cuts ({_ranges(ids)})" for kind, ids in reasons.items())
        raise SplitnnError(f"no cut is feasible: {summary}; relax a constraint or pick a device with more memory")
    chosen = min(feasible, key=lambda c: (_score(c.predicted, objective), c.cut.id))
    return Plan(objective, chosen, candidates, device, server, link, constraints)


def _ranges(ids: list[int]) -> str:
    spans: list[str] = []
    start = prev = ids[0]
    for i in ids[1:] + [None]:  # type: ignore[list-item]
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return "cuts " + ", ".join(spans)
