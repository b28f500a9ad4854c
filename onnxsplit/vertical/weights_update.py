"""After retraining: put the new weights into a written split, and say what the device must download.

The retrained model must have the same graph: the same nodes, wiring and
attributes, and weights of the same names, shapes and dtypes; only the
weight values may differ. That is checked with a fingerprint of the graph's
structure stored in plan.json at partition time, computed from the
weightless skeleton, so the check reads no weight bytes.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from splitnn.onnxsplit.artifacts.bench_inputs import plan_feeds
from splitnn.onnxsplit.artifacts.layout import DEVICE_DIR, MODEL_FILE, ORT_FILE, SERVER_DIR, WEIGHTS_FILE
from splitnn.onnxsplit.artifacts.plan_file import (
    AdaptivePlanFile,
    PartUpdateRecord,
    VerticalPlanFile,
    WeightsUpdateRecord,
    load_verification_data,
    read_plan,
    write_plan,
)
from splitnn.onnxsplit.artifacts.verification import Verification
from splitnn.onnxsplit.artifacts.weight_swap import (
    load_part,
    move_into_place,
    retrained_weights,
    swap_weights,
    update_reference,
)
from splitnn.onnxsplit.core.errors import SplitnnError

SIDES = (DEVICE_DIR, SERVER_DIR)


@dataclass(frozen=True)
class PartUpdate:
    side: str
    changed: list[str]  # weight names whose values changed
    changed_bytes: int  # bytes of those weights: what must travel to that side
    blob_bytes: int


@dataclass(frozen=True)
class OrtUpdate:
    """What became of the device's .ort in an update that changed device weights."""

    rebuilt: bool
    rebuilt_for: tuple[str, ...]  # the changed weights the kept .ort no longer held as they were
    folded: tuple[str, ...]  # the weights the .ort now in place does not hold as they were (plan.device_ort_folded)


def update_weights(outdir: str | Path, retrained: str | Path) -> WeightsUpdateRecord:
    """Rewrite both weight blobs of the split in `outdir` from `retrained`; return the report.

    The new files are staged and renamed into place per part. The ORT-format device part embeds its weights;
    it is kept when no changed weight is one it no longer holds as it was (plan.device_ort_folded: onnxruntime
    folded, fused or reshaped it writing the file) and, given the new blob's weights it holds at load
    (add_initializer), it reproduces the updated part on the kept verification input: then only the changed
    tensors travel. Otherwise it is rebuilt from the updated part (part_files.convert_to_ort, as partition writes
    it), and travels too.
    """
    outdir = Path(outdir)
    plan = _vertical_plan(outdir)
    new_values = retrained_weights(retrained, plan.graph_fingerprint)
    kept = load_verification_data(outdir)
    feeds = kept[0] if kept is not None else plan_feeds(plan, 0)
    updates: list[PartUpdate] = []
    ort = None
    for side in SIDES:
        if (outdir / side / MODEL_FILE).is_file():
            update, side_ort = _update_side(outdir, side, new_values, feeds, plan)
            updates.append(update)
            ort = side_ort if side == DEVICE_DIR else ort
    device = next((u for u in updates if u.side == DEVICE_DIR), None)
    download = device.changed_bytes if device else 0
    if ort is not None and ort.rebuilt:
        download += (outdir / DEVICE_DIR / ORT_FILE).stat().st_size
    report = WeightsUpdateRecord(
        retrained=str(retrained),
        parts={u.side: PartUpdateRecord(tuple(u.changed), u.changed_bytes, u.blob_bytes) for u in updates},
        device_download_bytes=download,
        ort_rebuilt=None if ort is None else ort.rebuilt,
        ort_rebuilt_for=() if ort is None else ort.rebuilt_for,
    )
    if ort is not None:
        plan = replace(plan, device_ort_weights_from_blob=not ort.rebuilt, device_ort_folded=ort.folded)
    update_reference(outdir, retrained)
    write_plan(outdir, replace(plan, weights_update=report))
    return report


