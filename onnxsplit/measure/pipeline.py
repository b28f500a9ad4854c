"""`run-bench` for a pipeline plan: every stage on this machine, each machine and each link emulated (issue 33, 5).

Each stage after the first is a process (`python -m splitnn.onnxsplit.runtime.stage`) whose part is held to its
predicted time on its machine's profile; the source runs the first stage here, held the same way. Every hop goes
through a user-space link relay (runtime/link_emulator.py) with its link's rate each way and half its round trip
each way, and the answer returns to the source over the relays of its route. Boards are slower than this host, so
four stages fit on two cores; a stage this host runs slower than its prediction takes this host's time, and the
report says so.

Measured: one request at a time (latency, p50 and p95), and with `stream` the same number of requests sent as
fast as the source's stage runs them (frames per second once the pipeline is full: steady_fps). Each frame carries
the time each stage had it, had run its part and sent it (runtime/stage.py's TIMES), so every stage's and every
hop's median share stands beside its prediction.
"""
from __future__ import annotations

import contextlib
import dataclasses
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitnn.onnxsplit.artifacts.bench_inputs import inputs_and_reference
from splitnn.onnxsplit.artifacts.pipeline_records import Hop
from splitnn.onnxsplit.artifacts.plan_file import PipelinePlanFile, read_pipeline_plan
from splitnn.onnxsplit.artifacts.verification import compare_outputs
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.pacing import hold_until
from splitnn.onnxsplit.core.records import Record
from splitnn.onnxsplit.measure.vertical import end_process
from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, LinkSettings
from splitnn.onnxsplit.runtime.stage import TIMES, StageRunner
from splitnn.onnxsplit.runtime.wire import REQUEST, ConnectionClosed, Frame, ProtocolError, read_frame, send_frame


@dataclass(frozen=True)
class StageTiming(Record):
    machine: str
    predicted_s: float
    measured_s: float  # median over the requests
    host_slower: bool  # this host took longer than the prediction: the stage ran at its own speed


@dataclass(frozen=True)
class HopTiming(Record):
    sender: str
    receiver: str
    bytes: int
    predicted_s: float
    measured_s: float  # median: from the sender's send to the receiver having the frame (decoded)


@dataclass(frozen=True)
class DropReport(Record):
    """A stage killed mid-stream (run-bench --kill-stage): what became of every request of the stream."""

    stage: str  # the machine whose stage process was killed
    killed_after_answers: int  # answers of the stream in when it was killed
    requests: int
    answered: int  # sent into the stages and answered through them
    answered_alone: int  # answered by the source alone after the drop (--failover)
    failed: int  # sent into the stages and never answered (in flight when the stage died, or after)
    not_sent: int  # the chain refused them (a send failed): failed too, and known at once
    failed_after_drop: int  # offered after the source saw the stage gone and not answered (0 with failover)
    unaccounted: int  # requests in none of the above (the wait ended first): 0 unless one was lost silently
    failover: bool
    answered_replanned: int = 0  # answered through the stages of the plan made again over the machines left
    replanned: tuple[str, ...] = ()  # that plan's machines, in order (none: not re-planned)
    replan_s: float | None = None  # from the first request offered after the drop to that plan's stages running
    replan_error: str | None = None  # why no plan could be made or started over the machines left


@dataclass(frozen=True)
class BaselineRun(Record):
    """A baseline of a pipeline plan run beside it (measure/pipeline_baselines.py): its prediction and what it
    measured, as the plan's own run reports them."""

    name: str  # "two machines" or "source alone"
    machines: tuple[str, ...]
    predicted_latency_s: float
    predicted_fps: float
    latency_p50_s: float
    stream_fps: float | None
    run_predicted_latency_s: float | None
    run_predicted_fps: float | None
    outputs_match: bool | None


