"""The user's own inputs, for measuring what a codec at the cut does (partition --calibration, issue 14).

Three forms:
- a .npz file: one array per model input, named as the input, the samples stacked on a new first axis (or, for a
  model of one input, any one array);
- a .npy file: the samples of a model of one input, stacked the same way;
- a folder of images (PNG, JPEG, BMP, WebP), read with Pillow and turned into the model's input by a
  `Preprocess`: resized to the input's height and width, scaled, mean and std taken out, laid out NCHW or NHWC.

A stacked array may also hold one sample of exactly the input's shape. Every sample must have the input's shape
and a dtype that converts to the input's without loss of kind (float to float, integer to integer).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.graph import Graph

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input: value = (pixel * scale - mean) / std, per channel in `color` order."""

    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "auto"  # "nchw", "nhwc", or "auto": NHWC when the input's last dimension is 1 or 3
    color: str = "rgb"  # or "bgr" (OpenCV-trained models)


# The normalization of torchvision's and most ImageNet-trained models: `--preprocess imagenet`.
IMAGENET = {"scale": 1 / 255, "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


def parse_preprocess(text: str) -> Preprocess:
    """`scale=1/255,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nchw,color=rgb` (any subset); `imagenet`
    stands for the first three, and may be followed by others (`imagenet,color=bgr`)."""
    fields: dict[str, Any] = {}  # Preprocess's keyword arguments
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        try:
            if key == "imagenet" and not value:
                fields.update(IMAGENET)
            elif key == "scale":
                top, _, bottom = value.partition("/")
                fields[key] = float(top) / float(bottom or 1)
            elif key in ("mean", "std"):
                fields[key] = tuple(float(v) for v in value.split(":"))
            elif key == "layout" and value.lower() in ("nchw", "nhwc", "auto"):
                fields[key] = value.lower()
            elif key == "color" and value.lower() in ("rgb", "bgr"):
                fields[key] = value.lower()
            else:
                raise ValueError
        except (ValueError, ZeroDivisionError):
            raise SplitnnError(f"--preprocess: cannot read '{item}' (use imagenet, scale=1/255, mean=A:B:C, std=A:B:C, "
                               "layout=nchw|nhwc, color=rgb|bgr)") from None
    preprocess = Preprocess(**fields)
    if any(s == 0 for s in preprocess.std):
        raise SplitnnError("--preprocess: a std of 0 divides by zero: give the real standard deviation")
    return preprocess


def load_calibration(path: str | Path, graph: Graph, preprocess: Preprocess | None = None,
                     limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """The calibration inputs at `path` (see the module doc), each a feed of every model input."""
    path = Path(path)
    if not path.exists():
        raise SplitnnError(f"--calibration: '{path}' does not exist: give a .npz or .npy file or a folder of images")
    if path.is_dir():
        samples = _images(path, graph, preprocess or Preprocess())
        if not samples:
            _refuse_a_folder_of_arrays(path)
    elif path.suffix.lower() in (".npz", ".npy"):
        samples = _arrays(path, graph)
    else:
        raise SplitnnError(f"--calibration: '{path}' is neither a .npz or .npy file nor a folder of images")
    if not samples:
        raise SplitnnError(f"--calibration: '{path}' holds no sample: add some")
    return samples[:limit] if limit else samples


def _refuse_a_folder_of_arrays(folder: Path) -> None:
    """A folder holds images only: one of .npy/.npz files gets how to stack them into the one file it takes."""
    arrays = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".npy", ".npz"))
    if not arrays:
        return
    shown = ", ".join(arrays[:3]) + (f" and {len(arrays) - 3} more" if len(arrays) > 3 else "")
    suffix = Path(arrays[0]).suffix.lower()
    stack = ("np.save('calibration.npy', np.stack([np.load(f) for f in sorted(glob.glob('{d}/*.npy'))]))"
             if suffix == ".npy" else
             "files = [np.load(f) for f in sorted(glob.glob('{d}/*.npz'))]; np.savez('calibration.npz', "
             "**{{k: np.stack([f[k] for f in files]) for k in files[0].files}})").format(d=folder)
    raise SplitnnError(f"--calibration: '{folder}' holds no image but {len(arrays)} array file(s) ({shown}): a folder "
                       f"is read as images; stack the samples into one file (python -c \"import glob, numpy as np; "
                       f"{stack}\") and give --calibration calibration{suffix}")