def _vertical_plan(outdir: Path) -> VerticalPlanFile:
    plan = read_plan(outdir)
    if isinstance(plan, AdaptivePlanFile):
        read_plan(outdir, "vertical")  # refused with the reason (adaptive plans are not run yet)
    if not isinstance(plan, VerticalPlanFile):
        raise SplitnnError(f"'{outdir}' holds a tile plan: update-weights swaps the weights of a vertical split; for "
                           "tiles, partition the retrained model again with --strategy tiles (the tiles, the "
                           "remainder and the neuron slices are all cut from it)")
    return plan


def _update_side(outdir: Path, side: str, new_values: dict[str, np.ndarray], feeds: dict[str, np.ndarray],
                 plan: VerticalPlanFile) -> tuple[PartUpdate, OrtUpdate | None]:
    """Swap one part's changed weights in place; what became of its .ort (None: none, or nothing changed)."""
    from splitnn.onnxsplit.artifacts.part_files import write_part_graph

    part = load_part(outdir / side / MODEL_FILE, f"{side} part")
    changed, changed_bytes = swap_weights(part, new_values)
    ort = None
    if changed:
        staging = Path(tempfile.mkdtemp(prefix=f".{side}.", dir=outdir))
        try:
            write_part_graph(part, staging)
            if side == DEVICE_DIR and (outdir / side / ORT_FILE).exists():
                ort = _update_ort(outdir / side, staging, changed, _ort_folded(outdir / side, plan), feeds,
                                  plan.verification)
            move_into_place(staging, outdir / side)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return PartUpdate(side, changed, changed_bytes, (outdir / side / WEIGHTS_FILE).stat().st_size), ort


def _ort_folded(folder: Path, plan: VerticalPlanFile) -> tuple[str, ...]:
    """The weights the .ort in `folder` (not yet updated) does not hold as they were: the plan's record, or for a
    plan written before it was kept, read from the file (by name, type and shape only where an earlier update
    kept the .ort, whose blob has changed since)."""
    from splitnn.onnxsplit.artifacts.part_files import ort_folded_weights

    if plan.device_ort_folded is not None:
        return plan.device_ort_folded
    return ort_folded_weights(folder / ORT_FILE, folder / MODEL_FILE, values=not plan.device_ort_weights_from_blob)


def _update_ort(folder: Path, staging: Path, changed: list[str], folded: tuple[str, ...],
                feeds: dict[str, np.ndarray], verification: Verification) -> OrtUpdate:
    """Keep the .ort in `folder` when it can take the new weights from the blob staged in `staging`, else rebuild
    it there from the staged part, as partition writes it."""
    from splitnn.onnxsplit.artifacts.part_files import convert_to_ort

    rebuilt_for = tuple(name for name in changed if name in set(folded))
    if not rebuilt_for and _ort_reproduces(folder / ORT_FILE, staging / MODEL_FILE, folded, feeds, verification):
        return OrtUpdate(False, (), folded)
    return OrtUpdate(True, rebuilt_for, convert_to_ort(staging / MODEL_FILE, staging / ORT_FILE))


def _ort_reproduces(ort_path: Path, new_part: Path, folded: tuple[str, ...], feeds: dict[str, np.ndarray],
                    verification: Verification) -> bool:
    """Whether the existing .ort, given at load the new part's weights it holds as they were (all but `folded`),
    computes what the new part computes. A .ort that fails to load or run so does not."""
    from splitnn.onnxsplit.artifacts.part_files import blob_initializers
    from splitnn.onnxsplit.artifacts.verification import compare_outputs
    from splitnn.onnxsplit.core.ort_session import create_session

    reference = create_session(new_part, prepack=False)
    names = [o.name for o in reference.get_outputs()]
    inputs = {i.name: feeds[i.name] for i in reference.get_inputs()}
    expected = dict(zip(names, reference.run(names, inputs)))
    try:
        kept = create_session(ort_path, prepack=False, initializers=blob_initializers(new_part, leave_out=folded),
                              quiet=True)
        outputs = kept.run(names, inputs)
    except Exception:  # onnxruntime's errors share no base class but Exception; any of them is a "no" here
        return False
    _, same = compare_outputs(dict(zip(names, outputs)), expected, verification.atol, verification.rtol)
    return same