@dataclass(frozen=True)
class PipelineBenchReport(Record):
    plan: str
    requests: int
    machines: tuple[str, ...]
    predicted_latency_s: float
    latency_p50_s: float
    latency_p95_s: float
    predicted_fps: float
    stream_fps: float | None  # None: no stream was run
    stages: tuple[StageTiming, ...]
    hops: tuple[HopTiming, ...]  # the forward hops, then the answer's route as one
    outputs_match: bool | None
    max_abs_err: float | None
    # The prediction for this run: each stage at the slower of its prediction and this host's own time for it (a
    # stage this host cannot hold to its profile runs at the host's speed), and the stream bounded also by this
    # host's cores, which do every stage's real work.
    run_predicted_latency_s: float | None = None
    run_predicted_fps: float | None = None
    host_s: tuple[float, ...] = ()  # each stage's part on this host, one thread (median of 3), over the time scale
    drop: DropReport | None = None  # --kill-stage: the stream with a stage killed in its middle
    two_machines_predicted_latency_s: float | None = None
    two_machines_predicted_fps: float | None = None
    source_alone_predicted_s: float | None = None
    baselines: tuple[BaselineRun, ...] = ()  # run in the same bench, unless --no-baselines
    baselines_left_out: tuple[str, ...] = ()  # each baseline not run, and why
    time_scale: float = 1.0  # every time of the run was dilated by this (--time-scale); the figures are divided back


class _StageProcess:
    """A stage in a child process, listening on a free port of 127.0.0.1 and sending to `next_address`."""

    def __init__(self, folder: Path, machine: str, next_address: tuple[str, int], timeout_s: float = 120.0,
                 scale: float = 1.0) -> None:
        command = [sys.executable, "-m", "splitnn.onnxsplit.runtime.stage", str(folder), "--stage", machine,
                   "--next", f"{next_address[0]}:{next_address[1]}", "--port", "0", "--hold", "--scale", repr(scale)]
        # Its stderr goes to a file, read when it fails: a pipe nobody reads would block a stage that says much.
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.errors, text=True)
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line.startswith("listening "):
            self.close()
            raise SplitnnError(f"the stage process of '{machine}' did not start: {self.last_error() or 'no answer'}")
        self.machine = machine
        self.address = ("127.0.0.1", int(line.split()[-1]))

    def last_error(self) -> str:
        """The last line the process wrote on stderr ('' if none)."""
        self.errors.seek(0)
        lines = self.errors.read().strip().splitlines()
        return lines[-1] if lines else ""

    def close(self) -> None:
        end_process(self.process)


def hop_settings(plan: PipelinePlanFile, sender: str, receiver: str, scale: float = 1.0) -> LinkSettings:
    """The relay settings of the link from `sender` to `receiver`: each direction's rate, half the round trip (with
    `scale` K, the rates divided and the delay multiplied by K: the run's time dilated)."""
    for entry in plan.links:
        if {entry.a, entry.b} == {sender, receiver}:
            link = entry.link
            up, down = (link.uplink_bps, link.down_bps) if entry.a == sender else (link.down_bps, link.uplink_bps)
            return LinkSettings(uplink_bps=up / scale, downlink_bps=down / scale, delay_s=link.rtt_s / 2 * scale)
    raise SplitnnError(f"the plan has no link between '{sender}' and '{receiver}': partition again")


@contextlib.contextmanager
def _chain(folder: Path, plan: PipelinePlanFile, answers: tuple[str, int], scale: float = 1.0
           ) -> Iterator[tuple[tuple[str, int], dict[str, _StageProcess]]]:
    """Every stage after the first and every relay, started from the answer's end (every time dilated by `scale`);
    yields where the source sends, and each stage's process by machine."""
    processes: dict[str, _StageProcess] = {}
    with contextlib.ExitStack() as stack:
        entry = answers
        for hop in reversed(plan.reply):
            entry = stack.enter_context(LinkRelay(entry, hop_settings(plan, hop.sender, hop.receiver, scale))).address
        for number in range(len(plan.stages) - 1, 0, -1):
            process = _StageProcess(folder, plan.stages[number].machine, entry, scale=scale)
            processes[plan.stages[number].machine] = process
            stack.callback(process.close)
            hop = plan.hops[number - 1]
            settings = hop_settings(plan, hop.sender, hop.receiver, scale)
            entry = stack.enter_context(LinkRelay(process.address, settings)).address
        yield entry, processes


