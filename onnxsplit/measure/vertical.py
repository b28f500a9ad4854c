"""`run-bench` for a vertical split: server, link relay and device on this machine, timed request by request.

The server part runs in a child process (a real second process on the other
end of a TCP socket); the link relay and the device loop run in this one. The
report puts the measurement next to the plan's prediction, the physical bound
(device compute + bytes / bandwidth each way + round trip + server compute),
and two baselines measured under the same link: everything on the device
(the whole model, dilated like the device part) and everything on the server
(the raw input sent over the link).
"""
from __future__ import annotations

import select
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.cost_models.host import host_profile
from splitnn.cost_models.prediction import Prediction, pipelined_fps
from splitnn.cost_models.profiles import DeviceProfile
from splitnn.onnxsplit.artifacts.bench_inputs import inputs_and_reference, plan_feeds
from splitnn.onnxsplit.artifacts.plan_file import VerticalPlanFile, model_path
from splitnn.onnxsplit.measure.emulated_board import Calibration, calibrate
from splitnn.onnxsplit.measure.run_prediction import predict_run
from splitnn.onnxsplit.measure.split_report import (
    Baselines,
    BytesPerRequest,
    LinkReport,
    Percentiles,
    ServerOnlyStages,
    SlowdownReport,
    SplitBenchReport,
    StreamReport,
    Versus,
)
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart, RequestResult
from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, LinkSettings
from splitnn.onnxsplit.runtime.pipelining import StreamResult, stream_frames
from splitnn.onnxsplit.runtime.server import server_part_path
from splitnn.onnxsplit.runtime.tls import client_context, write_self_signed
from splitnn.onnxsplit.vertical.codec_check import same_top1

STAGES = ("device_s", "encode_s", "transfer_s", "server_s", "decode_s", "e2e_s")
BASELINE_REQUESTS = 10


