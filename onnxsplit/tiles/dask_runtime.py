"""Run a tile plan on Dask distributed: tiles as tasks, stitched and finished on the client.

The cluster is Dask's: by default an embedded LocalCluster (one process per
node, one thread each, the node profile's usable RAM as each worker's memory
limit), or an existing scheduler of real boards (`tcp://HOST:8786`, workers
with splitnn installed). Handing out tasks, work stealing and re-running the
tasks of a lost worker are the Dask scheduler's own.

Each tile graph and the stack's weight blob go to every worker once, by a
worker plugin that writes them to the worker's local folder and builds one
onnxruntime session per tile (one thread, as one core of a board). The
sessions map the one blob file instead of holding a copy each, and take their
activations from one shared arena, so a node holds the stack's weights once
and the activations of one tile at a time, as the plan's memory rule
assumes. The client crops the image, submits one task per worker (its share
of the tiles), stitches the outputs as they complete, and runs the remainder
of the model. A plan of several stacks runs them in turn: the client keeps a
pool of the maps stitched so far, and each later stack's tiles are cropped
from the maps of the pool it reads and sent out the same way (each stack has
a plugin of its own, its graphs and blob). Scaling
runs the same plan restricted to the first 1, 2, ..., N workers.
"""
from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.chain import PartStep, RunSlices, SlicedStep, cached_sessions, outputs_of, run_steps
from splitnn.onnxsplit.artifacts.layout import WEIGHTS_FILE
from splitnn.onnxsplit.artifacts.plan_file import model_path, read_tile_plan
from splitnn.onnxsplit.artifacts.reuse_records import ReuseArtifacts, ReuseTile
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.core.pacing import hold_until
from splitnn.onnxsplit.tiles.dask_tasks import (
    SessionKey,
    SessionsPlugin,
    register_plugin,
    run_first_phase,
    run_second,
    run_slice,
    run_tile_group,
    map_sums,
    run_tile_group_from,
    times_and_worker,
)
from splitnn.onnxsplit.tiles.geometry import Region, crop, in_memory, paste, paste_tile, tile_crops
from splitnn.onnxsplit.tiles.planning import lpt_deal
from splitnn.onnxsplit.tiles.pooled_step import mean_of, pooled_step
from splitnn.onnxsplit.tiles.reuse import stack_reuse_tiles


def _with_weights(graph_bytes: bytes, weights: bytes) -> bytes:
    """A tile graph with its external weights (offsets into the blob) put inline, as onnxruntime loads from bytes."""
    import onnx

    model = onnx.load_model_from_string(graph_bytes)
    for tensor in model.graph.initializer:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        where = {entry.key: entry.value for entry in tensor.external_data}
        offset, length = int(where.get("offset", 0)), int(where["length"])
        tensor.raw_data = weights[offset : offset + length]
        del tensor.external_data[:]
        tensor.data_location = onnx.TensorProto.DEFAULT
    return model.SerializeToString()


def tile_groups(predicted_s: list[float], count: int) -> list[list[int]]:
    """Tile indices dealt into `count` groups of about equal predicted time as the planner deals them to nodes
    (planning.lpt_deal), each group's tiles in their grid order."""
    return [sorted(group) for group in lpt_deal(predicted_s, count) if group]


def register_program(client: Any, program: TileProgram) -> list[str]:
    """A plugin per stack of `program` on every worker (the first stack's first); returns their names."""
    names = [register_plugin(client, SessionsPlugin(f"splitnn-tiles-{program.key}", program.graphs, program.weights))]
    for number, later in enumerate(program.later, start=1):
        names.append(register_plugin(client, SessionsPlugin(f"splitnn-tiles-{program.key}-stack{number}", later.graphs,
                                                            later.weights)))
    return names


RUNTIME_ALLOWANCE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class TileRun:
    id: int
    worker: str
    seconds: float  # compute inside the worker
    done_s: float  # since the image's tiles were submitted
    stack: int = 0  # which stack of the plan (0: the first, which reads the image)


