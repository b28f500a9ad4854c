"""What a codec at the cut does, measured on the verification input (issue 14): the real encoded bytes of the
tensors the server part reads, and the model's outputs through the codec against the same parts without it."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from splitnn.onnxsplit.artifacts.chain import PartStep, outputs_of, run_steps
from splitnn.onnxsplit.artifacts.layout import MODEL_FILE, SERVER_DIR
from splitnn.onnxsplit.artifacts.parts import Part
from splitnn.onnxsplit.artifacts.plan_file import CodecRecord
from splitnn.onnxsplit.artifacts.verification import verification_session
from splitnn.onnxsplit.codecs.base import Raw
from splitnn.onnxsplit.codecs.specs import parse_codec


def measure_codec(folder: Path, server: Part, sent: dict[str, np.ndarray], plain: dict[str, np.ndarray],
                  spec: str) -> CodecRecord:
    """`sent`: the tensors the server part reads, as the device computed them; `plain`: the server part's outputs
    on them (the verification's). Runs the written server part in `folder` on them after the codec's round trip,
    and compares."""
    codec = parse_codec(spec)
    coded = {name: codec.encode(array) for name, array in sent.items()}
    raw_bytes = sum(len(Raw().encode(array)) for array in sent.values())
    step = PartStep(f"{SERVER_DIR}/{MODEL_FILE}", server.inputs, server.outputs)
    decoded = {n: codec.decode(c) for n, c in coded.items()}
    through = outputs_of(run_steps([step], decoded, lambda model: verification_session(folder / model)), server.outputs)
    abs_err, rel_err, top1 = 0.0, 0.0, []
    for name, want in plain.items():
        got = through[name]
        if not np.issubdtype(want.dtype, np.floating):
            abs_err = max(abs_err, float(np.abs(got.astype(np.float64) - want).max(initial=0.0)))
            continue
        error = float(np.abs(got - want).max(initial=0.0))
        abs_err, rel_err = max(abs_err, error), max(rel_err, error / max(float(np.abs(want).max(initial=0.0)), 1e-12))
        if want.ndim == 2 and want.shape[0] == 1 and want.shape[1] > 1:  # one row of scores: a classifier
            top1.append(int(got.argmax()) == int(want.argmax()))
    return CodecRecord(codec.name, raw_bytes, sum(len(c) for c in coded.values()), abs_err, rel_err,
                       all(top1) if top1 else None)