def end_process(process: subprocess.Popen[str]) -> None:
    """Stop a child process the bench started: SIGTERM, then SIGKILL after 10 s; nothing if it has ended."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class ServerProcess:
    """A ModelServer in a child process (`python -m splitnn.onnxsplit.runtime.server`), on a free port of 127.0.0.1."""

    def __init__(self, model: Path | None, start_timeout_s: float = 120.0, plan: Path | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        # The server shares this machine's cores with the emulated device: its idle threads must not spin.
        command = [sys.executable, "-m", "splitnn.onnxsplit.runtime.server", str(model) if model else "-", "--port", "0", "--no-spin",
                   *(["--plan", str(plan)] if plan is not None else []),
                   *(["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls is not None else [])]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout = self.process.stdout
        assert stdout is not None  # opened with stdout=PIPE
        ready, _, _ = select.select([stdout], [], [], start_timeout_s)
        line = stdout.readline().strip() if ready else ""
        if not line.startswith("listening "):
            self.close()
            detail = self.process.stderr.read().strip().splitlines()[-1:] if self.process.stderr else []
            raise SplitnnError(f"the server process did not start: {detail[0] if detail else 'no answer'}")
        self.address = ("127.0.0.1", int(line.split()[-1]))

    def close(self) -> None:
        end_process(self.process)

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def percentiles(values: list[float]) -> Percentiles:
    if not values:
        return Percentiles(float("nan"), float("nan"))
    return Percentiles(float(np.percentile(values, 50)), float(np.percentile(values, 95)))


@dataclass
class BenchOptions:
    requests: int = 20
    slowdown: float | None = None  # a factor K the user gave; None: each part calibrated to its prediction
    timeout_s: float = 30.0
    baselines: bool = True
    seed: int = 0
    stream: bool = False  # also pipeline `requests` frames on one connection
    tls: bool = False  # the split's connection in TLS (a self-signed pair made for the run), to measure its cost
    fps: float | None = None  # the stream's pacing; None: as fast as the device goes


def _run_requests(client: DeviceClient, feeds: dict[str, np.ndarray], count: int,
                  progress: Callable[[int], None] | None = None) -> list[RequestResult]:
    results = []
    for i in range(count):
        results.append(client.request(feeds))
        if progress is not None:
            progress(i + 1)
    return results


def run_bench(outdir: str | Path, link: LinkSettings, options: BenchOptions,
              progress: Callable[[str, int, int], None] | None = None,
              reference: dict[str, np.ndarray] | None = None) -> SplitBenchReport:
    """Measure the plan in `outdir` under `link`; returns the report (see the module doc).

    `reference`: the unsplit model's outputs on `plan_feeds(plan, options.seed)`, when the caller has them
    already (a sweep measures many plans of one model); otherwise those kept in the plan folder are used.
    """
    outdir = Path(outdir)
    part = DevicePart(outdir, spin=False)  # nor the device's, while the server computes
    plan = part.plan
    plan.check_artifacts(outdir, "server")  # (the device part checked its own files)
    server_model = server_part_path(outdir)
    if reference is None:
        feeds, reference = inputs_and_reference(outdir, plan, options.seed)
    else:
        feeds = plan_feeds(plan, options.seed)
    tick = ((lambda stage, total: (lambda done: progress(stage, done, total))) if progress
            else (lambda stage, total: (lambda done: None)))
    calibration, this_host = _calibrated(part, feeds, options, tick)
    emulation = _emulation(plan, options, calibration)
    results, stream, stalls = _measure(part, server_model, link, options, emulation, feeds, tick)
    ok = [r for r in results if r.ok]
    max_err, outputs_match = _outputs_check(plan, ok[-1].outputs, reference) if reference is not None and ok else (None, None)
    baselines = None
    if options.baselines and model_path(outdir, plan).is_file():
        baselines = _baselines(model_path(outdir, plan), plan, feeds, link, options, tick)
    whole = baselines.device_calibration if baselines is not None else None
    timings = _timings(ok, link, local=server_model is None)
    report_stream = (_stream_report(stream, ok, link, server_model is None, plan.predicted.throughput_fps)
                     if stream is not None else None)
    return SplitBenchReport(
        plan=str(outdir),
        requests=len(results),
        ok=len(ok),
        errors=len(results) - len(ok),
        error_messages=sorted({r.error for r in results if not r.ok}),
        **timings,
        predicted_s=plan.predicted.total_s,
        predicted=plan.predicted,
        baselines=baselines,
        outputs_match=outputs_match,
        max_abs_err=max_err,
        same_top1=same_top1(ok[-1].outputs, reference) if reference is not None and ok else None,
        link=LinkReport(link.describe(), link.uplink_bps, link.downlink_bps, 2 * link.delay_s, link.jitter_s, link.loss,
                        stalls),
        slowdown=_slowdown_report(options, calibration, whole, emulation.encode_board_s),
        cut=plan.cut,
        stream=report_stream,
        codec=plan.codec.name if plan.codec is not None else None,
        reply_codec=plan.reply_codec.name if plan.reply_codec is not None else None,
        tls=options.tls and server_model is not None,
        versus_baselines=versus_baselines(plan.objective, timings["stages"]["e2e_s"].p50 if ok else None,
                                          report_stream, baselines),
        planned_for=plan.planned_for,
        this_run=(predict_run(plan, link, server_model, this_host, calibration.host_s,
                              model_path(outdir, plan) if baselines is not None else None)
                  if this_host is not None and calibration is not None else None),
    )


def _calibrated(part: DevicePart, feeds: dict[str, np.ndarray], options: BenchOptions,
                tick: Callable[[str, int], Any]) -> tuple[Calibration | None, DeviceProfile | None]:
    """The device part calibrated to its prediction, and this host's profile (the server's in this run); neither
    with --device-slowdown."""
    if options.slowdown is not None:
        return None, None
    tick("calibrating the device part", 1)(0)
    calibration = calibrate(lambda: part.run(feeds), part.plan.predicted.device_s)
    tick("this host's profile (the server's)", 1)(0)
    return calibration, host_profile()


@dataclass(frozen=True)
class _Emulation:
    """How the device part's time on this host becomes the board's: times `factor`, or at least `board_s`."""

    factor: float = 1.0
    board_s: float = 0.0
    encode_board_s: float = 0.0  # the request's encoding takes at least this
    reply_decode_extra_s: float = 0.0  # a coded answer's decoding takes this much longer than here


def _emulation(plan: VerticalPlanFile, options: BenchOptions, calibration: Calibration | None) -> _Emulation:
    """The board's compute at its prediction (or this host's times --device-slowdown). The codec's encoding waits
    for its predicted time on the board, as the compute does (scaling each encode's time here scaled this host's
    noise too: an encode after 0.3 s idle took 1.6 ms against 0.4 warm); a coded answer's decoding likewise."""
    if options.slowdown is not None:
        return _Emulation(options.slowdown)
    assert calibration is not None
    encode_board_s = plan.codec.device_encode_s if plan.codec is not None else 0.0
    reply = plan.reply_codec
    decode_extra_s = max(reply.device_decode_s - reply.decode_s, 0.0) if reply is not None else 0.0
    return _Emulation(1.0, calibration.predicted_s, encode_board_s, decode_extra_s)