@dataclass(frozen=True)
class StackMaps:
    """The maps a stack reads (cropped for each tile from the maps the client holds) and hands on (stitched from
    its tiles' outputs), with their layouts and logical shapes, from its plan record."""

    inputs: tuple[str, ...]
    input_layouts: tuple[str, ...]
    outputs: tuple[str, ...]
    output_shapes: tuple[tuple[int, int, int, int], ...]  # logical: N, C, H, W
    output_layouts: tuple[str, ...]

    @classmethod
    def of(cls, record: Any) -> StackMaps:
        """From a plan_file.StackRecord."""
        layers = record.stack
        reading = [next(layer for layer in layers if name in (layer.inputs or (layer.input,))) for name in record.input_names]
        making = [next(layer for layer in layers if layer.output == name) for name in record.output_names]
        return cls(record.input_names, tuple(layer.in_layout for layer in reading), record.output_names,
                   tuple(layer.out_shape for layer in making), tuple(layer.out_layout for layer in making))

    def crops(self, tile: Any, pool: dict[str, np.ndarray]) -> list[np.ndarray]:
        """`tile`'s crop of each input, from the maps in `pool`."""
        return tile_crops(tile, pool, self.inputs, self.input_layouts)

    def paste(self, canvases: dict[str, np.ndarray], tile: Any, outputs: list[np.ndarray]) -> None:
        """`tile`'s outputs into the stitched maps `canvases` (made on the first tile)."""
        paste_tile(canvases, tile, outputs, self.outputs, self.output_shapes, self.output_layouts)


@dataclass(frozen=True)
class LaterStack:
    """A stack after the first, loaded on the client: its tiles, their graphs and blob, and what they stitch into."""

    tiles: tuple[Any, ...]  # plan_file.TileRecord: each tile's regions and predicted time
    graphs: dict[SessionKey, bytes]
    weights: bytes
    maps: StackMaps
    reuse_tiles: dict[int, ReuseTile] = field(default_factory=dict)  # reuse: every tile's task data (none without)
    client_step: PartStep | None = None  # what the client computes before the stack's tiles (a whole-map vector)
    client_step_s: float | None = None  # the client step held to this (emulated nodes), else None


@dataclass
class ImageRun:
    """One image through a tile plan on the cluster."""

    outputs: dict[str, np.ndarray]
    records: list[TileRun]  # every tile of every stack, by stack then id
    stack_phases_s: list[float]  # each stack's phase: from sending its tiles to the last one stitched
    tiles_phase_s: float  # from sending the first stack's tiles to the last stack's last tile stitched
    total_s: float  # the image, remainder included
    retried: int  # tile tasks the scheduler ran again because their worker was lost
    split_layers_s: list[float] = field(default_factory=list)  # each layer split by neurons, its slices on the nodes


def _stack_graphs(outdir: Path, tiles: tuple[Any, ...], names: tuple[str, ...], reuse: ReuseArtifacts | None
                  ) -> dict[SessionKey, bytes]:
    """A stack's graphs by the key its tasks name them with: a tile's id, and with reuse "first:ID" (a first-phase
    tile returning every layer) and "layer:ID:L" (layer L of a second-phase tile)."""
    graphs: dict[SessionKey, bytes] = {tile.id: (outdir / name).read_bytes() for tile, name in zip(tiles, names)}
    if reuse is not None:
        for tile_id, name in reuse.first_phase.items():
            graphs[f"first:{tile_id}"] = (outdir / name).read_bytes()
        for tile_id, layers in reuse.second_phase_layers.items():
            for index, name in layers.items():
                graphs[f"layer:{tile_id}:{index}"] = (outdir / name).read_bytes()
    return graphs


