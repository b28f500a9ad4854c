"""The adaptive device: a request whose answer cannot come in time is finished here, from the tensors the device
already computed, with the cut's server graph (issue 13, item 4)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs
from splitnn.onnxsplit.runtime.adaptive_device import AdaptiveDevice
from splitnn.onnxsplit.runtime.link_emulator import LinkRelay, settings_for
from splitnn.onnxsplit.runtime.server import ModelServer, server_models
from splitnn.onnxsplit.vertical.adaptive import plan_adaptive, write_adaptive
from splitnn.onnxsplit.vertical.planning import plan_split
from tests.helpers import session


def test_a_late_answer_is_finished_on_the_device_from_the_tensors_it_computed(sample_path, tmp_path):
    path = sample_path("alexnet")
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"), "latency")
    document = write_adaptive(analysis, plan_adaptive(plan, 0.1e6, 100e6), tmp_path / "ad", ort_format=False)
    middle = next(k for k in document.kept if k.server_model and k.cut.tensors != ["input"])
    alone = next(k for k in document.kept if k.server_model is None)
    deadline = 1.5 * alone.predicted.device_s
    link = settings_for(100e6, 0.01, outages=[(0.0, 60.0)])  # the link is down for the whole test
    feeds = random_inputs(analysis.graph)
    with ModelServer(server_models(tmp_path / "ad")).start() as server, LinkRelay(server.address, link) as relay:
        device = AdaptiveDevice(tmp_path / "ad", document, relay.address, deadline_s=deadline, hold_cut=middle.cut.id,
                                emulate_board=True)
        assert device.can_finish_from_tensors(middle)
        points = [device.request(feeds) for _ in range(2)]
        device.close()
    assert [p.answered for p in points] == ["local", "local"] and {p.cut_id for p in points} == {middle.cut.id}
    # It emulated the board's own time, and did not wait for the link, which is down for 60 s. (No tighter upper
    # bound: on a busy 2-core runner the answer once came 0.9 ms past the deadline; tests do not depend on timing.)
    assert all(alone.predicted.device_s <= p.e2e_s < 10 * deadline for p in points), (points, alone.predicted.device_s, deadline)
    expected = session(str(path)).run(None, feeds)[0]
    np.testing.assert_allclose(device.last_outputs[document.outputs[0]], expected, atol=1e-4, rtol=1e-3)


def test_a_refused_adaptive_device_counts_errors_and_answers_alone_only_under_a_deadline(sample_path, tmp_path, capsys):
    """issue 30, item 2: a device the server refuses (no token, or another one) is told so. Without a deadline every
    request is an error (it answered them all alone on the board and exited 0); `splitnn device` exits 2 with one
    line. With --deadline, which asks it to answer alone when the server cannot, it does, and says why."""
    from splitnn.cli.main import main

    path = sample_path("alexnet")
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"), "latency")
    document = write_adaptive(analysis, plan_adaptive(plan, 0.1e6, 100e6), tmp_path / "ad", ort_format=False)
    alone = next(k for k in document.kept if k.server_model is None)
    feeds = random_inputs(analysis.graph)
    token = b"the server's token"
    (tmp_path / "other.txt").write_text("another token\n")
    with ModelServer(server_models(tmp_path / "ad"), token=token).start() as server:
        plain = AdaptiveDevice(tmp_path / "ad", document, server.address)
        points = [plain.request(feeds) for _ in range(3)]
        plain.close()
        assert [p.answered for p in points] == ["error"] * 3 and plain.counts().errors == 3
        assert plain.refused is not None and "asks for a token" in plain.refused
        other = AdaptiveDevice(tmp_path / "ad", document, server.address, token=b"another token",
                               deadline_s=2 * alone.predicted.device_s)
        points = [other.request(feeds) for _ in range(2)]
        other.close()
        assert [p.answered for p in points] == ["local", "local"]
        assert other.refused is not None and "refused this device's token" in other.refused
        assert server.counts.ok == 0
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(["device", str(tmp_path / "ad"), "--server", f"127.0.0.1:{server.address[1]}", "--random", "2"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and "asks for a token" in err[0], err
        main_args = ["device", str(tmp_path / "ad"), "--server", f"127.0.0.1:{server.address[1]}", "--random", "2",
                     "--token-file", str(tmp_path / "other.txt"), "--deadline", "10s", "--json"]
        with pytest.raises(SystemExit) as exit_:
            main(main_args)
        captured = capsys.readouterr()
        assert exit_.value.code == 0 and "refused this device's token" in captured.err
        assert '"answered_local": 2' in captured.out


class _SlowServer(ModelServer):
    """A server whose every model run takes `extra_s` longer than it would (a machine much slower than the plan's
    server); counts the runs it made."""

    def __init__(self, *args, extra_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.extra_s, self.runs = extra_s, 0

    def run(self, tensors: dict) -> dict:  # type: ignore[type-arg]
        from splitnn.onnxsplit.runtime.wire import DEVICE_NAME_TENSOR, PROBE_TENSOR

        if set(tensors) not in ({PROBE_TENSOR}, {DEVICE_NAME_TENSOR}):
            self.runs += 1
            time.sleep(self.extra_s)
        return super().run(tensors)


def _alexnet_adaptive(sample_path, tmp_path):
    path = sample_path("alexnet")
    analysis = analyze(load_graph(path))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("4g"), "latency")
    document = write_adaptive(analysis, plan_adaptive(plan, 0.1e6, 100e6), tmp_path / "ad", ort_format=False)
    return analysis, document


def test_a_server_slower_than_planned_is_learned_from_its_answers_and_left(sample_path, tmp_path):
    """issue 30, item 11: the plan priced a fast server, and the one that answers takes half a second more per
    request. The first answer carries the server's time; from the next request on the device answers alone (it
    kept sending to the server, trusting the plan's figures)."""
    analysis, document = _alexnet_adaptive(sample_path, tmp_path)
    alone = next(k for k in document.kept if k.server_model is None)
    feeds = random_inputs(analysis.graph)
    with _SlowServer(server_models(tmp_path / "ad"), extra_s=0.5).start() as server:
        device = AdaptiveDevice(tmp_path / "ad", document, server.address)
        points = [device.request(feeds) for _ in range(5)]
        device.close()
    assert points[0].answered == "remote" and points[0].cut_id != alone.cut.id, points[0]
    assert [(p.answered, p.cut_id) for p in points[1:]] == [("local", alone.cut.id)] * 4, points
    assert server.runs == 1


