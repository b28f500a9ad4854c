"""Time every node of a model on this machine with onnxruntime's own profiler.

onnxruntime runs an *optimized* graph: at the default level of `splitnn
profile` ("basic", the level of the ORT-format device part that partition
writes) it folds constants, drops Identity/Dropout and fuses Conv with a
following BatchNormalization, Add or Mul. Its profiler times those kernels,
not the nodes of the file. So the kernels are mapped back:

1. The session saves the optimized graph it runs; each profiler event is one
   of its nodes (by name), and the medians are taken per kernel over the
   timed runs, after the warm-up runs.
2. Tensors that exist in both graphs are anchors. A kernel whose output is not
   an anchor (a layout conversion, a fusion's private intermediate) is merged
   with the kernels that read it; each merged set is a kernel group whose
   boundary is made of anchors.
3. A group computes the original nodes found by walking back from its anchored
   outputs through the original graph until its anchored inputs. Its time is
   the sum of its kernels' medians; the nodes no kernel computes (folded or
   removed) are "eliminated" and cost nothing.

The fit (splitnn.cost_models.fitting) compares predictions per group, never per node,
so no fused time has to be split between the nodes it covers.
"""
from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL, median_run_seconds
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.model.weight_source import open_in_place

LEVELS = ("none", "basic", "extended", "all")


@dataclass(frozen=True)
class KernelGroup:
    """Kernels of the optimized graph and the original nodes they compute together."""

    kernels: tuple[str, ...]  # onnxruntime's node names in the optimized graph
    nodes: tuple[int, ...]  # indices (topological) of the original nodes
    seconds: float  # sum of the kernels' median times


@dataclass(frozen=True)
class NodeTimings:
    """One model's measured kernel groups on this machine."""

    model: str
    level: str
    threads: int | None
    runs: int
    warmup: int
    groups: tuple[KernelGroup, ...]
    eliminated: tuple[int, ...]  # original nodes that no kernel computes
    run_seconds: float  # median wall time of a whole run, as the profiler saw it
    plain_seconds: float | None = None  # median wall time of a whole run without the profiler (None: not timed)

    @property
    def kernel_seconds(self) -> float:
        return sum(g.seconds for g in self.groups)

    def node_group(self) -> dict[int, int]:
        """Original node index -> index of the group that computes it."""
        return {node: i for i, group in enumerate(self.groups) for node in group.nodes}