class _Answers:
    """The source's listener for answers: each request id's frame and when it arrived."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()[:2]
        self.arrived: dict[int, tuple[float, Frame]] = {}
        self.condition = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        """Every connection (the chain's, and after a re-plan the new chain's), each read in its own thread."""
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self.listener.accept()
                threading.Thread(target=self._read, args=(connection,), daemon=True).start()

    def _read(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError, ConnectionClosed, ProtocolError):
            while True:
                frame = read_frame(connection)
                with self.condition:
                    self.arrived[frame.request_id] = (time.time(), frame)
                    self.condition.notify_all()

    def wait(self, request_id: int, timeout_s: float) -> tuple[float, Frame]:
        with self.condition:
            if not self.condition.wait_for(lambda: request_id in self.arrived, timeout_s):
                raise SplitnnError(f"request {request_id} got no answer within {timeout_s:g} s: a stage is stuck or "
                                   "gone")
            return self.arrived[request_id]

    def close(self) -> None:
        self.listener.close()


def run_pipeline_bench(outdir: str | Path, requests: int = 20, stream: bool = False, timeout_s: float = 120.0,
                       progress: Callable[[str, int, int], None] | None = None, drop: str | None = None,
                       failover: bool = False, time_scale: float = 1.0) -> PipelineBenchReport:
    """Run the pipeline plan in `outdir` on this machine (see the module doc); returns the report. `drop`: the
    machine whose stage process is killed once half the stream is answered (`stream` needed); with `failover` the
    source answers the rest alone. `time_scale` K dilates every time of the run by K (each stage held to K times
    its prediction, each link K times slower and longer), so that a stage this host runs slower than its machine
    still keeps to it; the figures reported are divided back by K."""
    folder = Path(outdir)
    plan = read_pipeline_plan(folder)
    _check_run(folder, plan, stream, drop, failover, time_scale)
    alone = _source_alone(folder, plan, failover, time_scale)
    feeds, reference = inputs_and_reference(folder, plan)
    host = _host_seconds(folder, plan, feeds)
    source = StageRunner(folder, plan, plan.stages[0].machine, hold=True, scale=time_scale)
    answers = _Answers()
    wait_s = timeout_s * time_scale
    try:
        with contextlib.ExitStack() as later, _chain(folder, plan, answers.address, time_scale) as (entry, processes), \
                socket.create_connection(entry) as downstream:
            downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            downstream.settimeout(10.0 * time_scale)  # a send into a chain that stopped reading fails, not hangs
            send = _sender(source, downstream, len(plan.stages) == 1, answers)
            send(0, feeds)  # warm-up: every stage's first run
            answers.wait(0, wait_s)
            latencies, frames = [], []
            for i in range(1, requests + 1):
                start = time.time()
                send(i, feeds)
                arrived, frame = answers.wait(i, wait_s)
                latencies.append((arrived - start) / time_scale)
                frames.append((arrived, frame))
                if progress:
                    progress("one request at a time", i, requests)
            fill = len(plan.stages) + len(plan.hops) + len(plan.reply)
            fps = _stream(send, answers, feeds, requests, fill, wait_s, progress) * time_scale \
                if stream and drop is None else None
            dropped = None
            if drop is not None:
                latency, fps_here = _run_figures(plan, host, time_scale)
                replan = _Replanner(folder, plan, drop, answers, time_scale, later) if failover else None
                dropped = _stream_with_drop(send, answers, feeds, requests, (processes[drop], drop), (alone, replan),
                                            (time_scale / (fps_here or 1.0), (2 * latency + 2.0) * time_scale, wait_s))
    finally:
        answers.close()
    outputs = {name: frames[-1][1].tensors[name] for name in plan.outputs}
    match, max_err = (None, None) if reference is None else _compare(outputs, reference, plan)
    match = None if match is None else bool(match)
    report = _report(plan, str(outdir), requests, latencies, fps, frames, (match, max_err), time_scale)
    return dataclasses.replace(_with_run_prediction(report, plan, host, time_scale), drop=dropped)


def _check_run(folder: Path, plan: PipelinePlanFile, stream: bool, drop: str | None, failover: bool,
               time_scale: float) -> None:
    """The plan's files, and the run's options against it: one line for each kind of mistake."""
    plan.check_artifacts(folder, None)
    if (drop is not None or failover) and not stream:
        raise SplitnnError("--kill-stage and --failover drop a stage in the middle of a stream: add --stream")
    if drop is not None and drop not in [s.machine for s in plan.stages[1:]]:
        raise SplitnnError(f"--kill-stage '{drop}' names no stage process of this plan: use one of "
                           f"{', '.join(s.machine for s in plan.stages[1:]) or '(none: the source runs it all)'}")
    if not 1.0 <= time_scale <= MAX_TIME_SCALE:
        raise SplitnnError(f"--time-scale {time_scale:g} must be from 1 to {MAX_TIME_SCALE:g} (it slows every machine "
                           "and link of the run by that factor; this host cannot be made faster)")


def _source_alone(folder: Path, plan: PipelinePlanFile, failover: bool, scale: float = 1.0
                  ) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None:
    """--failover: the whole model on the source, held to its predicted time there (times `scale`); None without
    failover, or where the model does not fit the source."""
    if not failover:
        return None
    from splitnn.onnxsplit.artifacts.plan_file import model_path
    from splitnn.onnxsplit.core.ort_session import create_session

    if plan.source_alone is None:
        return None  # the model does not fit the source: the stream waits for the plan made again (_Replanner)
    model = model_path(folder, plan)
    if not model.is_file():
        raise SplitnnError(f"--failover: the source answers alone from the original model, and '{model}' is gone")
    session = create_session(model, threads=1, spin=False)
    hold_s = plan.source_alone.latency_s * scale

    def answer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        outputs = dict(zip(plan.outputs, session.run(list(plan.outputs), feeds)))
        hold_until(start, hold_s)
        return outputs

    return answer


class _Replanner:
    """--failover: once the drop is seen, the model planned again over the machines left (the dropped one and its
    links out), written to a temporary folder as partition writes it, and its stages started as the plan's were;
    then the rest of the stream goes through them. What it opens is closed with `stack` (the bench's), after the
    thread is done."""

    def __init__(self, folder: Path, plan: PipelinePlanFile, dropped: str, answers: _Answers, scale: float,
                 stack: contextlib.ExitStack) -> None:
        self.folder, self.plan, self.dropped, self.answers, self.scale = folder, plan, dropped, answers, scale
        self.ready = threading.Event()
        self.send: Callable[[int, dict[str, np.ndarray]], None] | None = None
        self.machines: tuple[str, ...] = ()
        self.seconds: float | None = None
        self.error: str | None = None
        self._lock = threading.Lock()
        self.started = False
        self.own = contextlib.ExitStack()  # what the thread opens: closed with `stack`, once the thread is done
        stack.callback(self._close)

    def _close(self) -> None:
        if self.started:
            self.ready.wait()  # writing and starting the stages ends within their own timeouts
        self.own.close()

    def start(self) -> None:
        with self._lock:
            if not self.started:
                self.started = True
                threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from splitnn.onnxsplit.pipeline.export import plan_model_analysis, write_like
        from splitnn.onnxsplit.pipeline.planning import choose_pipeline, plan_machines

        start = time.perf_counter()
        try:
            analysis = plan_model_analysis(self.folder, self.plan)
            machines = plan_machines(self.plan, without=self.dropped)
            best = choose_pipeline(analysis, machines, self.plan.objective).best
            folder = Path(self.own.enter_context(tempfile.TemporaryDirectory(prefix="splitnn-replan-"))) / "plan"
            again = write_like(analysis, best, machines, self.plan, folder)
            source = StageRunner(folder, again, again.stages[0].machine, hold=True, scale=self.scale)
            entry, _ = self.own.enter_context(_chain(folder, again, self.answers.address, self.scale))
            downstream = self.own.enter_context(socket.create_connection(entry))
            downstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            downstream.settimeout(10.0 * self.scale)  # as the plan's own: a send into a stuck chain fails
            self.send = _sender(source, downstream, len(again.stages) == 1, self.answers)
            self.machines = again.predicted.machines
        except Exception as exc:  # whatever stops the new plan is reported with the drill, not lost in a thread
            self.error = str(exc) or type(exc).__name__
        finally:
            self.seconds = time.perf_counter() - start
            self.ready.set()


def _stream_with_drop(send: Callable[[int, dict[str, np.ndarray]], None], answers: _Answers,
                      feeds: dict[str, np.ndarray], count: int, victim: tuple[_StageProcess, str],
                      failover: tuple[Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None,
                                      _Replanner | None],
                      limits: tuple[float, float, float]) -> DropReport:
    """A stream of `count` requests, offered one per `limits[0]` seconds (the rate this run can take, as a camera
    would), whose stage `victim` is killed once half are answered. Each request is followed on its own: answered
    through the stages, answered alone by the source or through the stages planned again over the machines left
    (`failover`: offered after the drop was seen; the source answers while the new stages start), sent and never
    answered (no answer within `limits[1]` seconds of the last one once the stage is gone), or never sent (the
    chain refused it). Whatever happens, the wait ends `limits[2]` seconds after the last news."""
    period_s, grace_s, timeout_s = limits
    ids = list(range(STREAM_IDS, STREAM_IDS + count))
    alone, replan = failover
    offer = _DropSender(send, answers, feeds, alone, replan, timeout_s)
    sender = threading.Thread(target=offer.run, args=(ids, period_s), daemon=True)
    sender.start()
    process, machine = victim
    killed_after, last_news, seen = None, time.time(), 0
    while True:
        with answers.condition:
            answers.condition.wait(0.05)
            done = {i for i in ids if i in answers.arrived}
        now = time.time()
        if len(done) > seen:
            seen, last_news = len(done), now
        if killed_after is None and len(done) >= count // 2:
            process.process.kill()
            killed_after, last_news = len(done), now
        if killed_after is not None and process.process.poll() is not None:
            offer.gone.set()
        settled = offer.gone.is_set() and not sender.is_alive() and now - last_news > grace_s
        if len(done) == count or settled or now - last_news > timeout_s:
            break
    sender.join(timeout=1)
    if replan is not None and replan.started:
        replan.ready.wait(timeout_s)
    through = len([i for i in offer.sent if i in done])
    replanned = len([i for i in offer.replanned if i in done])
    lost = len([i for i in offer.sent + offer.replanned if i not in done])
    alone_count, unsent = len(offer.by_source), len(offer.unsent)
    return DropReport(machine, killed_after or 0, count, through, alone_count, lost, unsent,
                      len([i for i in offer.after_drop if i not in done]),
                      count - through - replanned - alone_count - lost - unsent, alone is not None or replan is not None,
                      replanned, replan.machines if replan else (), replan.seconds if replan else None,
                      replan.error if replan else None)


class _DropSender:
    """The drill's stream, offered one request per period: into the stages, or once the drop is seen (`gone`) to the
    source alone where there is one; which way each request went is kept."""

    def __init__(self, send: Callable[[int, dict[str, np.ndarray]], None], answers: _Answers,
                 feeds: dict[str, np.ndarray], alone: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None,
                 replan: _Replanner | None = None, wait_s: float = 60.0) -> None:
        self.send, self.answers, self.feeds, self.alone = send, answers, feeds, alone
        self.replan, self.wait_s = replan, wait_s
        self.gone, self.broken = threading.Event(), threading.Event()
        self.sent: list[int] = []
        self.replanned: list[int] = []
        self.unsent: list[int] = []
        self.after_drop: list[int] = []
        self.by_source: list[int] = []

    def run(self, ids: list[int], period_s: float) -> None:
        start = time.perf_counter()
        for k, i in enumerate(ids):
            hold_until(start, k * period_s)
            if self.gone.is_set():
                self.after_drop.append(i)
            if self.gone.is_set() and self._through_new_plan(i):
                continue
            if self.gone.is_set() and self.alone is not None:
                outputs = self.alone(self.feeds)
                with self.answers.condition:
                    self.answers.arrived[i] = (time.time(), Frame(REQUEST, i, tensors=outputs))
                    self.answers.condition.notify_all()
                self.by_source.append(i)
                continue
            try:
                if self.broken.is_set():
                    raise OSError("the chain stopped taking frames")
                self.send(i, self.feeds)
                self.sent.append(i)
            except OSError:
                self.broken.set()
                self.unsent.append(i)

    def _through_new_plan(self, i: int) -> bool:
        """Request `i` sent through the stages planned again, once they run (the source, where it can, answers
        while they start); False where there are none."""
        if self.replan is None:
            return False
        self.replan.start()
        if not self.replan.ready.is_set() and self.alone is not None:
            return False
        self.replan.ready.wait(self.wait_s)
        if self.replan.send is None:
            return False
        try:
            self.replan.send(i, self.feeds)
        except OSError:
            return False
        self.replanned.append(i)
        return True


def _host_seconds(folder: Path, plan: PipelinePlanFile, feeds: dict[str, np.ndarray], runs: int = 3) -> list[float]:
    """Each stage's part on this host (one onnxruntime thread, as a stage process runs it), on the frame the stages
    before it make of `feeds`: the median of `runs` after a warm-up; 0 for a relay."""
    import statistics as stats

    frame, seconds = dict(feeds), []
    for stage in plan.stages:
        runner = StageRunner(folder, plan, stage.machine, hold=False)
        runner.run(frame)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            out = runner.run(frame)
            times.append(time.perf_counter() - start)
        seconds.append(stats.median(times) if runner.session is not None else 0.0)
        frame = {name: value for name, value in out.items() if name != TIMES}
    return seconds


def _with_run_prediction(report: PipelineBenchReport, plan: PipelinePlanFile, host: list[float],
                         scale: float = 1.0) -> PipelineBenchReport:
    """The report with the prediction for this run (see PipelineBenchReport.run_predicted_latency_s)."""
    latency, fps = _run_figures(plan, host, scale)
    return dataclasses.replace(report, run_predicted_latency_s=latency, run_predicted_fps=fps,
                               host_s=tuple(h / scale for h in host))


def _run_figures(plan: PipelinePlanFile, host: list[float], scale: float = 1.0) -> tuple[float, float | None]:
    """The latency and frames per second predicted for this run, in the plan's time (a run dilated by `scale`
    divided back): each stage at the slower of its prediction and this host's time `host` over `scale`, the stream
    bounded also by this host's cores."""
    import os

    stage_s = [max(s.compute_s, h / scale) for s, h in zip(plan.stages, host)]
    hops = [*plan.hops, *plan.reply]
    latency = sum(stage_s) + sum(h.seconds for h in hops)
    period = max([*stage_s, *(h.serialise_s for h in hops)])
    period = max(period, sum(host) / scale / (os.cpu_count() or 1))
    return latency, 1.0 / period if period else None


