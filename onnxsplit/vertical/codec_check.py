"""What a codec at the cut does, measured on the user's inputs (partition --calibration) or on the verification
input (issue 14): the real encoded bytes of the tensors the server part reads, the encode and decode times, and
the model's outputs through the codec against the same parts without it. `OutputChangeLimit` is the user's
bound on that change (--max-output-change)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from splitnn.cost_models.latency import codec_time_scale
from splitnn.cost_models.profiles import DeviceProfile
from splitnn.onnxsplit.artifacts.chain import PartStep, outputs_of, run_steps
from splitnn.onnxsplit.artifacts.layout import MODEL_FILE, SERVER_DIR
from splitnn.onnxsplit.artifacts.parts import Part
from splitnn.onnxsplit.artifacts.plan_file import CodecRecord, ReplyCodecRecord
from splitnn.onnxsplit.artifacts.verification import verification_session
from splitnn.onnxsplit.codecs.base import Raw
from splitnn.onnxsplit.codecs.calibrated import TensorRange, calibrate_range
from splitnn.onnxsplit.codecs.image import image_axis, image_range
from splitnn.onnxsplit.codecs.specs import Codecs, codec_of, image_spec, is_calibrated, tensor_codecs
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph

Tensors = dict[str, np.ndarray]
ServerRun = Callable[[Tensors], Tensors]  # the server part: the tensors it reads -> its outputs


@dataclass(frozen=True)
class OutputChangeLimit:
    """How far the codec may move the model's outputs: `agreement>=0.99` (top-1, classifier outputs), `relerr<=0.01`
    (largest error over the largest magnitude) or `abserr<=0.05`."""

    metric: str  # "agreement", "relerr" or "abserr"
    bound: float

    def allows(self, record: CodecRecord | ReplyCodecRecord) -> bool:
        if self.metric == "agreement":
            return record.agreement is not None and record.agreement >= self.bound
        return (record.max_rel_err if self.metric == "relerr" else record.max_abs_err) <= self.bound

    def reached(self, record: CodecRecord | ReplyCodecRecord) -> str:
        """What `record` reached on this limit's metric, in words."""
        if self.metric == "agreement":
            return "no classifier output to agree on" if record.agreement is None else f"agreement {record.agreement:.1%}"
        value = record.max_rel_err if self.metric == "relerr" else record.max_abs_err
        return f"{self.metric} {value:.3g}"

    def __str__(self) -> str:
        return f"{self.metric}{'>=' if self.metric == 'agreement' else '<='}{self.bound:g}"


def parse_output_change(text: str) -> OutputChangeLimit:
    compact = text.replace(" ", "").lower()
    for metric, operator in (("agreement", ">="), ("relerr", "<="), ("abserr", "<=")):
        head, sep, value = compact.partition(operator)
        if head == metric and sep:
            try:
                bound = float(value.rstrip("%")) / (100 if value.endswith("%") else 1)
            except ValueError:
                break
            if bound >= 0 and (metric != "agreement" or bound <= 1):
                return OutputChangeLimit(metric, bound)
    raise SplitnnError(f"--max-output-change: cannot read '{text}' (use agreement>=0.99, relerr<=0.01 or abserr<=0.05)")


def default_limit(graph: Graph) -> OutputChangeLimit:
    """Without --max-output-change: 99% top-1 agreement for a model with a classifier output (one row of scores),
    else a 1% relative change."""
    classifier = any(is_scores(graph.info(n).shape) for n in graph.outputs)
    return OutputChangeLimit("agreement", 0.99) if classifier else OutputChangeLimit("relerr", 0.01)


def part_runner(folder: Path, server: Part, model: str = f"{SERVER_DIR}/{MODEL_FILE}") -> ServerRun:
    """The written server part in `folder` (at `model` in it), as measure_codec runs it."""
    step = PartStep(model, server.inputs, server.outputs)
    session = verification_session(folder / step.model)
    # run_steps adds the outputs to the pool it is given: a copy, so the caller's tensors stay what was sent.
    return lambda tensors: outputs_of(run_steps([step], dict(tensors), lambda _: session), server.outputs)