def kernel_medians(events: Iterable[Mapping[str, Any]], warmup: int) -> tuple[dict[str, float], list[float]]:
    """Median seconds per kernel over the runs after `warmup`, from a profiler trace.

    Runs are told apart by the profiler's "model_run" events; a kernel that
    appears several times in one run (a repeated name) counts as their sum.
    Returns the medians and the timed runs' wall times.
    """
    events = list(events)
    windows = sorted((e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    timed = windows[warmup:]
    if not timed:
        raise ValueError(f"the trace holds {len(windows)} runs, no more than the {warmup} warm-up runs")
    per_run: list[dict[str, float]] = [{} for _ in timed]
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        for run, (start, end) in enumerate(timed):
            if start <= event["ts"] <= end:
                kernel = name[: -len("_kernel_time")]
                per_run[run][kernel] = per_run[run].get(kernel, 0.0) + event["dur"] / 1e6
                break
    kernels = set().union(*per_run)
    medians = {k: statistics.median(run.get(k, 0.0) for run in per_run) for k in kernels}
    return medians, [(end - start) / 1e6 for start, end in timed]


def group_kernels(graph: Graph, optimized: onnx.ModelProto, medians: Mapping[str, float]) -> tuple[list[KernelGroup], list[int]]:
    """Map the kernels of `optimized` back to `graph`'s nodes (steps 2 and 3 of the module doc)."""
    anchors = set(graph.tensors) | set(graph.initializers)
    kernels = list(optimized.graph.node)

    owner: dict[int, int] = {}  # original node -> group that computes it
    groups: list[KernelGroup] = []
    for inside in _kernel_clusters(kernels, anchors):  # in the optimized graph's order
        produced = {name for i in inside for name in kernels[i].output}
        stops = {name for i in inside for name in kernels[i].input if name not in produced and name in anchors}
        outputs = [name for name in produced if name in anchors]
        nodes: list[int] = []
        pending = list(outputs)
        while pending:
            name = pending.pop()
            index = graph.producer.get(name)
            if index is None or index in owner or name in stops:
                continue
            owner[index] = len(groups)
            node = graph.nodes[index]
            if node.op_type != "Constant":  # a static node walked through was computed by this group
                nodes.append(index)
            pending.extend(n for n in node.all_inputs if n not in stops)
        names = tuple(dict.fromkeys(kernels[i].name for i in inside))
        seconds = sum(medians.get(name, 0.0) for name in names)
        claimant = next((owner[graph.producer[n]] for n in outputs if graph.producer.get(n) in owner), None)
        if not nodes and claimant is not None:
            # An earlier group's walk already took the nodes behind these outputs: the kernels join it.
            earlier = groups[claimant]
            groups[claimant] = KernelGroup(earlier.kernels + names, earlier.nodes, earlier.seconds + seconds)
            continue
        groups.append(KernelGroup(names, tuple(sorted(nodes)), seconds))
    # Static nodes count here too: onnxruntime folds them, they run in no kernel (Constant nodes are no work).
    eliminated = [n.index for n in graph.nodes if n.op_type != "Constant" and n.index not in owner]
    return groups, eliminated


def time_nodes(
    graph: Graph,
    *,
    runs: int = 10,
    warmup: int = 2,
    level: str = DEVICE_PART_LEVEL,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> NodeTimings:
    """Run `graph`'s model `warmup + runs` times under onnxruntime's profiler and map the kernels back."""
    if graph.path is None:
        raise ValueError("the graph has no model file to run")
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    model = onnx.ModelProto()
    model.CopyFrom(graph.model)
    for node in graph.nodes:  # unique names, so that every kernel of an unfused node is found by name
        model.graph.node[node.proto_index].name = node.name
    feeds = random_inputs(graph)
    with tempfile.TemporaryDirectory(prefix="splitnn-profile-") as tmp:
        folder = Path(tmp)
        config = {
            # The optimized graph is saved only to read its structure; its weights go to a side file.
            "session.optimized_model_external_initializers_file_name": "optimized.bin",
            "session.optimized_model_external_initializers_min_size_in_bytes": "1024",
        }
        session = open_in_place(model, graph.initializers, graph.path, level=level, threads=threads,
                                save_to=folder / "optimized.onnx", profile_prefix=folder / "trace", config=config)
        total = warmup + runs
        for done in range(total):
            session.run(None, feeds)
            if progress is not None:
                progress(done + 1, total)
        trace = Path(session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
        optimized = onnx.load(str(folder / "optimized.onnx"), load_external_data=False)
    medians, walls = kernel_medians(events, warmup)
    groups, eliminated = group_kernels(graph, optimized, medians)
    return NodeTimings(
        model=str(graph.path), level=level, threads=threads, runs=runs, warmup=warmup,
        groups=tuple(groups), eliminated=tuple(eliminated), run_seconds=statistics.median(walls),
        plain_seconds=_plain_seconds(model, graph, feeds, level, threads, warmup, runs),
    )


def _plain_seconds(model: onnx.ModelProto, graph: Graph, feeds: dict[str, Any], level: str, threads: int | None,
                   warmup: int, runs: int) -> float:
    """Median wall time of a whole run with the profiler off: what a prediction is compared with."""
    session = open_in_place(model, graph.initializers, graph.model_file, level=level, threads=threads)
    return median_run_seconds(session, feeds, runs, warmup=warmup)


def _kernel_clusters(kernels: list[onnx.NodeProto], anchors: set[str]) -> list[list[int]]:
    """Kernels joined by a tensor the original graph lacks (a fused intermediate) or by a shared name, as the
    connected components (scipy's) of that relation, each in order, in the order of their first kernel."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    readers: dict[str, list[int]] = {}
    for i, kernel in enumerate(kernels):
        for name in kernel.input:
            readers.setdefault(name, []).append(i)
    edges: list[tuple[int, int]] = []
    first_of_name: dict[str, int] = {}
    for i, kernel in enumerate(kernels):
        edges += [(i, reader) for name in kernel.output if name and name not in anchors for reader in readers.get(name, [])]
        if kernel.name in first_of_name:
            edges.append((i, first_of_name[kernel.name]))
        first_of_name.setdefault(kernel.name, i)
    count = len(kernels)
    rows = np.array([a for a, _ in edges], dtype=np.int64)
    cols = np.array([b for _, b in edges], dtype=np.int64)
    _, labels = connected_components(coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(count, count)), directed=False)
    members: dict[int, list[int]] = {}
    for i, label in enumerate(labels):
        members.setdefault(int(label), []).append(i)
    return sorted(members.values(), key=min)
