"""Model outputs computed on the device stay on the device and join the server's answer (issue 11, item 3)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
from onnx import helper

from splitnn.cost_models.catalog import load_device, load_link
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.vertical.export import write_split
from splitnn.onnxsplit.vertical.planning import plan_split
from tests.helpers import make_model, session, tensor, weight


def _two_heads(path):
    """x -> conv -> relu -> {box head: conv -> boxes (a model output); score head: conv -> relu -> conv -> scores}."""
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["trunk"], name="trunk_conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["trunk"], ["trunk_relu"], name="trunk_relu"),
        helper.make_node("Conv", ["trunk_relu", "wb"], ["boxes"], name="box_conv"),
        helper.make_node("Conv", ["trunk_relu", "ws1"], ["s1"], name="score_conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["s1"], ["s1_relu"], name="score_relu"),
        helper.make_node("Conv", ["s1_relu", "ws2"], ["scores"], name="score_conv2"),
    ]
    inits = [weight("w0", [8, 3, 3, 3], 1), weight("wb", [4, 8, 1, 1], 2), weight("ws1", [8, 8, 3, 3], 3),
             weight("ws2", [2, 8, 1, 1], 4)]
    model = make_model(nodes, [tensor("x", [1, 3, 16, 16])],
                       [tensor("boxes", [1, 4, 16, 16]), tensor("scores", [1, 2, 16, 16])], inits)
    onnx.save_model(model, str(path))
    return model


def test_a_device_output_is_kept_not_sent(tmp_path):
    model = _two_heads(tmp_path / "heads.onnx")
    # After the box head: boxes is computed on the device, only trunk_relu goes up. (`--cut trunk_relu` takes the
    # earliest cut sending it, before the box head, so the plan is made with the library.)
    analysis = analyze(load_graph(tmp_path / "heads.onnx"))
    plan = plan_split(analysis, load_device("rockpro64"), load_device("cloud-cpu"), load_link("wifi"))
    chosen = next(c for c in plan.candidates if c.cut.last_device_node == "box_conv")
    plan = json.loads(json.dumps(write_split(analysis, replace(plan, chosen=chosen, forced=True),
                                             tmp_path / "plan").to_dict()))
    assert plan["cut"]["tensors"] == ["trunk_relu"] and plan["cut"]["after_node"] == "box_conv"
    assert "boxes" in plan["parts"]["device"]["outputs"] and plan["parts"]["server"]["inputs"] == ["trunk_relu"]
    from splitnn.onnxsplit.jobs.bench import BenchChoice, LinkEmulation, bench_split

    report = bench_split(tmp_path / "plan", LinkEmulation(), BenchChoice(2, slowdown=1.0, stream=True)).to_dict()
    assert report["outputs_match"] is True and report["ok"] == 2
    # Only the tensor at the cut travels: its bytes plus the frame's framing, never boxes' 4 kB as well.
    overhead = report["bytes_per_request"]["up"] - plan["cut"]["bytes"]
    assert 0 < overhead < 1024, overhead
    assert report["stream"]["ok"] == 2

    # The answer holds both outputs, equal to the whole model's.
    from splitnn.onnxsplit.runtime.device import DeviceClient, DevicePart
    from splitnn.onnxsplit.runtime.server import ModelServer

    part = DevicePart(tmp_path / "plan")
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    want = dict(zip(["boxes", "scores"], session(model).run(["boxes", "scores"], {"x": x})))
    with ModelServer(tmp_path / "plan" / "server" / "model.onnx", port=0) as server:
        import threading

        threading.Thread(target=server.serve_forever, daemon=True).start()
        result = DeviceClient(part, server.address).request({"x": x})
    assert result.ok and set(result.outputs) == {"boxes", "scores"}
    for name, expected in want.items():
        np.testing.assert_allclose(result.outputs[name], expected, rtol=1e-4, atol=1e-5)