def _sender(source: StageRunner, downstream: socket.socket, alone: bool,
            answers: _Answers) -> Callable[[int, dict[str, np.ndarray]], None]:
    """Request `i`: the source's stage run here, its frame sent on (or, with the source alone, answered here)."""
    def send(i: int, feeds: dict[str, np.ndarray]) -> None:
        tensors = source.run(feeds)
        tensors[TIMES][-1, 2] = time.time()
        if alone:
            with answers.condition:
                answers.arrived[i] = (time.time(), Frame(REQUEST, i, tensors=tensors))
                answers.condition.notify_all()
            return
        send_frame(downstream, Frame(REQUEST, i, tensors=tensors))
    return send


def _stream(send: Callable[[int, dict[str, np.ndarray]], None], answers: _Answers, feeds: dict[str, np.ndarray],
            count: int, fill: int, timeout_s: float, progress: Callable[[str, int, int], None] | None) -> float:
    """`count` requests sent as fast as the source's stage runs them; frames per second once the pipeline is full
    (steady_fps, `fill` answers left out)."""
    ids = list(range(STREAM_IDS, STREAM_IDS + count))

    def send_all() -> None:
        for i in ids:
            send(i, feeds)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    times = []
    for done, i in enumerate(ids, start=1):
        times.append(answers.wait(i, timeout_s)[0])
        if progress:
            progress("streamed", done, count)
    sender.join()
    return steady_fps(times, fill)


