"""`run-bench` for a tile plan: the tiles (or whole images) on Dask, timed by worker count.

The report: per worker count the median wall time of an image and of its tile
phase, the speedup over one worker, which worker ran each tile, tasks re-run
after a lost worker (the fault drill kills one), each worker's memory growth
against the plan's per-node budget, and whether the outputs match the
original model's (kept in the plan folder). `--data-parallel` spreads whole
images instead and gives the seed's table of time by image count and workers.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.artifacts.bench_inputs import inputs_and_reference, plan_feeds
from splitnn.onnxsplit.artifacts.plan_file import TilePlanFile
from splitnn.onnxsplit.measure.tile_report import (
    ScalingRow,
    TableRow,
    TaskRun,
    TileBenchReport,
    WorkerMemory,
    WorkerUss,
)
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.tiles.dask_runtime import (
    RUNTIME_ALLOWANCE_BYTES,
    TileProgram,
    TileRun,
    dask_client,
    place_slices,
    register_program,
    run_tiled_image,
)
from splitnn.onnxsplit.tiles.dask_tasks import SessionsPlugin, register_plugin, run_whole


@dataclass
class TileBenchOptions:
    workers: int | None = None  # default: the plan's node count
    scheduler: str | None = None  # an existing Dask scheduler; None: an embedded LocalCluster
    images: int = 5  # timed images per worker count (after one warm-up image)
    scaling: bool = True  # also time 1..N-1 workers
    data_parallel: bool = False  # whole images spread over the workers instead of tiles
    seed: int = 0
    # Fault drill: kill one worker this long after the first tile of the first timed image is back (0: at once,
    # while the other tiles are still out: the same point in every run).
    kill_worker_after_s: float | None = None
    # How a later stack gets the previous one's output: dask_runtime.HANDOFFS ("workers": worker to worker)
    handoff: str = "client"
    # Each node takes the time the plan predicts on its node profile (TileProgram's emulate_nodes): boards slower
    # than this host, emulated on its cores
    emulate_nodes: bool = False


class _WorkerKill:
    """The fault drill: end a local worker's process abruptly, as a crash would (its nanny starts a new one), and
    tell whether it really died."""

    def __init__(self, pids: dict[str, int], delay_s: float) -> None:
        self.pids, self.delay_s = pids, delay_s  # every worker's process, by address
        self.pid = 0
        self.timer: threading.Timer | None = None

    def __call__(self, returned_by: str) -> None:  # called when the first task is back, with its worker
        # Another worker than the one that just answered: the one with tiles still out (tiles travel one task
        # per worker), so the scheduler has work to hand on.
        others = sorted(address for address in self.pids if address != returned_by) or sorted(self.pids)
        self.pid = self.pids[others[0]]
        self.timer = threading.Timer(self.delay_s, self._kill)
        self.timer.start()

    def _kill(self) -> None:
        import os
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def died(self, wait_s: float = 10.0) -> bool:
        """Whether the worker's process is gone (waited for up to `wait_s`); False if the drill never fired."""
        import psutil  # a dependency of Dask distributed

        if self.timer is None:
            return False
        self.timer.join()
        try:
            psutil.Process(self.pid).wait(wait_s)
        except psutil.NoSuchProcess:
            return True
        except psutil.TimeoutExpired:
            return False
        return True


