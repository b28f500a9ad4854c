"""TLS on the wire (issue 15, item 2): the standard library's ssl, a self-signed pair made with `cryptography`."""
from __future__ import annotations

import numpy as np
import pytest

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.sample_inputs import random_feeds
from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart
from splitnn.onnxsplit.runtime.server import ModelServer, server_part_path
from splitnn.onnxsplit.runtime.tls import client_context, server_context, write_self_signed


def test_a_device_that_trusts_the_certificate_is_served_encrypted(lenet_plan, tmp_path):
    cert, key = write_self_signed(tmp_path / "tls")
    other, _ = write_self_signed(tmp_path / "other")
    part = DevicePart(lenet_plan)
    feeds = random_feeds({n: (s.shape, s.dtype) for n, s in part.plan.inputs.items()}, 0)
    logged: list[str] = []
    with ModelServer(server_part_path(lenet_plan), tls=server_context(cert, key), log=logged.append).start() as server:
        port = server.address[1]
        trusted = DeviceClient(part, ("localhost", port), tls=client_context(cert), timeout_s=5)
        assert all(trusted.request(feeds).ok for _ in range(2))
        by_ip = DeviceClient(part, ("127.0.0.1", port), tls=client_context(cert), timeout_s=5)  # a name it holds
        assert by_ip.request(feeds).ok
        with pytest.raises(SplitnnError, match="is not trusted"):
            DeviceClient(part, ("localhost", port), tls=client_context(other), timeout_s=5).request(feeds)
        plain = DeviceClient(part, ("localhost", port), timeout_s=5).try_exchange({"x": np.zeros(1)})
        assert not plain.ok
        assert server.counts.ok == 3
    assert any("TLS handshake failed" in line for line in logged)


def test_certificate_files_are_checked_before_serving(lenet_plan, tmp_path):
    cert, _ = write_self_signed(tmp_path / "a")
    _, other_key = write_self_signed(tmp_path / "b")
    with pytest.raises(SplitnnError, match="does not match its key"):
        server_context(cert, other_key)
    with pytest.raises(SplitnnError, match="does not exist"):
        server_context(tmp_path / "none.pem", other_key)
    with pytest.raises(SplitnnError, match="cannot be read as PEM"):
        client_context(tmp_path / "nothing.pem")


def test_run_bench_measures_the_split_over_tls(lenet_plan):
    from splitnn.onnxsplit.jobs.bench import BenchChoice, LinkEmulation, bench_split

    report = bench_split(lenet_plan, LinkEmulation(), BenchChoice(3, baselines=False, tls=True)).to_dict()
    assert report["tls"] is True and report["ok"] == 3 and report["outputs_match"] is True
    with pytest.raises(SplitnnError, match="drop --stream"):
        BenchChoice(tls=True, stream=True)
