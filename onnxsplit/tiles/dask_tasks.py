"""The worker side of a tile plan on Dask: the plugin that builds each worker's sessions, and the tasks it runs.

Every function here runs on a Dask worker (tiles/dask_runtime.py submits them from the client), except
register_plugin, which hands a SessionsPlugin to every worker. A task names the session it needs by key; the
plugin built it when the worker joined (and builds it again on a worker that restarts).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.layout import WEIGHTS_FILE
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.core.pacing import hold_until
from splitnn.onnxsplit.tiles.geometry import Region
from splitnn.onnxsplit.artifacts.reuse_records import ReuseTile
from splitnn.onnxsplit.tiles.reuse import assemble


# A session's key on a worker: a tile's id (0: the whole model), with reuse "first:ID" and "layer:ID:L", or a
# neuron-split slice's "N:I".
SessionKey = int | str


class SessionsPlugin:
    """A Dask worker plugin that builds the onnxruntime sessions of a plan on every worker, once.

    Registered with client.register_plugin, it runs `setup` on each worker,
    and again on any worker that joins or restarts (after a crash), so tasks
    only name the session they need. One thread per session: a worker is one
    core of a board.

    With `weights` (the blob every graph's external data points into), the
    blob and the graphs are written to the worker's local folder and the
    sessions load them from there: onnxruntime maps the blob's file, so all
    sessions share one copy of the weights. Graph optimizations stop at
    "extended": the "all" level's NCHWc layout (used on this x86 machine)
    would give every session its own reordered copy of the weights, several
    times the blob on a worker, for a little speed (docs/measurements.md,
    tiles).
    """

    def __init__(self, name: str, models: dict[SessionKey, bytes], weights: bytes | None = None) -> None:
        self.name = name
        self.models = models
        self.weights = weights
        self.sessions: dict[SessionKey, Any] = {}

    def setup(self, worker: Any) -> None:
        if self.weights is None:  # whole models with their weights inline
            for model_id, model in self.models.items():
                self.sessions[model_id] = create_session(model, threads=1, spin=False, shared_arena=True)
            return
        folder = _write_program(Path(worker.local_directory), self.name, self.models, self.weights)
        for model_id in self.models:
            self.sessions[model_id] = create_session(folder / _graph_file(model_id), threads=1, spin=False,
                                                     shared_arena=True, level="extended")

    def teardown(self, worker: Any) -> None:
        self.sessions.clear()


def _graph_file(model_id: SessionKey) -> str:
    return "graph-" + str(model_id).replace(":", "-") + ".onnx"


def _write_program(root: Path, name: str, models: dict[SessionKey, bytes], weights: bytes) -> Path:
    """Write the blob and the graphs under `root`, as they lie in the plan's tiles/ folder; returns their folder.

    The graphs are written as they are: every one of them refers to the blob
    as WEIGHTS_FILE in its own folder, the name write_tiles gives it.
    """
    import hashlib

    from splitnn.onnxsplit.core.atomic_files import write_bytes_atomic

    folder = root / ("splitnn-" + hashlib.sha256(name.encode()).hexdigest()[:16])
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(folder / WEIGHTS_FILE, weights)
    for model_id, graph_bytes in models.items():
        write_bytes_atomic(folder / _graph_file(model_id), graph_bytes)
    return folder


def _sessions(plugin_name: str) -> dict[SessionKey, Any]:
    from distributed import get_worker

    plugin = get_worker().plugins[plugin_name]
    if not isinstance(plugin, SessionsPlugin):
        raise SplitnnError(f"the worker's plugin '{plugin_name}' is not a tile plan's (it holds no sessions)")
    return plugin.sessions


def run_tile_group(plugin_name: str, tile_ids: list[int], crops: list[list[np.ndarray]],
                   targets: list[float] | None = None) -> tuple[list[list[np.ndarray]], list[float], str]:
    """A Dask task: several tiles' stacks, one after the other (one scheduler round trip for all of them); each
    tile's crops are those of its stack's inputs, in order. `targets`: each tile held to that many seconds (an
    emulated node, core/pacing.py). Returns each tile's outputs (its stack's, in order), each one's compute
    seconds (held ones included), and the worker."""
    from distributed import get_worker

    sessions = _sessions(plugin_name)
    outputs, times = [], []
    for index, (tile_id, tile_crops) in enumerate(zip(tile_ids, crops)):
        session = sessions[tile_id]
        start = time.perf_counter()
        output = session.run(None, {value.name: c for value, c in zip(session.get_inputs(), tile_crops)})
        times.append(hold_until(start, targets[index] if targets else None))
        outputs.append(output)
    return outputs, times, get_worker().address


def run_first_phase(plugin_name: str, record: ReuseTile, crops: dict[str, np.ndarray]
                    ) -> tuple[tuple[list[np.ndarray], list[np.ndarray]], float, str]:
    """A Dask task (reuse): a first-phase tile; returns its cells of the stack's outputs and every unit's output
    over its regions (what its second-phase neighbours read)."""
    from distributed import get_worker

    from splitnn.onnxsplit.tiles.reuse import first_phase_outputs

    session = _sessions(plugin_name)[f"first:{record.id}"]
    start = time.perf_counter()
    every_unit = session.run(None, crops)
    return (first_phase_outputs(record, every_unit), every_unit), time.perf_counter() - start, get_worker().address


def run_second(plugin_name: str, record: ReuseTile, crops: dict[str, np.ndarray],
               neighbours: dict[int, tuple[tuple[list[np.ndarray], list[np.ndarray]], float, str]]
               ) -> tuple[tuple[list[np.ndarray], list[np.ndarray]], float, str]:
    """A Dask task (reuse): a second-phase tile, unit by unit, from its neighbours' first-phase results; returns its
    cells of the stack's outputs (and no unit outputs: nothing reads them)."""
    from distributed import get_worker

    from splitnn.onnxsplit.tiles.reuse import run_second_phase

    sessions = _sessions(plugin_name)

    def run_unit(index: int, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        session = sessions[f"layer:{record.id}:{index}"]
        return session.run(None, feeds)

    start = time.perf_counter()
    outputs = run_second_phase(record, crops, run_unit, {n: result[0][1] for n, result in neighbours.items()})
    return (outputs, []), time.perf_counter() - start, get_worker().address


def run_slice(plugin_name: str, slice_key: str, model: bytes, x: np.ndarray) -> np.ndarray:
    """A Dask task: one slice of a neuron-split layer (its session built on first use, on its worker)."""
    sessions = _sessions(plugin_name)
    if slice_key not in sessions:
        sessions[slice_key] = create_session(model, threads=1, spin=False, shared_arena=True)
    session = sessions[slice_key]
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def run_whole(plugin_name: str, feeds: dict[str, np.ndarray], target_s: float | None = None
              ) -> tuple[dict[str, np.ndarray], float, str]:
    """A Dask task for data parallelism: the whole model on one image (held to `target_s` on an emulated node)."""
    from distributed import get_worker

    session = _sessions(plugin_name)[0]
    start = time.perf_counter()
    names = [o.name for o in session.get_outputs()]
    values = session.run(names, feeds)
    return dict(zip(names, values)), hold_until(start, target_s), get_worker().address


def register_plugin(client: Any, plugin: SessionsPlugin) -> str:
    from distributed.diagnostics.plugin import WorkerPlugin

    class _Plugin(SessionsPlugin, WorkerPlugin):  # WorkerPlugin imported late: Dask is optional for vertical splits
        pass

    registered = _Plugin(plugin.name, plugin.models, plugin.weights)
    client.register_plugin(registered, name=plugin.name)
    return plugin.name


# What a later stack's tile reads under the workers' hand-off, per input: its crop, made on the client (the image,
# a squeeze-and-excitation vector), or the region it needs (rows, columns), its layout, and the cells that overlap
# it: (the cell's region of the map, which of the held results holds it, the tile's position in that task, the
# output's position).
PieceRef = tuple[Region, int, int, int]
TileInput = np.ndarray | tuple[Region, str, list[PieceRef]]
GroupResult = tuple[list[list[np.ndarray]], list[float], str]  # run_tile_group's


def run_tile_group_from(plugin_name: str, tile_ids: list[int], inputs: list[list[TileInput]],
                        targets: list[float] | None, *held: GroupResult) -> GroupResult:
    """A Dask task of a later stack (hand-off "workers"): each tile's inputs, cropped on the client or assembled
    from pieces of the earlier stacks' results `held` (handed over by Dask from the workers that hold them);
    `targets`: as run_tile_group's."""
    def assembled(region: Region, layout: str, refs: list[PieceRef]) -> np.ndarray:
        return assemble(region, [(cell, held[j][0][position][output]) for cell, j, position, output in refs], layout)

    crops = [[given if isinstance(given, np.ndarray) else assembled(*given) for given in tile_inputs]
             for tile_inputs in inputs]
    return run_tile_group(plugin_name, tile_ids, crops, targets)


def map_sums(result: GroupResult, wanted: list[tuple[int, int, str]]) -> np.ndarray:
    """A Dask task on the worker that holds a tile group's `result`: the sum over rows and columns of each
    wanted output cell (tile's position, output's position, layout), added up: one value per channel."""
    outputs = result[0]
    total = np.zeros(0)
    for number, (position, output, layout) in enumerate(wanted):
        part = outputs[position][output].sum(axis=(1, 2) if layout == "NHWC" else (2, 3), dtype=np.float64)
        total = part if number == 0 else total + part
    return total


def times_and_worker(result: tuple[list[np.ndarray], list[float], str]) -> tuple[list[float], str]:
    """A Dask task: a tile group's compute times and worker, without its outputs."""
    return result[1], result[2]