def measure_codec(server: ServerRun, sent: Sequence[Tensors], plain: Sequence[Tensors], spec: str,
                  calibration: str | None = None, ranges: Sequence[TensorRange] | None = None,
                  returned: list[Tensors] | None = None) -> CodecRecord:
    """`sent`: per input, the tensors the server part reads, as the device computed them; `plain`: the server part's
    outputs on them. Runs `server` on them after the codec's round trip, and compares. An int8:calibrated codec
    takes its ranges from `sent` itself, unless `ranges` are given. `returned`, when given, receives what the server
    part returned on each input through the codec (a reply codec is measured on those)."""
    by_name = {r.name: r for r in ranges} if ranges is not None else calibrated_ranges(spec, sent)
    codecs = tensor_codecs(spec, by_name)
    raw, coded, encode_s, decode_s, abs_err, rel_err, agreed = [], [], [], [], 0.0, 0.0, []
    round_trip(codecs, sent[0])  # warm-up, not timed: a codec's first call loads its library
    for tensors, want in zip(sent, plain):
        trip = round_trip(codecs, tensors)
        encode_s.append(trip.encode_s)
        decode_s.append(trip.decode_s)
        raw.append(sum(len(Raw().encode(array)) for array in tensors.values()))
        coded.append(trip.coded_bytes)
        got = server(trip.decoded)
        if returned is not None:
            returned.append(got)
        errors = _output_errors(got, want)
        abs_err, rel_err = max(abs_err, errors[0]), max(rel_err, errors[1])
        if errors[2] is not None:
            agreed.append(errors[2])
    name = next(iter(codecs.values())).name if isinstance(codecs, dict) and codecs else getattr(codecs, "name", spec)
    return CodecRecord(
        name, int(statistics.median(raw)), int(statistics.median(coded)), abs_err, rel_err,
        all(agreed) if agreed else None, sum(agreed) / len(agreed) if agreed else None, len(sent), calibration,
        tuple(by_name.values()), statistics.median(encode_s), statistics.median(decode_s),
    )


# What --reply-codec auto tries: every codec whose frames describe themselves (none: plain float32, the default).
REPLY_CODECS = ("lossless", "fp16", "fp16+lossless", "int8", "int8+lossless")


def measure_reply_codec(returned: Sequence[Tensors], plain: Sequence[Tensors], spec: str, scales: tuple[float, float],
                        limit: OutputChangeLimit | None = None) -> ReplyCodecRecord:
    """What `spec` does to the server part's answers (partition --reply-codec): `returned`, per input, what the
    server part returns (through the cut's codec, if any); `plain`, what it returns without codecs; `scales`,
    codec_scales' (device, server). The answer is coded as a cut's tensors are, with nothing run after it, so the
    change it reports is that of both codecs together. Refused past `limit`."""
    measured = measure_codec(lambda decoded: decoded, returned, plain, spec)
    if limit is not None and not limit.allows(measured):
        raise SplitnnError(f"--max-output-change {limit}: --reply-codec {measured.name} reached "
                           f"{limit.reached(measured)} on {measured.inputs} input(s); nothing was written: allow more "
                           "change or choose another reply codec")
    return ReplyCodecRecord(measured.name, measured.raw_bytes, measured.coded_bytes, measured.max_abs_err,
                            measured.max_rel_err, measured.agreement, measured.inputs, measured.encode_s,
                            measured.decode_s, server_encode_s=measured.encode_s * scales[1],
                            device_decode_s=measured.decode_s * scales[0])


def choose_reply_codec(returned: Sequence[Tensors], plain: Sequence[Tensors], scales: tuple[float, float],
                       limit: OutputChangeLimit, downlink_bps: float, own_change: bool = False) -> ReplyCodecRecord | None:
    """--reply-codec auto: of REPLY_CODECS within `limit`, the one whose answer is predicted back soonest (its bytes
    over the downlink, its encode on the server and its decode on the device); None when plain float32 is.
    `own_change`: `limit` holds the reply codec's own change (against `returned`), not both codecs' together; the
    record kept reports both together either way."""
    best, best_s = None, statistics.median(sum(len(Raw().encode(a)) for a in t.values()) for t in returned) * 8 / downlink_bps
    for spec in REPLY_CODECS:
        judged = measure_reply_codec(returned, returned if own_change else plain, spec, scales)
        seconds = judged.coded_bytes * 8 / downlink_bps + judged.server_encode_s + judged.device_decode_s
        if limit.allows(judged) and seconds < best_s:
            best, best_s = judged, seconds
    return measure_reply_codec(returned, plain, best.name, scales) if best is not None and own_change else best