class TileProgram:
    """A tile plan folder, loaded on the client: geometry, tile graphs, weights, and the remainder's session.

    `emulate_nodes`: every node takes the time the plan predicts on its node
    profile (core/pacing.py): each tile is held to its predicted time on its
    worker, and the client, one node too, holds each squeeze-and-excitation
    step and the remainder (its layers split across the nodes included, as
    one block) to theirs. The nodes' link stays this host's.
    """

    def __init__(self, outdir: str | Path, emulate_nodes: bool = False) -> None:
        outdir = Path(outdir)
        self.plan = read_tile_plan(outdir)
        self.plan.check_artifacts(outdir, None)  # every tile, slice and blob, before a worker gets any
        if emulate_nodes:
            _check_emulable(self.plan)
        self.emulate_nodes = emulate_nodes
        artifacts = self.plan.artifacts
        self.key = self.plan.graph_fingerprint + ":" + str(outdir.resolve())
        self.tiles = self.plan.tiles
        self.graphs = _stack_graphs(outdir, self.tiles, artifacts.tiles, artifacts.reuse)
        self.weights = (outdir / artifacts.stack_weights).read_bytes()
        self.reuse_tiles = stack_reuse_tiles(self.plan.reuse)
        self.image = self.plan.image_input
        self.maps = StackMaps.of(self.plan.all_stacks[0])
        self.later = [LaterStack(record.tiles, _stack_graphs(outdir, record.tiles, files.tiles, files.reuse),
                                 (outdir / files.stack_weights).read_bytes(), StackMaps.of(record),
                                 stack_reuse_tiles(record.reuse), files.client_step,
                                 record.client_step.predicted_s if emulate_nodes and record.client_step else None)
                      for record, files in zip(self.plan.later_stacks, artifacts.later_stacks)]
        self.folder = outdir
        self.steps = self.plan.remainder_chain()
        # The remainder's sessions, opened on first use and kept between images.
        self.session_of = cached_sessions(lambda model: create_session(outdir / model, threads=1, spin=False))
        # Each slice of a neuron-split layer, with its weights inline: it travels to one worker only.
        self.slices = {(number, i): _with_weights((outdir / part.model).read_bytes(),
                                                  (outdir / part.model).with_name(WEIGHTS_FILE).read_bytes())
                       for number, step in enumerate(self.steps) if isinstance(step, SlicedStep)
                       for i, part in enumerate(step.slices)}
        self.model_path = model_path(outdir, self.plan)
        self._pooled: dict[tuple[str, tuple[tuple[str, str], ...]],
                           tuple[Any, dict[str, tuple[str, ...]], dict[str, np.dtype]] | None] = {}

    def pooled_step(self, step: PartStep, maps: dict[str, str]
                    ) -> tuple[Any, dict[str, tuple[str, ...]], dict[str, np.dtype]] | None:
        """A client step's session fed with the means of `maps` (by name, in their layouts) instead of the maps,
        which of its inputs take each map's mean, and each mean's element type (tiles/pooled_step.py); None where
        it needs more of them than their means."""
        key = (step.model, tuple(sorted(maps.items())))
        if key not in self._pooled:
            pooled = pooled_step(self.folder / step.model, maps)
            self._pooled[key] = None if pooled is None else (
                create_session(pooled.model, threads=1, spin=False), pooled.means, pooled.dtypes)
        return self._pooled[key]

    def finish(self, pool: dict[str, np.ndarray], run_slices: RunSlices | None = None) -> dict[str, np.ndarray]:
        """The model's outputs from the inputs and the stitched maps in `pool`: the remainder on this client (split
        layers via `run_slices` on the cluster)."""
        start = time.perf_counter()
        pool = run_steps(self.steps, dict(pool), self.session_of, run_slices)
        hold_until(start, self.plan.predicted.remainder_s if self.emulate_nodes else None)
        return outputs_of(pool, self.plan.outputs)


def _check_emulable(plan: Any) -> None:
    """Refuse, in one line, what emulated nodes cannot hold to a prediction: the plan keeps none for it."""
    if plan.reuse.enabled or any(s.reuse.enabled for s in plan.later_stacks):
        raise SplitnnError("--emulate-nodes does not run a reuse plan (the plan predicts no time for each reuse "
                           "phase): partition without --reuse, or drop --emulate-nodes")
    if plan.predicted is None:
        raise SplitnnError("this tile plan holds no predictions to emulate its nodes by: partition it again")


def _refused_at_once(scheduler: str) -> None:
    """Raise OSError where a TCP scheduler's port answers with a refusal (nothing listens there): Dask's Client
    would retry it for its whole timeout. Any other outcome (it connects, or the host is slow) is left to Dask."""
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}")  # Dask's default protocol is TCP
    if where.scheme != "tcp" or where.hostname is None or where.port is None:
        return
    try:
        socket.create_connection((where.hostname, where.port), timeout=2.0).close()
    except ConnectionRefusedError:
        raise
    except OSError:
        return