def _outputs_check(plan: VerticalPlanFile, outputs: dict[str, np.ndarray],
                   reference: dict[str, np.ndarray]) -> tuple[float, bool]:
    """The run's outputs against the unsplit model's. A lossy codec at the cut moves them by what partition
    measured it to on this same input, and no more; a lossy reply codec by what it was measured to move them."""
    from splitnn.onnxsplit.artifacts.verification import compare_outputs

    codec_err = plan.codec.bench_abs_err * 1.001 if plan.codec is not None else 0.0
    if plan.reply_codec is not None:  # and the answer's codec by what it was measured to, on top
        codec_err += plan.reply_codec.max_abs_err * 1.01
    return compare_outputs(outputs, reference, plan.verification.atol + codec_err, plan.verification.rtol)


def _slowdown_report(options: BenchOptions, part: Calibration | None, whole: Calibration | None,
                     encode_board_s: float) -> SlowdownReport:
    if options.slowdown is not None:
        return SlowdownReport(options.slowdown, "given", options.slowdown > 1)
    assert part is not None
    return SlowdownReport(part.factor, "calibrated", not part.host_slower, device_part=part, whole_model=whole,
                          encode_board_s=encode_board_s)


def versus_baselines(objective: str, e2e_s: float | None, stream: StreamReport | None,
                     baselines: Baselines | None) -> Versus | None:
    """How many times better the split did than each baseline in this run, on the plan's objective: end to end
    latency (baseline / split), or with a stream, frames per second (split / baseline). None without baselines."""
    if baselines is None:
        return None
    if objective == "throughput" and stream is not None and baselines.all_device_fps:
        fps, server_fps = stream.throughput_fps, baselines.all_server_fps
        return Versus("frames per second", fps, baselines.all_device_fps, server_fps, fps / baselines.all_device_fps,
                      fps / server_fps if server_fps else None)
    if e2e_s is None:
        return None
    server_s = baselines.all_server_s
    return Versus("end-to-end latency p50", e2e_s, baselines.all_device_s, server_s,
                  baselines.all_device_s / e2e_s, server_s / e2e_s if server_s else None)


