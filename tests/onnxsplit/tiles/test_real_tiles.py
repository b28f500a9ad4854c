"""Tiles on the CNNs users export (issue 31): the image's own layout, stacks through branches that meet again,
and every CNN of the test corpus tiled and verified against onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from splitnn.cost_models.catalog import load_device
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.tiles.export import write_tiles
from splitnn.onnxsplit.tiles import dask_runtime
from splitnn.onnxsplit.tiles.pooled_step import pooled_step
from splitnn.onnxsplit.tiles.planning import plan_tiles
from splitnn.onnxsplit.tiles.stack_region import fused_stack, macs_before_whole_map
from tests.helpers import (
    CLS_MODEL,
    DET_MODEL,
    MTCNN_ONET,
    MTCNN_PNET,
    NUDENET,
    ORIENTATION,
    REC_MODEL,
    LAYOUT,
    make_model,
    packaged_model,
    rapidocr_model,
    tensor,
    weight,
)

BOARD = load_device("rockpro64")


def _keras_resnet_stem():
    """What tf2onnx writes for a Keras ResNet's stem: an NHWC input, Casts, the Transpose to NCHW, a ZeroPadding2D
    (Pad), a strided Conv, then a residual block whose shortcut is a 1x1 Conv (branches with different halos)."""
    pads = numpy_helper.from_array(np.array([0, 0, 3, 3, 0, 0, 3, 3], np.int64), "pads")
    nodes = [
        helper.make_node("Cast", ["image"], ["c0"], name="cast0", to=TensorProto.FLOAT),
        helper.make_node("Cast", ["c0"], ["c1"], name="cast1", to=TensorProto.FLOAT),
        helper.make_node("Cast", ["c1"], ["c2"], name="cast2", to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["c2"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        helper.make_node("Pad", ["nchw", "pads"], ["padded"], name="zero_pad"),
        helper.make_node("Conv", ["padded", "w1"], ["stem"], name="conv1", kernel_shape=[7, 7], strides=[2, 2]),
        helper.make_node("Relu", ["stem"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["a"], name="block_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["ra", "w3"], ["b"], name="block_b", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["r1", "w4"], ["short"], name="shortcut", kernel_shape=[1, 1]),
        helper.make_node("Add", ["b", "short"], ["sum"], name="residual"),
        helper.make_node("Relu", ["sum"], ["out"], name="relu_out"),
        helper.make_node("GlobalAveragePool", ["out"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], name="fc"),
    ]
    inits = [pads, weight("w1", [8, 3, 7, 7], 1), weight("w2", [8, 8, 3, 3], 2), weight("w3", [8, 8, 3, 3], 3),
             weight("w4", [8, 8, 1, 1], 4), weight("fc", [8, 10], 5)]
    return make_model(nodes, [tensor("image", [1, 40, 36, 3])], [tensor("y", [1, 10])], inits)


def test_an_nhwc_export_is_tiled_through_casts_pad_and_a_residual_block(tmp_path):
    """issue 31, items 1-2: on a Keras export the stack was 3 Casts (0 MACs), in NCHW terms for an NHWC image.
    The image is tiled in its own layout through the Casts, the Transpose and the Pad, and on through the residual
    block, whose two branches need different halos (the tile graph crops the wider one)."""
    path = tmp_path / "keras.onnx"
    onnx.save_model(_keras_resnet_stem(), str(path))
    analysis = analyze(load_graph(path))
    stack = fused_stack(analysis.graph, analysis.nodes)
    assert [layer.name for layer in stack][:6] == ["cast0", "cast1", "cast2", "to_nchw", "zero_pad", "conv1"]
    assert stack[-1].output == "out" and stack[0].in_layout == "NHWC" and stack[0].in_shape == (1, 3, 40, 36)
    plan = plan_tiles(analysis, 2, BOARD, (2, 2), stacks=1)
    document = write_tiles(analysis, plan, tmp_path / "tiles")
    assert document.image_layout == "NHWC" and document.verification.passed, document.verification
    assert document.verification.max_abs_err < 1e-4
    tile = onnx.load(str(tmp_path / "tiles" / document.artifacts.tiles[0]))
    assert any(node.op_type == "Slice" for node in tile.graph.node)  # the shortcut's input cropped to its need
    pads = {t.name: numpy_helper.to_array(t) for t in tile.graph.initializer if t.name.endswith("__tile_pads")}
    assert [list(v) for v in pads.values()] == [[0, 0, 3, 3, 0, 0, 0, 0]]  # tile 0: top and left borders only
    # item 4: --reuse, refused here before (its Casts, its residual block), in the image's layout through both
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")


# Every CNN of the test corpus, at a size a test runs quickly.
CORPUS_CNNS = {
    "ocr_det": (lambda: rapidocr_model(DET_MODEL), {"x": (1, 3, 320, 320)}),
    "ocr_cls": (lambda: rapidocr_model(CLS_MODEL), {"x": (1, 3, 48, 192)}),
    "ocr_rec": (lambda: rapidocr_model(REC_MODEL), {"x": (1, 3, 48, 320)}),
    "yolov8n": (lambda: packaged_model(*NUDENET[:2]), NUDENET[2]),
    "picodet": (lambda: packaged_model(*LAYOUT[:2]), {"image": (1, 3, 320, 320)}),
    "mtcnn_pnet": (lambda: packaged_model(*MTCNN_PNET[:2]), MTCNN_PNET[2]),
    "mtcnn_onet": (lambda: packaged_model(*MTCNN_ONET[:2]), MTCNN_ONET[2]),
    "orientation": (lambda: packaged_model(*ORIENTATION[:2]), ORIENTATION[2]),
}


@pytest.mark.parametrize("name", sorted(CORPUS_CNNS))
def test_every_corpus_cnn_gets_a_verified_tile_plan(name, tmp_path):
    """issue 31, item 5: each corpus CNN gets an automatic 2-node tile plan whose stitched tiles, and the
    remainder after them, give the model's outputs (verified against onnxruntime when written); its longest stack
    reaches at least 80% of the MACs before the model's first layer that mixes the whole map (the stacks
    stopped at 2-5% of all MACs on the detectors, at 0.3% on the recognizer). The same plan with --reuse is
    verified too."""
    model, shapes = CORPUS_CNNS[name]
    analysis = analyze(load_graph(model(), shapes))
    plan = plan_tiles(analysis, 2, BOARD)
    document = write_tiles(analysis, plan, tmp_path / name)
    assert document.verification.passed, document.verification
    coverage = plan.coverage
    assert coverage is not None and coverage.whole_map_node is not None
    # Where the region stops before the outputs, each stop is named (the PP-OCR detector's reaches its output).
    assert coverage.stops or coverage.region_macs > 0.99 * coverage.model_macs
    assert (coverage.whole_map_node, coverage.macs_before_whole_map) == macs_before_whole_map(analysis.graph,
                                                                                                analysis.nodes)[::-1]
    assert coverage.deepest_stack_macs >= 0.8 * coverage.macs_before_whole_map, coverage
    assert 0 < plan.tiled_macs_total <= coverage.deepest_stack_macs
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")  # and with --reuse (target 3)


def test_a_feature_pyramid_runs_on_dask_in_stacks_that_hand_on_several_maps(tmp_path):
    """issue 31, items 2 and 5: YOLOv8n's plan has stacks that read and hand on several maps (the pyramid's taps
    and levels), chosen on a link where the tiles' bytes cost little; on Dask each tile gets a crop of every map its
    stack reads, and the outputs match the model."""
    from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench

    model, shapes = CORPUS_CNNS["yolov8n"]
    analysis = analyze(load_graph(model(), shapes))
    plan = plan_tiles(analysis, 2, BOARD, (1, 2), cluster_link_bps=100e9)
    assert any(len(phase.grid.output_names) > 1 for phase in plan.stacks)
    assert any(len(phase.grid.inputs) > 1 for phase in plan.stacks[1:])
    document = write_tiles(analysis, plan, tmp_path / "yolo")
    assert document.all_stacks[-1].output_names == plan.stacks[-1].grid.output_names
    for handoff in ("client", "workers"):  # workers: a later stack's tiles assembled from the cells the workers hold
        report = run_tile_bench(tmp_path / "yolo", TileBenchOptions(images=1, scaling=False, handoff=handoff))
        assert report.outputs_match is True, handoff
    # item 4: with --reuse on a 2x2 grid, through the pyramid's Resize, Concats and several maps per stack: the
    # second-phase tasks assemble each unit's inputs from their neighbours' results on the workers
    plan = plan_tiles(analysis, 2, BOARD, (2, 2), stacks=3, cluster_link_bps=100e9)
    assert any(len(phase.grid.output_names) > 1 for phase in plan.stacks)
    reused = _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")
    report = run_tile_bench(tmp_path / "reuse", TileBenchOptions(images=1, scaling=False))
    assert report.outputs_match is True and report.reuse["saved_macs"] == reused.reuse.saved_macs


@pytest.mark.parametrize("mode, transform", [("nearest", "asymmetric"), ("linear", "half_pixel"),
                                             ("cubic", "pytorch_half_pixel")])
def test_a_resize_inside_the_stack_tiles_exactly(mode, transform, tmp_path):
    """issue 31, item 2: an FPN's upsampling (Resize by 2, nearest as YOLOv8 and PP-OCR export it, or
    interpolated) inside a stack: each tile resizes its crop with a halo and keeps what it needs."""
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                         strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Resize", ["r1", "", "scales"], ["up"], name="upsample", mode=mode,
                         coordinate_transformation_mode=transform),
        helper.make_node("Conv", ["x", "w2"], ["side"], name="lateral", kernel_shape=[1, 1]),
        helper.make_node("Add", ["up", "side"], ["merged"], name="merge"),
        helper.make_node("Conv", ["merged", "w3"], ["y"], name="conv3", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    model = make_model(nodes, [tensor("x", [1, 3, 30, 26])], [tensor("y", [1, 4, 30, 26])],
                       [scales, weight("w1", [6, 3, 3, 3], 1), weight("w2", [6, 3, 1, 1], 2),
                        weight("w3", [4, 6, 3, 3], 3)])
    path = tmp_path / "fpn.onnx"
    onnx.save_model(model, str(path))
    analysis = analyze(load_graph(path))
    plan = plan_tiles(analysis, 2, BOARD, (3, 2), "y", stacks=1)
    assert [layer.name for layer in plan.stack] == ["conv1", "relu1", "upsample", "lateral", "merge", "conv3"]
    document = write_tiles(analysis, plan, tmp_path / "tiles")
    assert document.verification.passed and document.verification.max_abs_err < 1e-4, document.verification
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")  # the second phase resizes its rectangle's halo too


def test_the_plan_says_where_the_stacks_stop_and_why():
    """issue 31, items 2-3: on YOLOv8n the region of tileable layers goes through the neck's Resizes and stops at
    the three heads' Reshapes (each named, with its op and how deep the region got); the longest stack is all of
    it (it hands on the three heads' maps), and the plan gives the share of MACs tiled and the first layer that
    mixes the whole map."""
    model, shapes = CORPUS_CNNS["yolov8n"]
    analysis = analyze(load_graph(model(), shapes))
    plan = plan_tiles(analysis, 2, BOARD, (1, 2), stacks=1)
    coverage = plan.coverage
    assert coverage is not None and coverage.whole_map_op == "Reshape"
    assert [(s.node, s.op_type, s.after_layers) for s in coverage.stops] == [
        ("/model.22/Reshape", "Reshape", 159), ("/model.22/Reshape_1", "Reshape", 188),
        ("/model.22/Reshape_2", "Reshape", 212)]
    assert all(s.whole_map and s.reason == "mixes the whole map" for s in coverage.stops)
    assert coverage.region_macs > 0.99 * coverage.model_macs
    assert coverage.deepest_stack_layers == coverage.region_layers == 212 and coverage.live_after_stack == ()
    figures = plan.to_dict()["coverage"]
    assert figures["tiled_macs"] == plan.tiled_macs_total <= coverage.deepest_stack_macs == coverage.region_macs
    assert 1.0 < plan.speedup_bound < 2.0 and 0 < plan.tiled_time_share < 1


def test_partition_warns_where_tiles_can_help_little(capsys, tmp_path):
    """issue 31, item 3: the PP-OCR classifier at 48x192 is tileable to its head (99% of the MACs, past 9
    squeeze-and-excitation blocks), but its layers take so little time that each stack's round trip through the
    cluster outweighs what it saves: the plan tiles the 12 layers before the first block (5% of the MACs), is
    written (it is correct), and one warning line says why it gives little, with the figures."""
    from splitnn.cli.main import main

    model, shapes = CORPUS_CNNS["ocr_cls"]
    args = ["partition", str(model()), "--input-shape", "x:1x3x48x192", "--strategy", "tiles", "--nodes", "2",
            "-o", str(tmp_path / "cls")]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    captured = capsys.readouterr()
    assert exit_.value.code in (0, None)
    warning = [line for line in captured.err.splitlines() if "tiles can help little" in line]
    assert len(warning) == 1 and "deeper stacks (to 99% of the MACs) are predicted slower" in warning[0], captured.err
    assert "at most 1.0" in warning[0] and "10 ms round trip" in warning[0]
    assert "the tileable region stops at GlobalAveragePool@9 (GlobalAveragePool) after 165 layers" in captured.out
    assert "the stacks can go past 9 squeeze-and-excitation blocks" in captured.out


def test_partition_warns_where_the_cluster_round_trips_outweigh_the_tiles(capsys, tmp_path):
    """issue 31, item 3: MTCNN's O-Net is 98% tileable but takes a few milliseconds: each stack's round trip
    through the cluster costs more than the tiles save, and the plan (predicted slower than one node) says so."""
    from splitnn.cli.main import main

    model, _ = CORPUS_CNNS["mtcnn_onet"]
    with pytest.raises(SystemExit) as exit_:
        main(["partition", str(model()), "--input-shape", "input_3:1x48x48x3", "--strategy", "tiles", "--nodes", "2",
              "-o", str(tmp_path / "onet")])
    captured = capsys.readouterr()
    assert exit_.value.code in (0, None)
    warning = [line for line in captured.err.splitlines() if "tiles can help little" in line]
    assert len(warning) == 1 and "round trip through the cluster" in warning[0], captured.err


def test_reuse_runs_on_an_nhwc_export(tmp_path):
    """issue 31, item 4: --reuse was refused on NHWC models. MTCNN's O-Net (keras2onnx: NHWC input, PRelu) in a
    2x2 grid: the second-phase tiles take their overlaps from their neighbours, in the image's own layout for the
    layers before the Transpose; verified when written, and the same on Dask."""
    from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench

    model, shapes = CORPUS_CNNS["mtcnn_onet"]
    analysis = analyze(load_graph(model(), shapes))
    plan = plan_tiles(analysis, 2, BOARD, (2, 2), stacks=1)
    assert plan.stack[0].in_layout == "NHWC"
    document = write_tiles(analysis, plan, tmp_path / "onet", reuse=True)
    assert document.verification.passed and document.reuse.saved_macs > 0, document.reuse
    report = run_tile_bench(tmp_path / "onet", TileBenchOptions(images=1, scaling=False))
    assert report.outputs_match is True


def test_reuse_runs_on_unfolded_hardswish(tmp_path):
    """issue 31, item 4: the PP-OCR classifier's stack is Conv, BatchNormalization and HardSwish written out
    (Add, Clip, Mul, Div: a diamond): each conv and its pointwise tail is one unit of the second phase."""
    model, shapes = CORPUS_CNNS["ocr_cls"]
    analysis = analyze(load_graph(model(), shapes))
    plan = plan_tiles(analysis, 2, BOARD, (2, 2), stacks=1)
    assert {"Clip", "Div"} <= {layer.op_type for layer in plan.stack}
    document = write_tiles(analysis, plan, tmp_path / "cls", reuse=True)
    assert document.verification.passed and document.reuse.saved_macs > 0, document.reuse


def _focus(op: str = "Focus"):
    """YOLOX/YOLOv5's Focus stem (four strided Slices of the image, concatenated) then a Conv; or SpaceToDepth and
    DepthToSpace around a Conv (op="SpaceToDepth")."""
    ints = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    inits = [weight("w1", [8, 12, 3, 3], 1), weight("w2", [4, 8, 3, 3], 2)]
    if op == "Focus":
        nodes, parts = [], []
        for k, (dy, dx) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
            inits += [ints(f"s{k}", [dy, dx]), ints(f"e{k}", [2**62, 2**62]), ints(f"a{k}", [2, 3]), ints(f"t{k}", [2, 2])]
            nodes.append(helper.make_node("Slice", ["x", f"s{k}", f"e{k}", f"a{k}", f"t{k}"], [f"p{k}"], name=f"slice{k}"))
            parts.append(f"p{k}")
        nodes.append(helper.make_node("Concat", parts, ["focus"], name="focus", axis=1))
    else:
        nodes = [helper.make_node("SpaceToDepth", ["x"], ["focus"], name="s2d", blocksize=2)]
    nodes += [helper.make_node("Conv", ["focus", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c1"], ["r1"], name="relu1")]
    if op == "Focus":
        nodes.append(helper.make_node("Conv", ["r1", "w2"], ["y"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        out = [1, 4, 15, 13]
    else:
        nodes.append(helper.make_node("DepthToSpace", ["r1"], ["y"], name="d2s", blocksize=2))
        out = [1, 2, 30, 26]
    return make_model(nodes, [tensor("x", [1, 3, 30, 26])], [tensor("y", out)], inits)


@pytest.mark.parametrize("op", ["Focus", "SpaceToDepth"])
def test_a_focus_stem_and_space_to_depth_are_tiled(op, tmp_path):
    """issue 31, item 2: a YOLOX-style detector was refused ('Slice is not a spatial layer'). Strided Slices of the
    map (each tile slices its crop from its first row and column) and SpaceToDepth/DepthToSpace join the stack."""
    path = tmp_path / "focus.onnx"
    onnx.save_model(_focus(op), str(path))
    analysis = analyze(load_graph(path))
    stack = fused_stack(analysis.graph, analysis.nodes)
    assert stack[-1].output == "y" and len(stack) == len(analysis.graph.nodes) - sum(n.is_constant for n in analysis.graph.nodes)
    plan = plan_tiles(analysis, 2, BOARD, (3, 2), "y", stacks=1)
    document = write_tiles(analysis, plan, tmp_path / "tiles")
    assert document.verification.passed and document.verification.max_abs_err < 1e-4, document.verification


def _assert_reuse_is_exact(analysis, plan, folder):
    """With --reuse the plan is verified when written, saves MACs, and the graphs written (first-phase tiles whole,
    second-phase tiles unit by unit) hold the MACs the reuse geometry counts, stack by stack (a stack with one
    window computes no overlap, and saves none)."""
    document = write_tiles(analysis, plan, folder, reuse=True)
    assert document.verification.passed and document.verification.max_abs_err < 1e-4, document.verification
    for stack, files in zip(document.all_stacks, [document.artifacts, *document.artifacts.later_stacks]):
        assert files.reuse is not None
        names = [*files.reuse.first_phase.values()]
        names += [name for units in files.reuse.second_phase_layers.values() for name in units.values()]
        counted = sum(cost.macs for name in names for cost in analyze(load_graph(folder / name)).nodes)
        assert counted == stack.reuse.macs, stack.reuse
    assert sum(stack.reuse.saved_macs or 0 for stack in document.all_stacks) > 0
    return document


def test_reuse_runs_where_the_element_type_changes(tmp_path):
    """issue 31, item 4: --reuse was refused on a stack with a Cast; each unit's graph now takes its inputs and
    gives its outputs in their own element types."""
    from tests.onnxsplit.tiles.test_real_layouts import _unfolded_bn

    path = tmp_path / "bn.onnx"
    onnx.save_model(_unfolded_bn(), str(path))
    analysis = analyze(load_graph(path))
    plan = plan_tiles(analysis, 2, BOARD, (2, 2), "c2", stacks=1)
    assert "Cast" in {layer.op_type for layer in plan.stack}
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")


def test_reuse_runs_across_residual_blocks(sample_path, tmp_path):
    """issue 31, item 4: a residual block's shortcut spans units and --reuse was refused. A unit now reads the
    outputs of any earlier units (the Add reads the block's input and its last conv), each assembled over what
    it reads from the tile's own rectangles and its neighbours' outputs."""
    analysis = analyze(load_graph(sample_path("resnet18", 64)))
    deepest = fused_stack(analysis.graph, analysis.nodes)[-1].output
    plan = plan_tiles(analysis, 2, BOARD, (2, 2), deepest, stacks=1)
    assert sum(len(layer.data_inputs) > 1 for layer in plan.stack) >= 2  # residual Adds are in the stack
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")


def _squeeze_excitation():
    """Two squeeze-and-excitation blocks as PyTorch (GlobalAveragePool, 1x1 Convs, HardSigmoid, Mul by the vector)
    and tf2onnx (ReduceMean keeping the dims, the vector first in the Mul) write them, between 3x3 convolutions,
    then a classifier head (GlobalAveragePool, Flatten, Gemm)."""
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("HardSwish", ["c1"], ["x1"], name="hswish1"),
        helper.make_node("GlobalAveragePool", ["x1"], ["pool1"], name="se1_pool"),
        helper.make_node("Conv", ["pool1", "s1a"], ["sq1"], name="se1_squeeze", kernel_shape=[1, 1]),
        helper.make_node("Relu", ["sq1"], ["sr1"], name="se1_relu"),
        helper.make_node("Conv", ["sr1", "s1b"], ["ex1"], name="se1_excite", kernel_shape=[1, 1]),
        helper.make_node("HardSigmoid", ["ex1"], ["gate1"], name="se1_gate"),
        helper.make_node("Mul", ["x1", "gate1"], ["y1"], name="se1_scale"),
        helper.make_node("Conv", ["y1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["x2"], name="relu2"),
        helper.make_node("ReduceMean", ["x2"], ["pool2"], name="se2_pool", axes=[2, 3], keepdims=1),
        helper.make_node("Sigmoid", ["pool2"], ["gate2"], name="se2_gate"),
        helper.make_node("Mul", ["gate2", "x2"], ["y2"], name="se2_scale"),
        helper.make_node("Conv", ["y2", "w3"], ["c3"], name="conv3", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c3"], ["gap"], name="head_pool"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], name="fc"),
    ]
    inits = [weight("w1", [16, 8, 3, 3], 1), weight("s1a", [4, 16, 1, 1], 2), weight("s1b", [16, 4, 1, 1], 3),
             weight("w2", [16, 16, 3, 3], 4), weight("w3", [16, 16, 3, 3], 5), weight("fc", [16, 10], 6)]
    return make_model(nodes, [tensor("image", [1, 8, 40, 36])], [tensor("y", [1, 10])], inits, opset=14)


def test_stacks_go_past_squeeze_and_excitation_blocks(tmp_path, monkeypatch):
    """issue 31, item 3: a squeeze-and-excitation block no longer ends the tileable region. The stack before it hands
    on the map, the client computes the block's vector from the stitched map, and every tile of the next stack
    reads the whole vector; the region then stops at the head's GlobalAveragePool. Verified against onnxruntime,
    and on Dask the outputs equal the model's."""
    from splitnn.onnxsplit.measure.tiles import TileBenchOptions, run_tile_bench
    from splitnn.onnxsplit.tiles.stack_region import tileable_region

    path = tmp_path / "se.onnx"
    onnx.save(_squeeze_excitation(), str(path))
    analysis = analyze(load_graph(path))
    region = tileable_region(analysis.graph, analysis.nodes)
    assert [layer.name for layer in region.layers] == ["conv1", "hswish1", "se1_scale", "conv2", "relu2", "se2_scale",
                                                       "conv3"]
    assert [(step.at, step.names, step.outputs) for step in region.client_steps] == [
        (2, ("se1_pool", "se1_squeeze", "se1_relu", "se1_excite", "se1_gate"), ("gate1",)),
        (5, ("se2_pool", "se2_gate"), ("gate2",))]
    assert [(s.node, s.reason) for s in region.stops] == [("head_pool", "mixes the whole map")]
    plan = plan_tiles(analysis, 2, BOARD, (2, 1), stacks=3)
    assert [len(phase.stack) for phase in plan.stacks] == [2, 3, 2]
    assert [phase.before.names[0] if phase.before else None for phase in plan.stacks] == [None, "se1_pool", "se2_pool"]
    assert plan.stacks[2].grid.inputs == ("x2", "gate2")  # the map first, the vector read whole
    assert all(tile.input_regions[1] == (0, 1, 0, 1) for tile in plan.stacks[2].grid.tiles)
    assert plan.tiles_phase_s > sum(phase.phase_s for phase in plan.stacks) + 3 * 0.010  # the client steps count
    document = write_tiles(analysis, plan, tmp_path / "se")
    assert document.verification.passed and document.verification.max_abs_err < 1e-4, document.verification
    assert [s.client_step.outputs if s.client_step else () for s in document.all_stacks] == [(), ("gate1",), ("gate2",)]
    assert document.coverage is not None and document.coverage.client_steps == 2
    report = run_tile_bench(tmp_path / "se", TileBenchOptions(images=1, scaling=False))
    assert report.outputs_match is True
    # With the maps left on the workers, the client computes each vector from the sums of the map's cells: both
    # steps take the map only through its mean (GlobalAveragePool, ReduceMean over H and W).
    steps = [files.client_step for files in document.artifacts.later_stacks]
    assert len(steps) == 2 and all(step and pooled_step(tmp_path / "se" / step.model, {step.inputs[0]: "NCHW"})
                                   for step in steps)
    stitched: list[set[str]] = []  # what the client stitches from the workers' cells: the remainder's map alone
    monkeypatch.setattr(dask_runtime, "_stitch_held",
                        lambda client, held, names, real=dask_runtime._stitch_held: stitched.append(set(names)) or
                        real(client, held, names))
    report = run_tile_bench(tmp_path / "se", TileBenchOptions(images=1, scaling=False, handoff="workers"))
    assert report.outputs_match is True
    assert stitched and all(not names & {"x1", "x2"} for names in stitched), stitched
    # issue 31, item 4: with --reuse the second phase's units read the vector whole, on Dask as in the verification
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")
    assert run_tile_bench(tmp_path / "reuse", TileBenchOptions(images=1, scaling=False)).outputs_match is True


@pytest.mark.parametrize("kernel, stride, pads", [(2, 2, 0), (4, 2, 1), (3, 1, 1), (3, 2, 0)])
def test_a_conv_transpose_inside_the_stack_tiles_exactly(kernel, stride, pads, tmp_path):
    """issue 31, item 2: a ConvTranspose (the PP-OCR detector's head upsamples with two, kernel 2 stride 2; a
    PyTorch FCN's is kernel 4 stride 2 pad 1) joins the stack: each tile reads every input that reaches its
    output through some tap and crops what it computed; the stitched tiles equal the model's output."""
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("ConvTranspose", ["r1", "wt", "bt"], ["up"], name="deconv", kernel_shape=[kernel, kernel],
                         strides=[stride, stride], pads=[pads] * 4),
        helper.make_node("Conv", ["up", "w2"], ["out"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    size = (stride * (19 - 1) + kernel - 2 * pads, stride * (17 - 1) + kernel - 2 * pads)
    inits = [weight("w1", [6, 3, 3, 3], 1), weight("wt", [6, 4, kernel, kernel], 2), weight("bt", [4], 3),
             weight("w2", [5, 4, 3, 3], 4)]
    path = tmp_path / "deconv.onnx"
    onnx.save(make_model(nodes, [tensor("image", [1, 3, 19, 17])], [tensor("out", [1, 5, *size])], inits), str(path))
    analysis = analyze(load_graph(path))
    plan = plan_tiles(analysis, 2, BOARD, (3, 2), stacks=1)
    assert [layer.op_type for layer in plan.stack] == ["Conv", "Relu", "ConvTranspose", "Conv"]
    assert plan.stack[2].out_shape[2:] == size
    document = write_tiles(analysis, plan, tmp_path / "tiles")
    assert document.verification.passed and document.verification.max_abs_err < 1e-4, document.verification
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")


def test_a_conv_transpose_with_gaps_or_output_padding_stops_the_region(tmp_path):
    from splitnn.onnxsplit.tiles.stack_region import tileable_region

    for attrs, why in (({"kernel_shape": [1, 1], "strides": [2, 2]}, "leaves output positions no input reaches"),
                       ({"kernel_shape": [3, 3], "strides": [2, 2], "output_padding": [1, 1]}, "output_padding")):
        nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv1", kernel_shape=[1, 1]),
                 helper.make_node("ConvTranspose", ["c1", "wt"], ["up"], name="deconv", **attrs)]
        out = 2 * 8 - 1 + (1 if "output_padding" in attrs else 0) + (2 if attrs["kernel_shape"] == [3, 3] else 0)
        path = tmp_path / "gap.onnx"
        onnx.save(make_model(nodes, [tensor("image", [1, 3, 8, 8])], [tensor("up", [1, 4, out, out])],
                             [weight("w1", [6, 3, 1, 1], 1), weight("wt", [6, 4, *attrs["kernel_shape"]], 2)]), str(path))
        analysis = analyze(load_graph(path))
        region = tileable_region(analysis.graph, analysis.nodes)
        assert [layer.name for layer in region.layers] == ["conv1"]
        assert region.stops[0].node == "deconv" and why in region.stops[0].reason, region.stops


def test_a_stack_may_end_just_before_a_squeeze_and_excitation_block(tmp_path):
    """--fuse-until the map an SE block reads: one stack hands it on, and the client step runs in the remainder
    (the block's vector is not the stack's output)."""
    from splitnn.onnxsplit.tiles.stack_region import tileable_region

    path = tmp_path / "se.onnx"
    onnx.save(_squeeze_excitation(), str(path))
    analysis = analyze(load_graph(path))
    assert tileable_region(analysis.graph, analysis.nodes).boundaries[-1] == 2
    assert [layer.name for layer in fused_stack(analysis.graph, analysis.nodes, "x1")] == ["conv1", "hswish1"]
    plan = plan_tiles(analysis, 2, BOARD, (2, 1), "x1")
    assert write_tiles(analysis, plan, tmp_path / "x1").verification.passed


def test_a_conv_transpose_without_kernel_shape_stops_the_region_in_one_line(tmp_path):
    from splitnn.onnxsplit.tiles.stack_region import tileable_region

    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], name="conv1", kernel_shape=[1, 1]),
             helper.make_node("ConvTranspose", ["c1", "wt"], ["up"], name="deconv")]
    path = tmp_path / "nokernel.onnx"
    onnx.save(make_model(nodes, [tensor("image", [1, 3, 8, 8])], [tensor("up", [1, 4, 10, 10])],
                         [weight("w1", [6, 3, 1, 1], 1), weight("wt", [6, 4, 3, 3], 2)]), str(path))
    analysis = analyze(load_graph(path))
    stops = tileable_region(analysis.graph, analysis.nodes).stops
    assert stops[0].node == "deconv" and "no kernel_shape attribute" in stops[0].reason


def test_reuse_takes_a_unit_that_reads_one_map_twice(tmp_path):
    """A layer that reads the same map twice (x * x as the stack's first layer) is one input of its unit's graph."""
    nodes = [
        helper.make_node("Mul", ["image", "image"], ["squared"], name="square"),
        helper.make_node("Conv", ["squared", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["out"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    ]
    path = tmp_path / "square.onnx"
    onnx.save(make_model(nodes, [tensor("image", [1, 3, 20, 18])], [tensor("out", [1, 4, 20, 18])],
                         [weight("w1", [6, 3, 3, 3], 1), weight("w2", [4, 6, 3, 3], 2)]), str(path))
    analysis = analyze(load_graph(path))
    plan = plan_tiles(analysis, 2, BOARD, (2, 2), "out", stacks=1)
    assert plan.stack[0].data_inputs == ("image", "image")
    _assert_reuse_is_exact(analysis, plan, tmp_path / "reuse")