@contextlib.contextmanager
def dask_client(workers: int, memory_limit_bytes: int | None, scheduler: str | None = None) -> Iterator[Any]:
    """A Dask client: on an embedded LocalCluster of `workers` single-thread processes, or on `scheduler`."""
    import warnings

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SplitnnError("tile runs need Dask distributed: pip install 'distributed'") from None
    # Each task carries its tiles' crops by design (they are the task's input): Dask's advice to load large data
    # on the workers does not apply, and its warning would only clutter the report.
    warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
    if scheduler is not None:
        try:
            _refused_at_once(scheduler)
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:  # ValueError: not an address at all
            raise SplitnnError(f"cannot reach the Dask scheduler at {scheduler} ({exc}): start `dask scheduler` there, "
                               "and `dask worker` on each board") from None
        with client:
            yield client
        return
    import dask

    # Tile tasks have no dependencies, so the scheduler would hold them back and hand each worker one at a
    # time; every tile is wanted now, so they all go out at once and idle workers steal. Dask's sampling
    # profiler (every 10 ms in each worker) is off: a board has one or two cores, all of them for the tiles.
    with dask.config.set({"distributed.scheduler.worker-saturation": float("inf"),
                          "distributed.worker.profile.enabled": False}):
        try:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   memory_limit=memory_limit_bytes or "auto", dashboard_address=None, silence_logs=50)
        except RuntimeError as exc:  # a worker process that could not start ("Nanny failed to start")
            raise SplitnnError(f"Dask could not start its local workers ({exc}): a Python script that runs a tile plan "
                               "must do so under `if __name__ == \"__main__\":`, because each worker is a new Python "
                               "process that imports the script") from None
        with cluster, Client(cluster) as client:
            yield client


def _slice_model(model: bytes) -> bytes:
    """A Dask task whose result is a slice's graph and weights, held by the worker that ran it."""
    return model


def place_slices(client: Any, program: TileProgram, workers: list[str]) -> dict[tuple[int, int], Any]:
    """Put slice i of each split layer on worker i: each node holds only its slice of the weights.

    Each slice is the result of a task rather than scattered data: when its
    worker is lost, the scheduler runs the task again on another worker
    (the restriction is loose), where scattered data would be gone for good.
    The slice's bytes stay in the task's spec on the scheduler, which is on
    the client's machine, not on a board.
    """
    import warnings

    handles = {}
    with warnings.catch_warnings():  # Dask suggests scattering large arguments instead: that is what loses them
        warnings.filterwarnings("ignore", message=".*[Ll]arge .*graph.*", category=UserWarning)
        for (number, i), model in program.slices.items():
            handles[(number, i)] = client.submit(_slice_model, model, key=f"splitnn-slice-{number}-{i}-{program.key}",
                                                 workers=[workers[i % len(workers)]], allow_other_workers=True)
    return handles


def _slice_runner(client: Any, plugin_name: str, handles: dict[tuple[int, int], Any], workers: list[str],
                  seconds: list[float]) -> Callable[..., list[np.ndarray]]:
    """run_slices for TileProgram.finish: each slice of a split layer as a task where its weights are; each split
    layer's time, from sending its slices to having them all back, is added to `seconds`."""
    def run(number: int, step: SlicedStep, x: np.ndarray) -> list[np.ndarray]:
        start = time.perf_counter()
        futures = [client.submit(run_slice, plugin_name, f"{number}:{i}", handles[(number, i)], x, workers=workers,
                                 allow_other_workers=False, pure=False) for i in range(len(step.slices))]
        parts = client.gather(futures)
        seconds.append(time.perf_counter() - start)
        return parts
    return run


def _retried(client: Any, keys: list[Any]) -> int:
    """How many of the tasks `keys` the scheduler re-ran because a worker died while running them."""
    def count(dask_scheduler: Any, keys: list[Any]) -> int:
        return sum(1 for key in keys if key in dask_scheduler.tasks and dask_scheduler.tasks[key].suspicious)
    return int(client.run_on_scheduler(count, keys=keys))


# How a later stack's tiles get their inputs (issue 16, item 3; issue 31). "client" (the default): the client
# gathers and stitches each stack's output and sends the next stack's crops out. "workers": each task of a stack
# depends on the earlier tasks whose cells its tiles read and cuts its inputs from their results, which Dask moves
# from worker to worker; the client waits only where a squeeze-and-excitation step needs the workers' sums of a
# map, and fetches at the end the results that hold the maps the remainder reads (_through_workers). It is kept
# for clusters whose client sits behind a slower link than the workers' (what each measured:
# docs/measurements.md, the hand-off between stacks).
HANDOFFS = ("client", "workers")