def run_tile_bench(outdir: str | Path, options: TileBenchOptions,
                   progress: Callable[[str, int, int], None] | None = None) -> TileBenchReport:
    """Time the tile plan in `outdir` on Dask (see the module doc); returns the report."""
    program = TileProgram(outdir, options.emulate_nodes)
    plan = program.plan
    nodes = options.workers or plan.nodes
    feeds, reference = inputs_and_reference(outdir, plan, options.seed)
    # Each worker may use the node's usable RAM for the plan's share, plus what the interpreter, Dask and
    # onnxruntime themselves take; past that, Dask's nanny restarts it.
    memory = plan.node_profile.usable_ram_bytes + RUNTIME_ALLOWANCE_BYTES

    def tick(stage: str, total: int) -> Callable[[int], None]:
        return (lambda done: progress(stage, done, total)) if progress else (lambda done: None)

    if options.kill_worker_after_s is not None and options.scheduler is not None:
        raise SplitnnError("the worker-kill drill runs on the embedded local cluster only: drop --scheduler")
    with dask_client(nodes, memory, options.scheduler) as client:
        available = sorted(client.scheduler_info()["workers"])
        if not available:
            raise SplitnnError("the Dask cluster has no workers: start `dask worker` on the boards")
        nodes = min(nodes, len(available)) if options.scheduler else nodes
        counts = list(range(1, nodes + 1)) if options.scaling else [nodes]
        if options.data_parallel:
            return _data_parallel(client, program, available, counts, options, (feeds, reference), tick)
        uss_before = client.run(_process_uss, workers=available)
        plugins = register_program(client, program)
        handles = place_slices(client, program, available)
        runs = [_time_workers(client, program, plugins, handles, available[:n], feeds, options,
                              drill=n == counts[-1], tick=tick) for n in counts]
        uss_after = client.run(_process_uss)

    scaling = _with_speedups([run.row for run in runs])
    match, max_err = _compare(runs[-1].outputs, reference, plan)
    top = scaling[-1]
    assert top.tiles_phase_s is not None  # _with_speedups gives every tile run's row its tiles phase
    return TileBenchReport(
        plan=str(outdir), mode="tiles", scheduler=options.scheduler or "embedded LocalCluster",
        workers=top.workers, images=options.images, makespan_s=top.tiles_phase_s, wall_s=top.wall_s,
        speedup=top.speedup, scaling=tuple(scaling),
        tiles=tuple(TaskRun(r.id, r.worker, r.seconds, r.done_s, r.stack) for r in runs[-1].records),
        retries=sum(run.retries for run in runs), workers_killed=sum(run.killed for run in runs),
        outputs_match=match, max_abs_err=max_err,
        grid=plan.grid, stack_labels=stack_labels(plan), tiles_speedup=top.tiles_speedup, redundant_macs_ratio=plan.redundant_macs_ratio,
        reuse={k: v for k, v in plan.reuse.to_dict().items() if k != "tiles"}, neuron_splits=plan.neuron_splits,
        predicted=plan.predicted, memory=worker_memory(uss_before, uss_after, plan.memory.node_bytes, memory),
        emulated_nodes=plan.node_profile.name if options.emulate_nodes else None,
        host_slower_tiles=_host_slower(runs[-1].records, plan) if options.emulate_nodes else 0, plan_nodes=plan.nodes,
    )


def _host_slower(records: list[TileRun], plan: TilePlanFile) -> int:
    """How many tiles of an emulated run took longer than their predicted time (this host was slower than the node
    there, so they ran at its own speed)."""
    predicted = {(number, tile.id): tile.predicted_s for number, stack in enumerate(plan.all_stacks)
                 for tile in stack.tiles}
    return sum(1 for r in records if r.seconds > predicted[(r.stack, r.id)] * 1.02 + 1e-3)


def stack_labels(plan: Any) -> tuple[str, ...]:
    """Each stack of a tile plan file as its grid and last tensor ("3x3 to maxpool3_out")."""
    return tuple(f"{s.grid.rows}x{s.grid.cols} to {s.fuse_until}" + (f" (+{len(s.output_names) - 1} maps)"
                                                                        if len(s.output_names) > 1 else "")
                 for s in plan.all_stacks)