def _arrays(path: Path, graph: Graph) -> list[dict[str, np.ndarray]]:
    try:
        loaded = np.load(path, allow_pickle=False)
        arrays: Mapping[str, np.ndarray] = dict(loaded.items()) if path.suffix.lower() == ".npz" else {"": loaded}
    except (OSError, ValueError, EOFError) as exc:
        raise SplitnnError(f"--calibration: cannot read '{path}' ({exc}): give a file numpy wrote (np.save, np.savez)") from None
    inputs = list(graph.inputs)
    if len(arrays) == 1 and len(inputs) == 1:
        arrays = {inputs[0]: next(iter(arrays.values()))}
    missing = [name for name in inputs if name not in arrays]
    if missing:
        raise SplitnnError(f"--calibration: '{path}' has no array for model input(s) {', '.join(missing)} "
                           f"(it has {', '.join(arrays) or 'none'}): name them as the inputs")
    stacks = {name: _stacked(name, arrays[name], graph) for name in inputs}
    counts = {len(s) for s in stacks.values()}
    if len(counts) > 1:
        raise SplitnnError(f"--calibration: the inputs hold different numbers of samples ({sorted(counts)}): give as many of each")
    return [{name: stacks[name][i] for name in inputs} for i in range(counts.pop())]


def _stacked(name: str, array: np.ndarray, graph: Graph) -> list[np.ndarray]:
    info = graph.info(name)
    shape, dtype = tuple(info.shape), np.dtype(info.dtype)
    if np.issubdtype(dtype, np.floating) != np.issubdtype(array.dtype, np.floating):
        raise SplitnnError(f"--calibration: input '{name}' is {dtype}, the array is {array.dtype}: convert it")
    if array.shape == shape:
        return [array.astype(dtype)]
    if array.shape[1:] == shape:
        return [a.astype(dtype) for a in array]
    if shape and shape[0] == 1 and array.shape[1:] == shape[1:]:  # samples stacked along the batch axis
        return [a[None].astype(dtype) for a in array]
    raise SplitnnError(f"--calibration: input '{name}' takes {list(shape)}, the array is {list(array.shape)}: "
                       f"stack samples of {list(shape)} on a new first axis")


def _images(folder: Path, graph: Graph, preprocess: Preprocess) -> list[dict[str, np.ndarray]]:
    inputs = list(graph.inputs)
    if len(inputs) != 1:
        raise SplitnnError(f"--calibration: a folder of images feeds a model of one input, this one has {len(inputs)}: "
                           "give a .npz with one array per input")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    name = inputs[0]
    return [{name: image_input(path, graph.info(name).shape, np.dtype(graph.info(name).dtype), preprocess)} for path in files]


def image_input(path: Path, shape: tuple[int, ...], dtype: np.dtype, preprocess: Preprocess) -> np.ndarray:
    """One image as a model input of `shape` (rank 4, batch 1)."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 4 or shape[0] != 1:
        raise SplitnnError(f"--calibration: images feed an input of shape [1, C, H, W] or [1, H, W, C], not {list(shape)}")
    nhwc = preprocess.layout == "nhwc" or (preprocess.layout == "auto" and shape[3] in (1, 3) and shape[1] not in (1, 3))
    channels, height, width = (shape[3], shape[1], shape[2]) if nhwc else (shape[1], shape[2], shape[3])
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L" if channels == 1 else "RGB").resize((width, height)), np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise SplitnnError(f"--calibration: cannot read image '{path}' ({exc}): remove it or convert it") from None
    pixels = pixels.reshape(height, width, channels)
    if preprocess.color == "bgr" and channels == 3:
        pixels = pixels[..., ::-1]
    values = (pixels * preprocess.scale - np.asarray(preprocess.mean, np.float32)) / np.asarray(preprocess.std, np.float32)
    return (values if nhwc else values.transpose(2, 0, 1))[None].astype(dtype)