def run_tiled_image(client: Any, program: TileProgram, plugins: list[str], feeds: dict[str, np.ndarray],
                    workers: list[str], slice_handles: dict[tuple[int, int], Any] | None = None,
                    after_first_tile: Callable[[str], Any] | None = None, tasks: int | None = None,
                    handoff: str = "client") -> ImageRun:
    """One image through the tiles of every stack on `workers` (`plugins`: register_program's names), then the
    remainder. `after_first_tile` is called with the worker of the first task once it is done, while the others
    are still out (the fault drill kills another worker there). `tasks`: how many Dask tasks the first stack's
    tiles travel in (tile_task_count's by default; as many as tiles: one each). `handoff`: see HANDOFFS."""
    if handoff not in HANDOFFS:
        raise SplitnnError(f"unknown hand-off '{handoff}': one of {', '.join(HANDOFFS)}")
    if handoff == "workers" and program.later and (program.reuse_tiles or any(s.reuse_tiles for s in program.later)):
        raise SplitnnError("--handoff workers does not run a reuse plan's stacks: use --handoff client")
    pool = dict(feeds)
    start = time.perf_counter()
    futures, tile_of = _submit_stack(client, program.tiles, program.reuse_tiles, plugins[0], pool, program.maps,
                                     workers, tasks, program.emulate_nodes)
    earlier: list[tuple[list[Any], dict[str, Any]]] = []  # stacks whose outputs stayed on the workers
    if program.later and handoff == "workers":
        phases, earlier = _through_workers(client, program, plugins, (futures, tile_of), workers, start,
                                           after_first_tile, pool)
        records: list[TileRun] = []
        futures = [f for stage, _ in earlier for f in stage]
    else:
        stitched, records = _stitch_results(futures, tile_of, program.maps, start, after_first_tile)
        pool.update(stitched)
        phases = [time.perf_counter() - start]
        for number, (later, plugin) in enumerate(zip(program.later, plugins[1:]), start=1):
            more = _run_stack(client, later, plugin, number, pool, workers, start, records, program)
            futures += more
            phases.append(time.perf_counter() - start - sum(phases))
    split_s: list[float] = []
    runner = _slice_runner(client, plugins[0], slice_handles, workers, split_s) if slice_handles else None
    outputs = program.finish(pool, runner)
    total = time.perf_counter() - start
    if earlier:  # fetched after the timing
        records += _earlier_records(client, earlier, list(itertools.accumulate(phases)))
    retried = _retried(client, [f.key for f in futures])  # while the scheduler still knows the tasks
    return ImageRun(outputs, sorted(records, key=lambda r: (r.stack, r.id)), phases, sum(phases), total, retried,
                    split_s)


def _stitch_results(futures: list[Any], tile_of: dict[str, Any], maps: StackMaps, start: float,
                    after_first_tile: Callable[[str], Any] | None = None, stack: int = 0
                    ) -> tuple[dict[str, np.ndarray], list[TileRun]]:
    """Stack number `stack`'s outputs, stitched on the client as its tasks complete (tile groups, or reuse's
    one-tile tasks), and its tiles' records."""
    from distributed import as_completed

    stitched: dict[str, np.ndarray] = {}
    records: list[TileRun] = []
    for future in as_completed(futures):
        output, seconds, worker = future.result()
        tiles = tile_of[future.key]
        if not isinstance(tiles, list):  # a reuse task: one tile, its cells and (first phase) every unit's output
            tiles, output, seconds = [tiles], [output[0]], [seconds]
        for tile, tile_outputs, tile_s in zip(tiles, output, seconds):
            maps.paste(stitched, tile, tile_outputs)
            records.append(TileRun(tile.id, worker, tile_s, time.perf_counter() - start, stack))
        if after_first_tile is not None and len(records) == len(tiles):
            after_first_tile(worker)
    return stitched, records


def _run_stack(client: Any, later: LaterStack, plugin: str, number: int, pool: dict[str, np.ndarray],
               workers: list[str], start: float, records: list[TileRun], program: TileProgram) -> list[Any]:
    """A later stack's tiles, cropped from the maps stitched before on the client (hand-off "client"), sent as the
    first stack's are, after its client step (on `program`'s sessions); its stitched outputs join `pool`, each
    tile's record is added to `records`. Returns the futures."""
    if later.client_step is not None:
        step_start = time.perf_counter()
        run_steps([later.client_step], pool, program.session_of)
        hold_until(step_start, later.client_step_s)
    futures, tile_of = _submit_stack(client, later.tiles, later.reuse_tiles, plugin, pool, later.maps, workers,
                                     paced=program.emulate_nodes)
    stitched, mine = _stitch_results(futures, tile_of, later.maps, start, stack=number)
    pool.update(stitched)
    records += mine
    return futures


