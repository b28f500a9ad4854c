"""The stages of a pipeline over the machines of a machines file, chosen exactly (issue 33, item 2).

A plan is a path of linked machines from the source, m0 = source, m1, ..., mk,
each running one stage: stage s runs the positions [c_s, c_s+1) of the graph's
order, c_0 = 0 <= c_1 <= ... <= c_k+1 = P (an empty stage forwards what it gets:
a relay). Stage s sends the frame of cut c_s+1 to m_s+1; the last machine sends
the model's outputs back to the source by the fastest route of links. A
machine appears at most once; a machine may get nothing. Every stage's memory
(its weights and activations, costs.py) within its machine's usable memory.

  latency = sum of stage times + sum of hops (bytes * 8 / rate + rtt / 2 + the
            sender's copy into its buffer, bytes / its memory bandwidth) + the answer's route
  period  = the slowest stage, or the slowest hop's serialisation (bytes * 8 / rate); a stream
            through the stages runs at 1 / period frames per second (each stage and each link
            direction works on its own frame: cost_models.prediction.pipelined_fps, for N stages);
            of the plans with the least period, the one with the least latency

Exact: dynamic programming over (cut, machine, machines used), as PipeEdge's
over a chain's layers; each step is a matrix over (cut before, cut after),
minimised over the cut before with numpy. `brute_force_plan` enumerates every
path and every tuple of cuts and is the check (tests, small cases).
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from splitnn.cost_models.machines import Machine, MachineLink, Machines
from splitnn.cost_models.registry import UnpricedOps, unpriced_ops
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.artifacts.pipeline_records import Hop, PipelineFigures, Stage
from splitnn.onnxsplit.artifacts.plan_file import PipelinePlanFile
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.pipeline.costs import RangeCosts, compute_prefix, range_costs

OBJECTIVES = ("latency", "throughput")


@dataclass(frozen=True)
class PipelinePlan:
    objective: str
    stages: tuple[Stage, ...]
    hops: tuple[Hop, ...]  # hops[s]: stage s to stage s + 1
    reply: tuple[Hop, ...]  # the answer's route from the last stage's machine to the source
    latency_s: float
    period_s: float

    @property
    def throughput_fps(self) -> float:
        return 1.0 / self.period_s if self.period_s > 0 else float("inf")

    @property
    def machines(self) -> tuple[str, ...]:
        return tuple(stage.machine for stage in self.stages)

    def cost(self) -> float:
        return self.latency_s if self.objective == "latency" else self.period_s

    def figures(self) -> PipelineFigures:
        return PipelineFigures(self.machines, self.latency_s, self.period_s)


@dataclass(frozen=True)
class PipelineChoice:
    best: PipelinePlan
    two_machines: PipelinePlan | None  # the best with the source and at most one other machine
    source_alone: PipelinePlan | None  # None: the model does not fit the source's memory
    unpriced: UnpricedOps | None = None  # nodes of an operator with no cost formula, priced at 0 s here


class _Tables:
    """Everything a plan's cost reads, for one model over one machines file."""

    def __init__(self, analysis: Analysis, machines: Machines, cuts: Sequence[int] | None) -> None:
        for machine in machines.machines:
            if machine.count > 1:
                raise SplitnnError(f"machine '{machine.name}' is a group of {machine.count} boards: a group's stage in "
                                   "tiles is not planned yet; list the boards as separate [[machine]] entries")
        constant = [name for name in analysis.graph.outputs if analysis.graph.is_constant(name)]
        if constant:
            raise SplitnnError(f"the model's output '{constant[0]}' is a constant (no node computes it): a pipeline "
                               "plan does not carry one yet")
        self.machines = machines
        self.ranges: RangeCosts = range_costs(analysis)
        count = self.ranges.positions
        allowed = np.zeros(count + 1, dtype=bool)
        allowed[[0, count]] = True
        if cuts is None:
            allowed[:] = True
        else:
            allowed[[c for c in cuts if 0 <= c <= count]] = True
        self.allowed = allowed
        self.prefix = {m.name: compute_prefix(analysis, m) for m in machines.machines}
        self.memory = self.ranges.memory()
        below = np.triu(np.ones((count + 1, count + 1), dtype=bool))  # c <= c2
        self._stage: dict[str, np.ndarray] = {}
        for m in machines.machines:
            seconds = self.prefix[m.name][None, :] - self.prefix[m.name][:, None]
            fits = (self.memory <= m.usable_bytes) | np.eye(count + 1, dtype=bool)
            usable = below & fits & allowed[:, None] & allowed[None, :]
            self._stage[m.name] = np.where(usable, seconds, np.inf)

    def stage_matrix(self, machine: str) -> np.ndarray:
        """[c, c2]: the seconds of stage [c, c2) on `machine`, inf where it may not run there."""
        return self._stage[machine]

    def hop(self, sender: Machine, receiver: str, cut: int | np.ndarray, nbytes: float | np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """(one-way seconds, serialisation seconds) of the frame at `cut` (or `nbytes`) from `sender` to `receiver`."""
        sent = self.ranges.sent_bytes[cut] if nbytes is None else np.asarray(nbytes, dtype=float)
        rate = self.machines.bps(sender.name, receiver)
        assert rate is not None
        serialise = sent * 8 / rate
        return (serialise + self.machines.rtt_s(sender.name, receiver) / 2
                + sent / sender.profile.memory_bytes_per_s), serialise

    def neighbours(self, name: str) -> list[str]:
        return [m.name for m in self.machines.machines if m.name != name and self.machines.bps(name, m.name)]

    def reply_route(self, last: str) -> tuple[list[str], float, float]:
        """The answer's fastest route from `last` to the source (Dijkstra on one-way seconds): the machines in
        order, its seconds and its slowest serialisation."""
        source = self.machines.source.name
        nbytes = float(self.ranges.output_bytes)
        best: dict[str, float] = {last: 0.0}
        came: dict[str, str] = {}
        queue = [(0.0, last)]
        while queue:
            spent, here = heapq.heappop(queue)
            if here == source:
                break
            if spent > best.get(here, np.inf):
                continue
            for there in self.neighbours(here):
                seconds, _ = self.hop(self.machines.machine(here), there, 0, nbytes)
                if spent + float(seconds) < best.get(there, np.inf):
                    best[there], came[there] = spent + float(seconds), here
                    heapq.heappush(queue, (best[there], there))
        if source not in best:
            raise SplitnnError(f"no route of links from '{last}' back to the source '{source}': add a [[link]]")
        route = [source]
        while route[-1] != last:
            route.append(came[route[-1]])
        route.reverse()
        period = max((float(self.hop(self.machines.machine(a), b, 0, nbytes)[1]) for a, b in zip(route, route[1:])),
                     default=0.0)
        return route, best[source], period


def _combine(objective: str, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    return np.add(a, b) if objective == "latency" else np.maximum(a, b)


def plan_pipeline(analysis: Analysis, machines: Machines, objective: str = "latency",
                  cuts: Sequence[int] | None = None, max_machines: int | None = None,
                  tables: _Tables | None = None) -> PipelinePlan:
    """The best plan for `objective` over `machines` (at most `max_machines` on the path; stage boundaries only at
    the positions `cuts`, default every one). Raises SplitnnError when no plan fits the machines' memory."""
    if objective not in OBJECTIVES:
        raise SplitnnError(f"unknown objective '{objective}': use one of {', '.join(OBJECTIVES)}")
    t = tables or _Tables(analysis, machines, cuts)
    limit = max_machines or len(machines.machines)
    best = _best_final(t, objective, *_search(t, objective, limit))
    if objective == "latency":
        return best
    # Of the plans with the least period, the one that answers a single request soonest: the latency search, with
    # every stage, hop and answer route slower than that period ruled out.
    cap = best.period_s * (1 + 1e-9)
    soonest = _best_final(t, "latency", *_search(t, "latency", limit, cap), cap)
    return dataclasses.replace(soonest, objective=objective)


State = tuple[str, frozenset[str]]
Back = dict[State, tuple[list[State], np.ndarray, np.ndarray]]


def _search(t: _Tables, objective: str, limit: int, cap: float | None = None) -> tuple[dict[State, np.ndarray], Back]:
    """The dynamic programme over (cut, machine, machines used), paths of at most `limit` machines: the best cost per
    state and cut, and how each was reached. `cap`: stages and hop serialisations above it ruled out."""
    source = t.machines.source
    machines = t.machines
    first = _capped(t.stage_matrix(source.name), cap)[0].copy()
    dp: dict[State, np.ndarray] = {(source.name, frozenset([source.name])): first}
    # back[state]: per cut, the state before it and the cut that state's stage ended at.
    back: Back = {}
    frontier = list(dp)
    for _ in range(limit - 1):
        offers: dict[State, list[tuple[State, np.ndarray, np.ndarray]]] = {}
        for state in frontier:
            here, used = state
            value = dp[state]
            if not np.isfinite(value).any():
                continue
            for there in t.neighbours(here):
                if there not in used:
                    best, before = _step(t, objective, value, machines.machine(here), there, cap)
                    offers.setdefault((there, used | {there}), []).append((state, best, before))
        for key, offered in offers.items():  # several ways into one state (4 machines on): the best per cut
            values = np.stack([best for _, best, _ in offered])
            which = np.argmin(values, axis=0)
            cuts_at = np.arange(values.shape[1])
            dp[key] = values[which, cuts_at]
            back[key] = ([state for state, _, _ in offered], which,
                         np.stack([before for _, _, before in offered])[which, cuts_at])
        frontier = list(offers)
    return dp, back


def _capped(matrix: np.ndarray, cap: float | None) -> np.ndarray:
    return matrix if cap is None else np.where(matrix <= cap, matrix, np.inf)


def _step(t: _Tables, objective: str, value: np.ndarray, sender: Machine, there: str, cap: float | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """From the best costs `value` per cut of plans ending on `sender`, one hop to `there` and its stage: the best
    cost per cut that stage ends at, and the cut it started at (`cap`: as _search's)."""
    seconds, serialise = t.hop(sender, there, np.arange(len(value)))
    if cap is not None:
        seconds = np.where(serialise <= cap, seconds, np.inf)
    entering = _combine(objective, value, seconds if objective == "latency" else serialise)
    matrix = _combine(objective, entering[:, None], _capped(t.stage_matrix(there), cap))
    before = np.argmin(matrix, axis=0)
    return matrix[before, np.arange(len(value))], before


def _best_final(t: _Tables, objective: str, dp: dict[State, np.ndarray], back: Back, cap: float | None = None
                ) -> PipelinePlan:
    """The state whose plan, the answer's route added, costs least (`cap`: routes slower than it ruled out);
    unwound into a PipelinePlan."""
    end = t.ranges.positions
    best_cost, best_state = np.inf, None
    for state, value in dp.items():
        if not np.isfinite(value[end]):
            continue
        here, _ = state
        _, seconds, period = t.reply_route(here)
        if cap is not None and period > cap:
            continue
        total = float(_combine(objective, value[end], seconds if objective == "latency" else period))
        if total < best_cost - 1e-15:
            best_cost, best_state = total, state
    if best_state is None:
        raise SplitnnError(_no_fit(t))
    bounds = [end]
    path = [best_state[0]]
    state = best_state
    while state in back:
        states, which, before = back[state]
        cut = bounds[-1]
        state = states[int(which[cut])]
        bounds.append(int(before[cut]))
        path.append(state[0])
    bounds.append(0)
    path.reverse()
    bounds.reverse()
    return assemble_plan(t, objective, path, bounds)


def assemble_plan(t: _Tables, objective: str, path: Sequence[str], bounds: Sequence[int]) -> PipelinePlan:
    """The plan running stage s = [bounds[s], bounds[s + 1]) on path[s], with its hops, answer route and costs."""
    ranges, machines = t.ranges, t.machines
    stages = []
    for name, start, end in zip(path, bounds, bounds[1:]):
        machine = machines.machine(name)
        stages.append(Stage(name, start, end, ranges.names[start] if end > start else None,
                            ranges.names[end - 1] if end > start else None, int(ranges.macs[end] - ranges.macs[start]),
                            float(t.prefix[name][end] - t.prefix[name][start]),
                            int(t.memory[start, end]) if end > start else 0, machine.usable_bytes))
    hops = []
    for (a, b), cut in zip(zip(path, path[1:]), bounds[1:-1]):
        seconds, serialise = t.hop(machines.machine(a), b, cut)
        hops.append(Hop(a, b, cut, ranges.sent_tensors[cut], int(ranges.sent_bytes[cut]), float(seconds),
                        float(serialise)))
    route, _, _ = t.reply_route(path[-1])
    outputs = ranges.sent_tensors[ranges.positions]
    reply = []
    for a, b in zip(route, route[1:]):
        seconds, serialise = t.hop(machines.machine(a), b, 0, ranges.output_bytes)
        reply.append(Hop(a, b, ranges.positions, outputs, ranges.output_bytes, float(seconds), float(serialise)))
    latency = sum(s.compute_s for s in stages) + sum(h.seconds for h in (*hops, *reply))
    period = max([s.compute_s for s in stages] + [h.serialise_s for h in (*hops, *reply)])
    return PipelinePlan(objective, tuple(stages), tuple(hops), tuple(reply), latency, period)


def _no_fit(t: _Tables) -> str:
    """Why no plan fits: a node whose stage alone fits no machine, else the machines' memory against the model's."""
    memory, ranges = t.memory, t.ranges
    largest = max(t.machines.machines, key=lambda m: m.usable_bytes)
    for p in range(ranges.positions):
        if memory[p, p + 1] > largest.usable_bytes:
            return (f"node '{ranges.names[p]}' alone needs {int(memory[p, p + 1]):,} bytes (its weights and "
                    f"activations), more than the largest machine '{largest.name}' may use ({largest.usable_bytes:,} "
                    "bytes, its profile's usable share of its memory): give a machine more memory")
    tightest = min(t.machines.machines, key=lambda m: m.usable_bytes)
    return (f"the model fits no assignment to these machines: it needs {int(memory[0, ranges.positions]):,} bytes "
            f"on one machine, and no path of linked machines from the source covers it in stages within their memory "
            f"(the tightest, '{tightest.name}', may use {tightest.usable_bytes:,} bytes): add memory, machines or "
            "links")


def choose_pipeline(analysis: Analysis, machines: Machines, objective: str = "latency",
                    cuts: Sequence[int] | None = None) -> PipelineChoice:
    """The best plan over every machine, beside the best over two (the source and one other) and the source alone."""
    tables = _Tables(analysis, machines, cuts)
    best = plan_pipeline(analysis, machines, objective, cuts, tables=tables)
    two = _or_none(lambda: plan_pipeline(analysis, machines, objective, cuts, max_machines=2, tables=tables))
    alone = _or_none(lambda: plan_pipeline(analysis, machines, objective, cuts, max_machines=1, tables=tables))
    return PipelineChoice(best, two, alone, unpriced_ops(analysis.graph))


def _or_none(plan: Callable[[], PipelinePlan]) -> PipelinePlan | None:
    try:
        return plan()
    except SplitnnError:
        return None


def brute_force_plan(analysis: Analysis, machines: Machines, objective: str = "latency",
                     cuts: Sequence[int] | None = None) -> PipelinePlan:
    """The best plan by enumerating every simple path of linked machines from the source and every tuple of stage
    boundaries among `cuts` (the check of plan_pipeline; small cases only)."""
    t = _Tables(analysis, machines, cuts)
    end = t.ranges.positions
    positions = [int(c) for c in np.flatnonzero(t.allowed)]
    replies: dict[str, tuple[list[str], float, float] | None] = {}
    best: tuple[tuple[float, float], list[str], list[int]] | None = None
    for path in _paths(t, [machines.source.name]):
        if path[-1] not in replies:  # a machine with no route back to the source ends no plan
            replies[path[-1]] = _or_none_route(t, path[-1])
        route = replies[path[-1]]
        if route is None:
            continue
        stages = [t.stage_matrix(name) for name in path]
        hops = [t.hop(machines.machine(a), b, np.arange(end + 1)) for a, b in zip(path, path[1:])]
        _, reply_s, reply_period = route
        for inner in itertools.combinations_with_replacement(positions, len(path) - 1):
            bounds = [0, *inner, end]
            terms = [float(stage[a, b]) for stage, a, b in zip(stages, bounds, bounds[1:])]
            latency = sum(terms) + sum(float(h[0][c]) for h, c in zip(hops, inner)) + reply_s
            period = max(terms + [float(h[1][c]) for h, c in zip(hops, inner)] + [reply_period])
            # throughput: the least period, and of those the least latency
            cost = (latency, 0.0) if objective == "latency" else (period, latency)
            if np.isfinite(latency) and (best is None or _better(cost, best[0])):
                best = (cost, path, bounds)
    if best is None:
        raise SplitnnError(_no_fit(t))
    return assemble_plan(t, objective, best[1], best[2])


def _better(cost: tuple[float, float], than: tuple[float, float]) -> bool:
    """`cost` before `than`: less by the first figure, or the same (to a relative 1e-9) and less by the second."""
    if cost[0] < than[0] * (1 - 1e-9):
        return True
    return cost[0] <= than[0] * (1 + 1e-9) and cost[1] < than[1] - 1e-15


def _or_none_route(t: _Tables, last: str) -> tuple[list[str], float, float] | None:
    try:
        return t.reply_route(last)
    except SplitnnError:
        return None


def _paths(t: _Tables, path: list[str]) -> list[list[str]]:
    found = [list(path)]
    for there in t.neighbours(path[-1]):
        if there not in path:
            found += _paths(t, [*path, there])
    return found


def plan_machines(plan: PipelinePlanFile, without: str | None = None) -> Machines:
    """The machines and links a written plan was made for, as its plan.json keeps them (the machines file may have
    moved); `without`: that machine and its links left out (a stage that dropped)."""
    machines = tuple(Machine(m.name, m.profile, m.count, m.source) for m in plan.machines if m.name != without)
    links = tuple(MachineLink(link.a, link.b, link.link) for link in plan.links if without not in (link.a, link.b))
    return Machines(machines, links, plan.machines_file)
