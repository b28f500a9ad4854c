"""Pipelined frames: every frame accounted for, answers right, and frames really overlap on the link."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np

from splitnn.onnxsplit.artifacts.plan_file import model_path
from splitnn.onnxsplit.model.sample_inputs import random_feeds
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart
from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, settings_for
from splitnn.onnxsplit.runtime.pipelining import stream_frames
from splitnn.onnxsplit.runtime.server import ModelServer, server_part_path
from tests.helpers import session


def _feeds(part: DevicePart) -> dict[str, np.ndarray]:
    return random_feeds({n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}, 0)


def test_stream_answers_every_frame_and_overlaps_them(lenet_plan):
    part = DevicePart(lenet_plan)
    feeds = _feeds(part)
    expected = session(model_path(part.folder, part.plan)).run(list(part.plan.outputs), feeds)[0]
    rtt = 0.4
    frames = 6
    with ModelServer(server_part_path(lenet_plan)).start() as server, \
            LinkRelay(server.address, settings_for(None, rtt)) as relay:
        client = DeviceClient(part, relay.address)
        result = stream_frames(client, feeds, frames)
        assert server.counts.ok == frames
    assert (result.frames, result.ok, result.errors) == (frames, frames, 0)
    assert len(result.latencies_s) == frames and all(latency >= rtt for latency in result.latencies_s)
    # Pipelined: frames were sent while earlier ones were still on the link (one at a time, this would be 1;
    # LeNet-5's device part computes in far less than the 0.4 s round trip).
    assert result.most_in_flight >= 2
    assert result.bytes_up > 16 * 5 * 5 * 4 and result.bytes_down > 10 * 4
    assert np.isfinite(result.throughput_fps) and result.throughput_fps > 0
    # The answers themselves are right: the last one checked against the unsplit model through a plain request.
    with ModelServer(server_part_path(lenet_plan)).start() as server:
        np.testing.assert_allclose(DeviceClient(part, server.address).request(feeds).outputs[list(part.plan.outputs)[0]],
                                   expected, atol=1e-4)


def test_stream_pacing_spaces_the_frames(lenet_plan):
    part = DevicePart(lenet_plan)
    with ModelServer(server_part_path(lenet_plan)).start() as server:
        result = stream_frames(DeviceClient(part, server.address), _feeds(part), 4, fps=5.0)
    assert result.ok == 4 and result.offered_fps == 5.0
    assert result.wall_s >= 3 / 5.0  # the 4th frame is not started before 0.6 s


def test_silent_server_times_out_every_frame_and_loses_none(lenet_plan):
    part = DevicePart(lenet_plan)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    client = DeviceClient(part, listener.getsockname()[:2], timeout_s=0.3)
    start = time.perf_counter()
    result = stream_frames(client, _feeds(part), 3)
    assert (result.frames, result.ok, result.errors) == (3, 0, 3)
    assert result.error_messages == ["timed out after 0.3 s waiting for the server"]
    assert time.perf_counter() - start >= 0.3
    listener.close()
    for sock in accepted:
        sock.close()


def test_all_device_plan_streams_without_a_server(tmp_path, sample_path):
    import splitnn

    outdir = tmp_path / "all-device"
    splitnn.partition(sample_path("lenet5"), outdir, link="cat1", objective="latency")
    part = DevicePart(outdir)
    assert part.server_empty
    result = stream_frames(DeviceClient(part, ("127.0.0.1", 0)), _feeds(part), 3)
    assert (result.ok, result.errors, result.bytes_up) == (3, 0, 0)