def _groups(tiles: tuple[Any, ...], workers: int, tasks: int | None = None) -> list[list[int]]:
    """The tiles (indices) as `tasks` groups of about equal predicted time (default: tile_task_count's)."""
    count = tasks if tasks is not None else tile_task_count(len(tiles), workers)
    return tile_groups([t.predicted_s for t in tiles], min(count, len(tiles)))


@dataclass
class HeldMap:
    """A stack's output map kept on the workers (hand-off "workers"): where each tile's cell of it lies."""

    shape: tuple[int, int, int, int]  # logical: N, C, H, W
    layout: str
    cells: list[tuple[Any, int, int, Region]]  # (its task's future, the tile's position in the task,
    # the output's position in the stack's outputs, the cell's region of the map)


def _held(stage: tuple[list[Any], dict[str, Any]], maps: StackMaps) -> dict[str, HeldMap]:
    """Every output map of a stack whose tasks are `stage`, as the workers hold it."""
    futures, tile_of = stage
    held = {name: HeldMap(shape, layout, []) for name, shape, layout in
            zip(maps.outputs, maps.output_shapes, maps.output_layouts)}
    for future in futures:
        for position, tile in enumerate(tile_of[future.key]):
            for output, (name, region) in enumerate(zip(maps.outputs, tile.output_regions or (tile.output_region,))):
                held[name].cells.append((future, position, output, _region(region)))
    return held


def _through_workers(client: Any, program: TileProgram, plugins: list[str], first: tuple[list[Any], dict[str, Any]],
                     workers: list[str], start: float, after_first_tile: Callable[[str], Any] | None,
                     pool: dict[str, np.ndarray]) -> tuple[list[float], list[tuple[list[Any], dict[str, Any]]]]:
    """Every later stack behind the first with the maps left on the workers (hand-off "workers"): a stack's tiles
    are assembled on the workers from the cells of the maps they read (only the parts they need travel), and the
    client waits only where it computes a squeeze-and-excitation vector (from the workers' sums of the map,
    _client_step_from_sums). The maps the remainder reads, or the model returns, are stitched into `pool` at the
    end. Returns each stack's phase and each stack's futures and their tiles."""
    stages = [first]
    held = _held(first, program.maps)
    done: list[float] = []
    for later, plugin in zip(program.later, plugins[1:]):
        if later.client_step is not None:
            done += _await_stages(client, [f for f, _ in stages[len(done):]], start,
                                  None if done else after_first_tile)
            _client_step_from_sums(client, program, later, held, pool)
        stages.append(_submit_from_held(client, later, plugin, pool, held, workers, program.emulate_nodes))
        held.update(_held(stages[-1], later.maps))
    done += _await_stages(client, [f for f, _ in stages[len(done):]], start, None if done else after_first_tile)
    wanted = {name for step in program.steps for name in (step.inputs if isinstance(step, PartStep) else (step.input,))}
    pool.update(_stitch_held(client, held, (wanted | set(program.plan.outputs)) - set(pool)))
    return [done[0]] + [max(b - a, 0.0) for a, b in zip(done, done[1:])], stages