def steady_fps(times: list[float], fill: int) -> float:
    """Frames per second from answer arrival `times` once the pipeline is full: the first `fill` answers (one per
    stage, while the stages fill) are left out where at least as many remain after them."""
    skip = fill if len(times) - fill >= max(fill, 2) else 0
    kept = times[skip:]
    return (len(kept) - 1) / (kept[-1] - kept[0]) if len(kept) > 1 and kept[-1] > kept[0] else float("nan")


MAX_TIME_SCALE = 100.0  # --time-scale: beyond this a run of a few requests takes hours
STREAM_IDS = 1_000_000  # the stream's request ids start here, after the one-at-a-time requests'


def _compare(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray],
             plan: PipelinePlanFile) -> tuple[bool, float]:
    max_err, match = compare_outputs(outputs, reference, plan.verification.atol, plan.verification.rtol)
    return match, max_err


def _report(plan: PipelinePlanFile, outdir: str, requests: int, latencies: list[float], fps: float | None,
            frames: list[tuple[float, Frame]], checked: tuple[bool | None, float | None],
            scale: float = 1.0) -> PipelineBenchReport:
    """Medians of every stage's and hop's share, from the frames' TIMES rows (divided by the run's time dilation
    `scale`), beside the plan's predictions."""
    rows = [np.asarray(frame.tensors[TIMES]) / scale for _, frame in frames]
    stages = []
    for k, s in enumerate(plan.stages):
        measured = float(statistics.median(r[k, 1] - r[k, 0] for r in rows))
        stages.append(StageTiming(s.machine, s.compute_s, measured, measured > s.compute_s * 1.05 + 1e-3))
    hops = [HopTiming(h.sender, h.receiver, h.bytes, h.seconds,
                      float(statistics.median(r[k + 1, 0] - r[k, 2] for r in rows))) for k, h in enumerate(plan.hops)]
    if plan.reply:
        back = float(statistics.median((arrived - np.asarray(frame.tensors[TIMES])[-1, 2]) / scale
                                       for arrived, frame in frames))
        hops.append(_answer_timing(plan.reply, back))
    p = plan.predicted
    return PipelineBenchReport(
        plan=outdir, requests=requests, machines=p.machines, predicted_latency_s=p.latency_s,
        latency_p50_s=float(np.percentile(latencies, 50)), latency_p95_s=float(np.percentile(latencies, 95)),
        predicted_fps=p.throughput_fps, stream_fps=fps, stages=tuple(stages), hops=tuple(hops), outputs_match=checked[0],
        max_abs_err=checked[1],
        two_machines_predicted_latency_s=plan.two_machines.latency_s if plan.two_machines else None,
        two_machines_predicted_fps=plan.two_machines.throughput_fps if plan.two_machines else None,
        source_alone_predicted_s=plan.source_alone.latency_s if plan.source_alone else None, time_scale=scale)


def _answer_timing(route: tuple[Hop, ...], measured_s: float) -> HopTiming:
    return HopTiming(route[0].sender, route[-1].receiver, route[0].bytes, sum(h.seconds for h in route), measured_s)