def _with_speedups(rows: list[dict[str, Any]]) -> list[ScalingRow]:
    """Each row's speedup over the first (one worker), for the whole image and for the tiles phase."""
    base = rows[0]
    return [ScalingRow(workers=row["workers"], wall_s=row["wall_s"], speedup=base["wall_s"] / row["wall_s"],
                       tiles_phase_s=row["tiles_phase_s"], tiles_speedup=base["tiles_phase_s"] / row["tiles_phase_s"],
                       client_cpu_s=row["client_cpu_s"], stack_phases_s=row["stack_phases_s"],
                       stack_speedups=tuple(b / s for b, s in zip(base["stack_phases_s"], row["stack_phases_s"])),
                       remainder_s=row["remainder_s"], remainder_speedup=base["remainder_s"] / row["remainder_s"] if row["remainder_s"] > 0 else None,
                       split_layers_s=row["split_layers_s"],
                       split_layer_speedups=tuple(b / s for b, s in zip(base["split_layers_s"], row["split_layers_s"])))
            for row in rows]


@dataclass
class _WorkerCountRun:
    """The images timed on one worker count."""

    row: dict[str, Any]  # workers; medians of wall_s, tiles_phase_s, stack_phases_s, remainder_s, client_cpu_s
    outputs: dict[str, np.ndarray]  # of the last image
    records: list[TileRun]  # of the last image
    retries: int
    killed: int


def _time_workers(client: Any, program: TileProgram, plugins: list[str], handles: dict[tuple[int, int], Any],
                  workers: list[str], feeds: dict[str, np.ndarray], options: TileBenchOptions, drill: bool,
                  tick: Callable[[str, int], Callable[[int], None]]) -> _WorkerCountRun:
    """`options.images` images on `workers` after a warm-up; with `drill`, the fault drill on the first image."""
    import os

    n = len(workers)
    run_tiled_image(client, program, plugins, feeds, workers, handles, handoff=options.handoff)  # warm-up
    images: list[Any] = []
    cpus = []
    retries = killed = 0
    step = tick(f"{n} worker{'s' if n > 1 else ''}", options.images)
    for i in range(options.images):
        kill = None
        if drill and options.kill_worker_after_s is not None and i == 0:
            kill = _WorkerKill(client.run(os.getpid, workers=workers), options.kill_worker_after_s)
        # The drill's image sends one tile per task, so that the other worker surely has tiles queued when the
        # first comes back (one group per worker would finish at about the same time: nothing left to re-run).
        cpu_start = time.process_time()  # this process: the client, and the embedded cluster's scheduler
        image = run_tiled_image(client, program, plugins, feeds, workers, handles, after_first_tile=kill,
                                tasks=len(program.tiles) if kill is not None else None, handoff=options.handoff)
        cpus.append(time.process_time() - cpu_start)
        images.append(image)
        if kill is not None:
            killed += kill.died()
            # The dead worker's replacement has a new address: use whoever is there now.
            workers = sorted(client.scheduler_info()["workers"])[:n]
        retries += image.retried
        step(i + 1)
    row = {"workers": n, "wall_s": statistics.median(r.total_s for r in images),
           "tiles_phase_s": statistics.median(r.tiles_phase_s for r in images),
           "stack_phases_s": tuple(map(statistics.median, zip(*(r.stack_phases_s for r in images)))),
           "remainder_s": statistics.median(r.total_s - r.tiles_phase_s for r in images),
           "split_layers_s": tuple(map(statistics.median, zip(*(r.split_layers_s for r in images)))),
           "client_cpu_s": statistics.median(cpus)}
    return _WorkerCountRun(row, images[-1].outputs, images[-1].records, retries, killed)


def _process_uss() -> int:
    """This process's unique memory (run on each worker by client.run).

    Unique set size: resident pages no other process maps. Unlike RSS it
    leaves out the pages of onnxruntime's shared library that the first
    inference touches (about 60 MB here), which are code, not the plan's share.
    onnxruntime is imported first: the runtime itself is in the allowance that
    every worker gets beyond the plan's share, like the interpreter and Dask.
    """
    import onnxruntime  # noqa: F401
    import psutil  # a dependency of Dask distributed

    return int(psutil.Process().memory_full_info().uss)