def _submit_from_held(client: Any, later: LaterStack, plugin: str, pool: dict[str, np.ndarray],
                      held: dict[str, HeldMap], workers: list[str], paced: bool) -> tuple[list[Any], dict[str, Any]]:
    """A later stack's tiles as tasks of about equal predicted time, each reading its inputs' crops from `pool`
    (what the client holds) or the cells of the held maps it needs: Dask hands it the results of the tasks that
    hold them (whole: a task to cut out only the pieces needed costs one more scheduler hop, which measured
    slower on emulated boards; docs/measurements.md, tiles)."""
    groups = _groups(later.tiles, len(workers))
    futures = []
    for group in groups:
        holders: dict[str, Any] = {}  # the tasks whose results this one reads, by key
        inputs: list[list[Any]] = []
        for i in group:
            tile = later.tiles[i]
            inputs.append([])
            for name, layout, region in zip(later.maps.inputs, later.maps.input_layouts,
                                            tile.input_regions or (tile.input_region,)):
                if name in pool:
                    inputs[-1].append(crop(pool[name], region, layout))
                    continue
                refs = []
                for future, position, output, cell in held[name].cells:
                    if _overlaps(_region(region), cell):
                        holders.setdefault(future.key, future)
                        refs.append((cell, list(holders).index(future.key), position, output))
                inputs[-1].append((_region(region), layout, refs))
        targets = [later.tiles[i].predicted_s for i in group] if paced else None
        futures.append(client.submit(run_tile_group_from, plugin, [later.tiles[i].id for i in group], inputs,
                                     targets, *holders.values(), workers=workers, allow_other_workers=False, pure=False))
    return futures, {f.key: [later.tiles[i] for i in g] for f, g in zip(futures, groups)}


def _client_step_from_sums(client: Any, program: TileProgram, later: LaterStack, held: dict[str, HeldMap],
                           pool: dict[str, np.ndarray]) -> None:
    """A later stack's client step (a squeeze-and-excitation vector) into `pool`: from the sums of its maps' cells
    on the workers where the step only takes their means (pooled_step), else from the maps stitched here."""
    step = later.client_step
    assert step is not None
    step_start = time.perf_counter()
    maps = {name: held[name].layout for name in step.inputs if name in held and name not in pool}
    pooled = program.pooled_step(step, maps)
    if pooled is None:
        pool.update(_stitch_held(client, held, set(maps)))
        run_steps([step], pool, program.session_of)
    else:
        feeds = {name: pool[name] for name in step.inputs if name not in maps}
        for name, mean_inputs in pooled[1].items():
            cells = held[name].cells
            by_future: dict[str, tuple[Any, list[tuple[int, int, str]]]] = {}
            for future, position, output, _ in cells:
                by_future.setdefault(future.key, (future, []))[1].append((position, output, held[name].layout))
            sums = client.gather([client.submit(map_sums, f, wanted, pure=False) for f, wanted in by_future.values()])
            _, _, h, w = held[name].shape
            mean = mean_of(sums, h * w, pooled[2][name], held[name].layout)
            feeds.update({mean_input: mean for mean_input in mean_inputs})
        session = pooled[0]
        pool.update(zip(step.outputs, session.run(list(step.outputs), feeds)))
    hold_until(step_start, later.client_step_s)


def _stitch_held(client: Any, held: dict[str, HeldMap], names: set[str]) -> dict[str, np.ndarray]:
    """The held maps `names` (those held), stitched here from their cells."""
    names = {name for name in names if name in held}
    futures = {future.key: future for name in names for future, _, _, _ in held[name].cells}
    results = dict(zip(futures, client.gather(list(futures.values()))))
    stitched: dict[str, np.ndarray] = {}
    for name in names:
        entry = held[name]
        for future, position, output, cell in entry.cells:
            value = results[future.key][0][position][output]
            if name not in stitched:
                stitched[name] = np.empty(in_memory(entry.shape, entry.layout), dtype=value.dtype)
            paste(stitched[name], cell, value, entry.layout)
    return stitched


def _region(region: Any) -> Region:
    y0, y1, x0, x1 = region
    return (y0, y1, x0, x1)


def _overlaps(a: Region, b: Region) -> bool:
    return max(a[0], b[0]) < min(a[1], b[1]) and max(a[2], b[2]) < min(a[3], b[3])


def _await_stages(client: Any, stages: list[list[Any]], start: float,
                  after_first_tile: Callable[[str], Any] | None) -> list[float]:
    """When each stage's last task was done, since `start`, as the scheduler tells the client (no result is
    fetched); the first stage's first done task calls `after_first_tile` with its worker."""
    from distributed import as_completed

    stage_of = {f.key: k for k, futures in enumerate(stages) for f in futures}
    left = [len(futures) for futures in stages]
    done = [0.0] * len(stages)
    for future in as_completed([f for futures in stages for f in futures]):
        k = stage_of[future.key]
        if after_first_tile is not None and k == 0 and left[0] == len(stages[0]):
            holders = client.who_has([future]).get(future.key) or ()
            after_first_tile(next(iter(holders), ""))
        left[k] -= 1
        if not left[k]:
            done[k] = time.perf_counter() - start
    return done


