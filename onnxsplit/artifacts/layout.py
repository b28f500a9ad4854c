"""The names inside a plan folder: the one place each artifact's file name is spelled.

OUTDIR/plan.json
OUTDIR/device/model.onnx, weights.bin, model.ort      a vertical split's device part
OUTDIR/server/model.onnx, weights.bin                 its server part
OUTDIR/tiles/model.onnx, weights.bin, tile_<id>.onnx  a tile plan's fused stack and tiles
OUTDIR/tiles/stack<k>/...                             its k-th stack after the first (same files)
OUTDIR/remainder/...                                  what runs after the tiles are stitched
OUTDIR/stages/<k>-<machine>/model.onnx, weights.bin[, model.ort]   a pipeline plan's stage k
OUTDIR/verification/inputs.npz, reference.npz         the verification input, the original's outputs on it
Paths stored in plan.json are relative to OUTDIR, with forward slashes.
"""
from __future__ import annotations

PLAN_FILE = "plan.json"
MODEL_FILE = "model.onnx"  # a part's graph; its weights are external data in WEIGHTS_FILE beside it
WEIGHTS_FILE = "weights.bin"
ORT_FILE = "model.ort"  # onnxruntime's mobile (ORT) format of the device part
DEVICE_DIR = "device"
SERVER_DIR = "server"
TILES_DIR = "tiles"
REMAINDER_DIR = "remainder"
STAGES_DIR = "stages"
VERIFICATION_INPUTS_FILE = "verification/inputs.npz"  # the input the parts were verified on
VERIFICATION_REFERENCE_FILE = "verification/reference.npz"  # the original model's outputs on it


CLIENT_STEP_DIR = "client_step"  # in a later stack's folder: what the client computes before its tiles


def tile_stack_dir(number: int) -> str:
    """The folder of a tile plan's stack `number` (0: the first, which reads the image)."""
    return TILES_DIR if number == 0 else f"{TILES_DIR}/stack{number}"


def stage_dir(number: int, machine: str) -> str:
    """A pipeline plan's folder for stage `number` (from 0), run on `machine`."""
    return f"{STAGES_DIR}/{number}-{machine}"