def _measure(part: DevicePart, server_model: Path | None, link: LinkSettings, options: BenchOptions,
             emulation: _Emulation, feeds: dict[str, np.ndarray], tick: Callable[[str, int], Any],
             ) -> tuple[list[RequestResult], StreamResult | None, int]:
    """The timed requests (after one warm-up), the stream when asked, and the link's loss stalls."""
    if server_model is None:  # all on the device: no server, no link
        client = DeviceClient(part, ("127.0.0.1", 0), slowdown=emulation.factor, board_s=emulation.board_s,
                              encode_board_s=emulation.encode_board_s)
        client.request(feeds)
        results = _run_requests(client, feeds, options.requests, tick("all on the device (the plan)", options.requests))
        stream = stream_frames(client, feeds, options.requests, options.fps,
                               tick("stream", options.requests)) if options.stream else None
        return results, stream, 0
    with tempfile.TemporaryDirectory(prefix="splitnn-tls-") as keys:
        pair = write_self_signed(keys) if options.tls else None
        with ServerProcess(server_model, plan=part.folder, tls=pair) as server, LinkRelay(server.address, link) as relay:
            client = DeviceClient(part, relay.address, slowdown=emulation.factor, board_s=emulation.board_s,
                                  encode_board_s=emulation.encode_board_s, timeout_s=options.timeout_s,
                                  reply_decode_extra_s=emulation.reply_decode_extra_s,
                                  tls=client_context(pair[0]) if pair is not None else None)
            return _timed(client, feeds, options, tick) + (relay.stalls,)


def _timed(client: DeviceClient, feeds: dict[str, np.ndarray], options: BenchOptions, tick: Callable[[str, int], Any],
           ) -> tuple[list[RequestResult], StreamResult | None]:
    """The split's timed requests (after one warm-up) and the stream when asked."""
    client.request(feeds)  # warm-up: sessions, connection, caches (not counted)
    results = _run_requests(client, feeds, options.requests, tick("split", options.requests))
    client.close()
    stream = stream_frames(client, feeds, options.requests, options.fps,
                           tick("stream", options.requests)) if options.stream else None
    return results, stream


def _timings(ok: list[RequestResult], link: LinkSettings, local: bool) -> dict[str, Any]:
    """Per-stage percentiles and samples, bytes per request, and the physical bound of the ok requests."""
    stages = {stage: percentiles([getattr(r, stage) for r in ok]) for stage in STAGES}
    bytes_up = int(statistics.median(r.bytes_up for r in ok)) if ok else 0
    bytes_down = int(statistics.median(r.bytes_down for r in ok)) if ok else 0
    wire_s = (bytes_up * 8 / link.uplink_bps if link.uplink_bps else 0.0) + (
        bytes_down * 8 / link.downlink_bps if link.downlink_bps else 0.0)
    network_s = 0.0 if local else wire_s + 2 * link.delay_s  # an all-device plan sends nothing
    return {
        "stages": stages,
        "samples": {stage: [getattr(r, stage) for r in ok] for stage in STAGES},
        "bound_s": stages["device_s"].p50 + network_s + stages["server_s"].p50 if ok else float("nan"),
        "bytes_per_request": BytesPerRequest(bytes_up, bytes_down),
    }