def _earlier_records(client: Any, stages: list[tuple[list[Any], dict[str, Any]]], done: list[float]) -> list[TileRun]:
    """The records of the stacks whose results the client never fetched (all but the last, hand-off "workers"),
    fetched without the outputs; a tile's done_s is its stack's."""
    futures = [f for futures, _ in stages for f in futures]
    metas = dict(zip((f.key for f in futures), client.gather(client.map(times_and_worker, futures, pure=False))))
    return [TileRun(tile.id, metas[f.key][1], seconds, done[number], number)
            for number, (futures, tile_of) in enumerate(stages) for f in futures
            for tile, seconds in zip(tile_of[f.key], metas[f.key][0])]


def tile_task_count(tiles: int, workers: int) -> int:
    """How many tasks a tiles phase is sent as: one per worker, each the tiles the planner's makespan deals to
    one node (longest first, tile_groups). Every Dask task costs a scheduler round trip and client CPU on the
    client's machine, so fewer, larger tasks scale better (one task per tile, two per worker and one per worker
    measured: docs/measurements.md, tiles). The scheduler still steals a whole group that a busy worker has not
    begun, and re-runs a lost worker's group."""
    return min(tiles, workers)


def _submit_stack(client: Any, tiles: tuple[Any, ...], reuse_tiles: dict[int, ReuseTile], plugin_name: str,
                  pool: dict[str, np.ndarray], maps: StackMaps, workers: list[str], tasks: int | None = None,
                  paced: bool = False) -> tuple[list[Any], dict[str, Any]]:
    """A stack's tiles sent out, cropped from the maps in `pool`: with reuse (`reuse_tiles`), its two phases; else
    as groups (_submit_groups)."""
    if reuse_tiles:
        return _submit_with_reuse(client, tiles, reuse_tiles, plugin_name, pool, maps, workers)
    return _submit_groups(client, tiles, plugin_name, pool, maps, workers, tasks, paced)


def _submit_groups(client: Any, tiles: tuple[Any, ...], plugin_name: str, pool: dict[str, np.ndarray],
                   maps: StackMaps, workers: list[str], tasks: int | None = None, paced: bool = False
                   ) -> tuple[list[Any], dict[str, Any]]:
    """A stack's tiles, cropped from the maps in `pool` (the image, and the maps stitched before), as Dask tasks of
    about equal predicted time (_groups); `paced`: each tile held to its predicted time (emulated nodes)."""
    regions = [maps.crops(t, pool) for t in tiles]
    groups = _groups(tiles, len(workers), tasks)
    targets = [[tiles[i].predicted_s for i in g] if paced else None for g in groups]
    futures = client.map(run_tile_group, [plugin_name] * len(groups), [[tiles[i].id for i in g] for g in groups],
                         [[regions[i] for i in g] for g in groups], targets, workers=workers, allow_other_workers=False,
                         pure=False)
    return futures, {f.key: [tiles[i] for i in group] for f, group in zip(futures, groups)}


def _submit_with_reuse(client: Any, tiles: tuple[Any, ...], reuse_tiles: dict[int, ReuseTile], plugin_name: str,
                       pool: dict[str, np.ndarray], maps: StackMaps, workers: list[str]) -> tuple[list[Any], dict[str, Any]]:
    """Reuse, one stack: first-phase tiles at once, then each second-phase tile once its neighbours are done (Dask
    passes their results to it)."""
    from splitnn.onnxsplit.tiles.reuse import second_phase_crops

    futures, tile_of, first = [], {}, {}
    for tile in tiles:
        record = reuse_tiles[tile.id]
        if not record.first_phase:
            continue
        future = client.submit(run_first_phase, plugin_name, record, dict(zip(maps.inputs, maps.crops(tile, pool))),
                               workers=workers, allow_other_workers=False, pure=False)
        first[tile.id] = future
        futures.append(future)
        tile_of[future.key] = tile
    for tile in tiles:
        record = reuse_tiles[tile.id]
        if record.first_phase:
            continue
        near = {int(n): first[int(n)] for n in record.neighbours}
        future = client.submit(run_second, plugin_name, record, second_phase_crops(record, pool), near, workers=workers,
                               allow_other_workers=False, pure=False)
        futures.append(future)
        tile_of[future.key] = tile
    return futures, tile_of