@dataclass(frozen=True)
class CodecScales:
    """How many times longer the device and the server take than this machine for a codec's work timed here,
    (device, server) for array codecs and for image codecs, all read against one host profile."""

    array: tuple[float, float]
    image: tuple[float, float]

    def of(self, spec: str) -> tuple[float, float]:
        return self.image if image_spec(spec) is not None else self.array


def all_codec_scales(device: DeviceProfile, server: DeviceProfile) -> CodecScales:
    """Both kinds' scales against this machine's measured profile (cost_models.host, cached; read once, so that a
    planner pricing many pairs prices them all against the same profile, even if the cache is renewed meanwhile):
    by the codec references where both profiles have them, else by memory bandwidth
    (cost_models.latency.codec_time_scale)."""
    from splitnn.cost_models.host import host_profile

    here = host_profile()
    return CodecScales(*((codec_time_scale(device, here, image), codec_time_scale(server, here, image))
                         for image in (False, True)))


def codec_scales(device: DeviceProfile, server: DeviceProfile, spec: str = "none") -> tuple[float, float]:
    """all_codec_scales' (device, server) for codec `spec`."""
    return all_codec_scales(device, server).of(spec)


def calibrated_ranges(spec: str, samples: Sequence[Tensors]) -> dict[str, TensorRange]:
    """For an int8:calibrated spec, each floating-point tensor's range over `samples`; for an image codec, each
    image tensor's (codecs/image); else none."""
    first = samples[0]
    if image_spec(spec) is not None:
        return {name: image_range(name, [s[name] for s in samples]) for name in first
                if image_axis(first[name].shape) is not None
                and (first[name].dtype == np.uint8 or np.issubdtype(first[name].dtype, np.floating))}
    if not is_calibrated(spec):
        return {}
    return {name: calibrate_range(name, [s[name] for s in samples]) for name in first
            if np.issubdtype(first[name].dtype, np.floating)}


@dataclass(frozen=True)
class RoundTrip:
    """One input's tensors through a codec and back, timed on this machine."""

    decoded: Tensors
    coded_bytes: int
    encode_s: float
    decode_s: float


def round_trip(codecs: Codecs, tensors: Tensors) -> RoundTrip:
    start = time.perf_counter()
    blobs = {name: codec_of(codecs, name).encode(array) for name, array in tensors.items()}
    encoded = time.perf_counter()
    decoded = {name: codec_of(codecs, name).decode(blob) for name, blob in blobs.items()}
    return RoundTrip(decoded, sum(len(b) for b in blobs.values()), encoded - start, time.perf_counter() - encoded)


def is_scores(shape: Sequence[int]) -> bool:
    """One row of scores: a classifier's output, whose top-1 class agreement is measured."""
    return len(shape) == 2 and shape[0] == 1 and shape[1] > 1


def same_top1(got: Tensors, want: Tensors) -> bool | None:
    """Whether every classifier output of `want` (one row of scores) has the same top class in `got` (None: there
    is none)."""
    kept = [int(got[name].argmax()) == int(expected.argmax()) for name, expected in want.items()
            if name in got and is_scores(expected.shape)]
    return all(kept) if kept else None


def _output_errors(got: Tensors, want: Tensors) -> tuple[float, float, bool | None]:
    """The largest absolute and relative error over the outputs, and whether every classifier output (one row of
    scores) kept its top-1 class (None: no such output)."""
    abs_err, rel_err = 0.0, 0.0
    for name, expected in want.items():
        actual = got[name]
        if not np.issubdtype(expected.dtype, np.floating):
            abs_err = max(abs_err, float(np.abs(actual.astype(np.float64) - expected).max(initial=0.0)))
            continue
        error = float(np.abs(actual - expected).max(initial=0.0))
        abs_err, rel_err = max(abs_err, error), max(rel_err, error / max(float(np.abs(expected).max(initial=0.0)), 1e-12))
    return abs_err, rel_err, same_top1(got, want)