def worker_memory(before: dict[str, int], after: dict[str, int], planned_bytes: int, limit_bytes: int) -> WorkerMemory:
    """Each worker's unique memory (USS) before the plan's sessions were built and after the runs.

    The growth is what the plan's share took on that node; the plan budgeted
    `planned_bytes` for the tiles (stack weights + the largest tile's
    activations). The slices of split layers placed on a worker come on top.
    A worker that replaced a lost one has no "before".
    """
    workers = tuple(WorkerUss(address, before.get(address), uss, uss - before[address] if address in before else None)
                    for address, uss in sorted(after.items()))
    growths = [w.growth_bytes for w in workers if w.growth_bytes is not None]
    return WorkerMemory(planned_bytes, limit_bytes, workers, max(growths) if growths else None)


def _compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None,
             plan: TilePlanFile) -> tuple[bool | None, float | None]:
    from splitnn.onnxsplit.artifacts.verification import compare_outputs

    if reference is None or not outputs:
        return None, None
    max_err, match = compare_outputs(outputs, reference, plan.verification.atol, plan.verification.rtol)
    return match, max_err


def image_counts(images: int) -> list[int]:
    """The image counts of the data-parallel table: a quarter, a half and all of `images` (distinct, from 1)."""
    return sorted({max(1, images // 4), max(1, images // 2), images})


def _data_parallel(client: Any, program: TileProgram, available: list[str], counts: list[int],
                   options: TileBenchOptions,
                   checked: tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None], tick: Callable[[str, int], Any]) -> TileBenchReport:
    """Whole images spread over the workers: the time for a quarter, half and all of `options.images`
    images on each worker count (the seed experiment's table of time by image count and node count)."""
    from distributed import wait

    if not program.model_path.is_file():
        raise SplitnnError(f"the plan's model '{program.model_path}' is gone: data parallelism runs the whole model")
    plugin = register_plugin(client, SessionsPlugin(f"splitnn-whole-{program.key}", {0: program.model_path.read_bytes()}))
    first, reference = checked  # the first image is the one whose reference outputs are known
    images = [first] + [plan_feeds(program.plan, options.seed + i) for i in range(1, options.images)]
    table: list[TableRow] = []
    per_image: list[dict[str, Any]] = []
    first_outputs: dict[str, np.ndarray] = {}
    for n in counts:
        workers = available[:n]
        target = program.plan.predicted.single_node_s if options.emulate_nodes and program.plan.predicted else None
        wait([client.submit(run_whole, plugin, images[0], workers=[w], pure=False) for w in workers])  # warm-up
        for count in image_counts(options.images):
            step = tick(f"{count} images on {n} worker{'s' if n > 1 else ''}", count)
            start = time.perf_counter()
            futures = [client.submit(run_whole, plugin, feeds, target, workers=workers, allow_other_workers=False,
                                     pure=False) for feeds in images[:count]]
            per_image = []
            for index, future in enumerate(futures):
                outputs, seconds, worker = future.result()
                step(index + 1)
                per_image.append({"id": index, "worker": worker, "seconds": seconds})
                if index == 0:
                    first_outputs = outputs
            table.append(TableRow(workers=n, images=count, wall_s=time.perf_counter() - start))
    base = next(row.wall_s for row in table if row.images == options.images)
    scaling = [ScalingRow(workers=row.workers, wall_s=row.wall_s, speedup=base / row.wall_s,
                          images=row.images, images_per_s=options.images / row.wall_s)
               for row in table if row.images == options.images]
    match, max_err = _compare(first_outputs, reference, program.plan)  # images[0] is the reference input
    return TileBenchReport(
        plan=str(program.folder), mode="data-parallel", scheduler=options.scheduler or "embedded LocalCluster",
        workers=scaling[-1].workers, images=options.images, makespan_s=scaling[-1].wall_s, wall_s=scaling[-1].wall_s,
        speedup=scaling[-1].speedup, scaling=tuple(scaling),
        tiles=tuple(TaskRun(**run) for run in per_image),
        retries=0, workers_killed=0,  # not tracked for whole images
        outputs_match=match, max_abs_err=max_err, table=tuple(table),
        emulated_nodes=program.plan.node_profile.name if options.emulate_nodes else None,
    )