def _stream_report(stream: StreamResult, sequential: list[RequestResult], link: LinkSettings, local: bool,
                   predicted_fps: float) -> StreamReport:
    """The stream's throughput next to 1 / max(stage), the stages as timed in the stream itself
    (device and server compute per frame; the link's time is bytes / rate)."""
    def p50(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    up = stream.bytes_up or (int(statistics.median(r.bytes_up for r in sequential)) if sequential else 0)
    down = stream.bytes_down or (int(statistics.median(r.bytes_down for r in sequential)) if sequential else 0)
    periods = {
        "device_s": p50(stream.device_s),
        "uplink_s": 0.0 if local or not link.uplink_bps else up * 8 / link.uplink_bps,
        "server_s": p50(stream.server_s),
        "downlink_s": 0.0 if local or not link.downlink_bps else down * 8 / link.downlink_bps,
    }
    bottleneck = max(periods, key=lambda k: periods[k])
    capacity = pipelined_fps(**periods)  # the planner's model of the pipeline, on the stages as measured
    bound_fps = min(capacity, stream.offered_fps) if stream.offered_fps else capacity
    return StreamReport(
        frames=stream.frames, ok=stream.ok, errors=stream.errors, error_messages=stream.error_messages,
        offered_fps=stream.offered_fps, throughput_fps=stream.throughput_fps, bound_fps=bound_fps,
        ratio=stream.throughput_fps / bound_fps if bound_fps and bound_fps != float("inf") else None,
        stage_periods_s=periods, bottleneck=bottleneck, latency_s=percentiles(stream.latencies_s), wall_s=stream.wall_s,
        predicted_fps=predicted_fps,
    )


def _baselines(model: Path, plan: VerticalPlanFile, feeds: dict[str, np.ndarray], link: LinkSettings, options: BenchOptions,
               tick: Callable[[str, int], Any]) -> Baselines:
    """All on the device (the whole model, dilated) and all on the server (the raw input over the link)."""
    from splitnn.onnxsplit.core.ort_session import DEVICE_PART_LEVEL, create_session

    count = min(options.requests, BASELINE_REQUESTS)
    whole = _WholeModel(create_session(model, level=DEVICE_PART_LEVEL, spin=False), plan)
    all_device, all_server = _baseline_predictions(plan)
    calibration = None
    if options.slowdown is None and all_device is not None:
        tick("calibrating the whole model", 1)(0)
        calibration = calibrate(lambda: whole.run(feeds), all_device.device_s)
    device_only = DeviceClient(whole, ("127.0.0.1", 0), slowdown=options.slowdown or 1.0,
                               board_s=calibration.predicted_s if calibration else 0.0)
    device_only.compute(feeds)
    times = []
    step = tick("all on the device", count)
    for i in range(count):
        times.append(device_only.compute(feeds)[1])
        if step:
            step(i + 1)
    server_only = []
    with ServerProcess(model) as server, LinkRelay(server.address, link) as relay:
        client = DeviceClient(_NoDevicePart(plan), relay.address, timeout_s=options.timeout_s)
        client.request(feeds)
        server_only = _run_requests(client, feeds, count, tick("all on the server", count))
        client.close()
        server_stream = stream_frames(client, feeds, count, options.fps,
                                      tick("all on the server, stream", count)) if options.stream else None
    served = [r for r in server_only if r.ok]
    return Baselines(
        all_device_s=statistics.median(times),
        all_server_s=statistics.median(r.e2e_s for r in served) if served else None,
        all_server=ServerOnlyStages(statistics.median(r.encode_s + r.transfer_s for r in served),
                                    statistics.median(r.server_s for r in served)) if served else None,
        requests=count,
        # The device alone cannot overlap frames with itself: its frames per second are 1 / its compute time.
        all_device_fps=1 / statistics.median(times) if options.stream else None,
        all_server_fps=server_stream.throughput_fps if server_stream is not None else None,
        predicted_all_device=all_device,
        predicted_all_server=all_server,
        device_calibration=calibration,
    )


def _baseline_predictions(plan: VerticalPlanFile) -> tuple[Prediction | None, Prediction | None]:
    """What the plan predicted for all on the device (the cut that sends nothing) and all on the server (cut 0)."""
    all_device = next((c.predicted for c in plan.candidates if not c.tensors), None)
    all_server = next((c.predicted for c in plan.candidates if c.id == 0), None)
    return all_device, all_server


class _WholeModel:
    """The unsplit model, run where the device part would run (a DeviceSide)."""

    server_empty = False

    def __init__(self, session: Any, plan: VerticalPlanFile) -> None:
        self.session, self.inputs, self.outputs = session, list(plan.inputs), list(plan.outputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, {n: feeds[n] for n in self.inputs})))


class _NoDevicePart:
    """Nothing on the device: the raw input is what is sent (a DeviceSide)."""

    server_empty = False

    def __init__(self, plan: VerticalPlanFile) -> None:
        self.inputs = list(plan.inputs)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: feeds[n] for n in self.inputs}