def test_a_device_slower_than_planned_at_sending_is_learned_and_the_board_alone_taken(sample_path, tmp_path):
    """issue 30, item 11: the device's side of a sending cut takes more than the plan counted (here its encoding,
    0.15 s a request on a board whose compute is as planned). The device kept the cut the plan ranked first; it
    learns each sending cut's time off the wire, tries the next, and answers alone once every sending cut it
    would rank above answering alone has been tried once (how many that is depends on the link's estimate)."""
    analysis, document = _alexnet_adaptive(sample_path, tmp_path)
    alone = next(k for k in document.kept if k.server_model is None)
    feeds = random_inputs(analysis.graph)
    with ModelServer(server_models(tmp_path / "ad")).start() as server:
        device = AdaptiveDevice(tmp_path / "ad", document, server.address, emulate_board=True)
        encode = device.client.payload

        def slow_payload(*args, **kwargs):
            time.sleep(0.15)
            return encode(*args, **kwargs)

        device.client.payload = slow_payload  # type: ignore[method-assign]
        points = [device.request(feeds) for _ in range(len(document.kept) + 3)]
        device.close()
    assert points[0].answered == "remote", points[0]
    remote = [p.cut_id for p in points if p.answered == "remote"]
    assert len(remote) == len(set(remote)), points  # each sending cut learned from its first request
    assert [(p.answered, p.cut_id) for p in points[-3:]] == [("local", alone.cut.id)] * 3, points
    assert device.device_speed.scale(points[0].cut_id, device._now()) > 2.0


def test_under_a_deadline_a_late_answer_still_teaches_the_server_time(sample_path, tmp_path):
    """issue 30, item 11: under a deadline a server too slow for it never answers in time, and each try cost a
    fallback (the next probe found the link fine, and the device tried again). The late answer is read aside:
    once it came, no request is sent to that server any more, and every request is answered."""
    analysis, document = _alexnet_adaptive(sample_path, tmp_path)
    alone = next(k for k in document.kept if k.server_model is None)
    feeds = random_inputs(analysis.graph)
    with _SlowServer(server_models(tmp_path / "ad"), extra_s=0.5).start() as server:
        device = AdaptiveDevice(tmp_path / "ad", document, server.address, deadline_s=1.5 * alone.predicted.device_s,
                                emulate_board=True)
        before = [device.request(feeds) for _ in range(2)]
        assert before[0].answered == "local" and server.runs >= 1  # tried, too late: answered here
        for _ in range(40):  # until a late answer has come (the server's half second; each request takes longer)
            if device.server_speed.samples:
                break
            before.append(device.request(feeds))
        assert device.server_speed.samples >= 1
        tried = server.runs
        after = [device.request(feeds) for _ in range(5)]
        device.close()
    assert server.runs == tried and all(p.answered == "local" for p in before + after), (before, after)
    assert device.counts().errors == 0
