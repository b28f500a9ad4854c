"""A pipeline plan on real machines (issue 33, item 5): `serve --stage` on each machine after the source, and the
source (`device` on a pipeline plan), here all on localhost over real sockets, with the token and TLS."""
from __future__ import annotations

import numpy as np
import pytest

from splitnn.onnxsplit.artifacts.bench_inputs import plan_feeds
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.runtime.pipeline_source import PipelineSource
from splitnn.onnxsplit.runtime.stage import StageGuard, StageServer
from splitnn.onnxsplit.runtime.tls import client_context, server_context, write_self_signed
from tests.helpers import session
from tests.onnxsplit.measure.test_pipeline import three_stages  # noqa: F401 (a fixture)


def test_every_stage_on_its_own_server_with_a_token_and_tls_answers_as_the_model(three_stages, sample_path, tmp_path):
    """The source listens for answers, the last stage sends there, each stage proves the token to the next and
    speaks TLS to it; three requests come back equal to the model's outputs."""
    out, plan = three_stages
    assert [s.machine for s in plan.stages] == ["a", "b", "c"], plan.stages
    cert, key = write_self_signed(tmp_path / "tls")
    guard = StageGuard(b"s3cret", server_context(cert, key), client_context(cert))
    logged: list[str] = []
    with PipelineSource(out, guard=guard) as source, \
            StageServer(out, "c", source.answers_address, guard=guard, log=logged.append).start() as c, \
            StageServer(out, "b", c.address, guard=guard, log=logged.append).start() as b:
        source.connect(b.address)
        model = session(str(sample_path("alexnet", 64)))
        for seed in range(3):
            feeds = plan_feeds(plan, seed)
            outputs, seconds = source.request(feeds)
            expected = dict(zip(plan.outputs, model.run(list(plan.outputs), feeds)))
            for name in plan.outputs:
                np.testing.assert_allclose(outputs[name], expected[name], atol=1e-4, rtol=1e-3)
            assert seconds > 0
    assert logged == []


def test_a_peer_without_the_token_is_refused_in_one_line(three_stages):
    """A source whose token differs from the stage's: the stage logs the refusal, and the source is told in one
    line; a stage named for the source, or for no machine of the plan, is refused before it listens."""
    out, _ = three_stages
    logged: list[str] = []
    with StageServer(out, "b", ("127.0.0.1", 9), guard=StageGuard(b"right"), log=logged.append).start() as b:
        with PipelineSource(out, guard=StageGuard(b"wrong")) as source:
            with pytest.raises(SplitnnError, match="turned this connection away: authentication failed"):
                source.connect(b.address)
    assert len(logged) == 1 and "a wrong answer to the challenge" in logged[0], logged
    with pytest.raises(SplitnnError, match="'a' is the plan's source"):
        StageServer(out, "a", ("127.0.0.1", 9))
    with pytest.raises(SplitnnError, match="no stage runs on 'z'"):
        StageServer(out, "z", ("127.0.0.1", 9))
