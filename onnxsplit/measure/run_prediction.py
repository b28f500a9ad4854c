"""What the cost models predict for the run a bench really makes, beside what the plan assumed.

A plan prices its device, its server and its link. A bench on this machine
runs the device part emulated at the device profile's prediction, but its
server is this host (not the plan's server profile) and its link is the one
the relay emulates (which `--link`, `--bandwidth` or a trace may change).
The run's prediction prices the same parts with the same formulas
(`vertical.planning.prediction_of`) for what runs:

- the device stage as emulated: the plan's device time, or this host's own
  time where the host is slower than the board (the emulation adds no wait);
- the request's and the answer's bytes (as the plan priced them) over the
  emulated link: its rates and round trip, a trace's rate as the time-weighted
  mean of 1 / rate;
- the server part on this host's profile (`cost_models.host`, measured once and
  cached), from the server part's own graph.

The emulated board and the server share this host's cores: in a stream the
host computes the device part's real work and the server part's for every
frame, so the frame period is also at least their sum on this host; the run's
frames per second take that bound too, and say so (`shared_cores_s`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from splitnn.cost_models.prediction import Prediction
from splitnn.cost_models.profiles import DeviceProfile, LinkProfile
from splitnn.onnxsplit.artifacts.plan_file import VerticalPlanFile
from splitnn.onnxsplit.core.records import Record
from splitnn.onnxsplit.runtime.link_emulator import LinkSettings


@dataclass(frozen=True)
class RunPrediction(Record):
    """The prediction for the bench's own run, and what in it differs from the plan's."""

    predicted: Prediction
    device: str  # the board the device part is emulated as
    server: str  # the profile the server part was priced on (this host's)
    link: str  # the link as emulated
    differs: tuple[str, ...]  # "server", "link": what the plan assumed otherwise
    shared_cores_s: float | None = None  # the device part's host time + the server part's, per frame (None: no server)
    all_server: Prediction | None = None  # the all-on-server baseline as run here (None: no baselines)


def emulated_link(plan_link: LinkProfile, settings: LinkSettings) -> LinkProfile:
    """The plan's link with the relay's rates and round trip (a trace: its time-weighted mean of 1 / rate, both
    ways); an unlimited direction keeps the plan's rate."""
    up, down = settings.uplink_bps, settings.downlink_bps
    if settings.trace:
        spans = [(later[0] - step[0], step[1]) for step, later in zip(settings.trace, settings.trace[1:])]
        spans = [(duration, bps) for duration, bps in spans if duration > 0 and bps > 0] or [(1.0, settings.trace[-1][1])]
        up = down = sum(duration for duration, _ in spans) / sum(duration / bps for duration, bps in spans)
    return replace(plan_link, name=f"{plan_link.name} as emulated", uplink_bps=up or plan_link.uplink_bps,
                   downlink_bps=down or plan_link.down_bps, rtt_s=2 * settings.delay_s)


def server_part_seconds(server_model: Path, profile: DeviceProfile,
                        input_shapes: dict[str, tuple[int, ...]] | None = None) -> float:
    """The server part's (or a whole model's, at `input_shapes`) predicted time on `profile`, from its own graph
    (weights are not read)."""
    from splitnn.cost_models.latency import seconds
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.analysis.cuts import placeable_indices
    from splitnn.onnxsplit.model.loading import load_graph

    part = analyze(load_graph(server_model, input_shapes))
    return seconds(part.graph, part.nodes, placeable_indices(part.graph), profile)


def predict_run(plan: VerticalPlanFile, settings: LinkSettings, server_model: Path | None, here: DeviceProfile,
                device_host_s: float | None, model: Path | None = None) -> RunPrediction | None:
    """The plan's chosen cut priced for this run (see the module doc), and with `model` (the unsplit model, which
    the baselines run) the all-on-server baseline too; None for a plan written before its prediction kept the bytes
    it priced. `device_host_s`: the device part's time on this host (the calibration's), None when not known."""
    from splitnn.onnxsplit.vertical.planning import prediction_of

    planned = plan.predicted
    if planned.up_bytes is None or planned.down_bytes is None:
        return None
    link = emulated_link(plan.link, settings)
    device_s = max(planned.device_s, device_host_s or 0.0)
    server_s = server_part_seconds(server_model, here) if server_model is not None else 0.0
    # The codecs' times where they run in this bench: the server's encode and decode on this host, the machine
    # that measured them; the device's as the plan priced them on the board, where the emulation waits for them.
    reply, codec = plan.reply_codec, plan.codec
    server_decode_s = codec.decode_s if codec is not None else 0.0
    device_decode_s = reply.device_decode_s if reply is not None else 0.0
    predicted = prediction_of(device_s, planned.encode_s, server_s, planned.up_bytes, planned.down_bytes,
                              plan.device_profile, link, reply.encode_s if reply is not None else 0.0,
                              (server_decode_s, device_decode_s))
    shared_s = None
    if server_model is not None and device_host_s is not None:
        shared_s = device_host_s + server_s
        predicted = replace(predicted, throughput_fps=min(predicted.throughput_fps, 1 / shared_s))
    all_server = _all_on_server(plan, model, here, link)
    same_link = (link.uplink_bps, link.down_bps, link.rtt_s) == (plan.link.uplink_bps, plan.link.down_bps,
                                                                 plan.link.rtt_s) and not settings.trace
    differs = (*(("server",) if server_model is not None or all_server is not None else ()),
               *(() if same_link else ("link",)))
    return RunPrediction(predicted, plan.device_profile.name, "this host" if here.name == "host" else here.name,
                         settings.describe(), differs, shared_s, all_server)


def _all_on_server(plan: VerticalPlanFile, model: Path | None, here: DeviceProfile, link: LinkProfile,
                   ) -> Prediction | None:
    """The all-on-server baseline as the bench runs it: the plain input over `link`, the whole model on `here`."""
    from splitnn.onnxsplit.vertical.planning import prediction_of

    planned = next((c.predicted for c in plan.candidates if c.id == 0), None)
    if model is None or not model.is_file() or planned is None or planned.up_bytes is None:
        return None
    shapes = {name: tuple(spec.shape) for name, spec in plan.inputs.items()}
    return prediction_of(0.0, planned.encode_s, server_part_seconds(model, here, shapes), planned.up_bytes,
                         planned.down_bytes or 0, plan.device_profile, link)
