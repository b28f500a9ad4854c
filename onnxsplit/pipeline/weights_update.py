"""After retraining: a pipeline plan's stages take the retrained model's weights, and each machine is told what
it must download (issue 33, item 4).

Each stage's part is read with its blob and its changed weights are swapped
in (artifacts/weight_swap.py); a stage with a changed weight is written to a
staging folder beside its own, its .ort rebuilt there where the machine runs
one (the .ort holds its weights inside, so it travels whole). The stages are
then chained on the kept verification input, the staged ones in place of
theirs, against the retrained model; only when they agree are the staged
files renamed into place, stage by stage. The kept reference outputs become
the retrained model's.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from splitnn.onnxsplit.artifacts.bench_inputs import plan_feeds
from splitnn.onnxsplit.artifacts.layout import MODEL_FILE, ORT_FILE, WEIGHTS_FILE
from splitnn.onnxsplit.artifacts.part_files import convert_to_ort, write_part_graph
from splitnn.onnxsplit.artifacts.pipeline_records import PipelineWeightsUpdateRecord, StageFiles, StageUpdateRecord
from splitnn.onnxsplit.artifacts.plan_file import (
    PipelinePlanFile,
    load_verification_data,
    read_pipeline_plan,
    save_verification_data,
    write_plan,
)
from splitnn.onnxsplit.artifacts.verification import compare_outputs
from splitnn.onnxsplit.artifacts import weight_swap
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.ort_session import create_session
from splitnn.onnxsplit.pipeline.export import chain_stages


def update_pipeline_weights(outdir: str | Path, retrained: str | Path) -> PipelineWeightsUpdateRecord:
    """Every stage of the pipeline plan in `outdir` with the weights of `retrained` (the same graph); the report
    says, per stage, which weights changed and what its machine must download."""
    outdir = Path(outdir)
    plan = read_pipeline_plan(outdir)
    new_values = weight_swap.retrained_weights(retrained, plan.graph_fingerprint)
    kept = load_verification_data(outdir)
    feeds = kept[0] if kept is not None else plan_feeds(plan, 0)
    model = create_session(Path(retrained), prepack=False)
    expected = dict(zip(plan.outputs, model.run(list(plan.outputs), feeds)))
    staged: dict[str, Path] = {}
    try:
        records = [_stage(outdir, files, new_values, staged) for files in plan.files if files.model is not None]
        max_err = _chained_against(outdir, plan, staged, (feeds, expected), retrained)
        for files in plan.files:
            if files.machine in staged and files.folder is not None:
                weight_swap.move_into_place(staged[files.machine], outdir / files.folder)
    finally:
        for folder in staged.values():
            shutil.rmtree(folder, ignore_errors=True)
    if kept is not None:  # the kept reference becomes the retrained model's outputs (run-bench compares with them)
        save_verification_data(outdir, feeds, expected)
    report = PipelineWeightsUpdateRecord(str(retrained), tuple(records), max_err)
    write_plan(outdir, replace(plan, weights_update=report))
    return report


def _stage(outdir: Path, files: StageFiles, new_values: dict[str, np.ndarray], staged: dict[str, Path]
           ) -> StageUpdateRecord:
    """One stage's weights swapped; where one changed, its part (and .ort) written to a staging folder, kept in
    `staged` by machine."""
    assert files.model is not None and files.weights is not None
    part = weight_swap.load_part(outdir / files.model, f"stage on '{files.machine}'")
    changed, changed_bytes = weight_swap.swap_weights(part, new_values)
    if not changed:
        return StageUpdateRecord(files.machine, (), 0, (outdir / files.weights).stat().st_size)
    staging = staged[files.machine] = Path(tempfile.mkdtemp(prefix=f".{files.machine}.", dir=outdir))
    write_part_graph(part, staging)
    download = changed_bytes
    if files.ort is not None:
        convert_to_ort(staging / MODEL_FILE, staging / ORT_FILE)
        download = (staging / ORT_FILE).stat().st_size
    return StageUpdateRecord(files.machine, tuple(changed), changed_bytes, (staging / WEIGHTS_FILE).stat().st_size,
                             None if files.ort is None else True, download)


def _chained_against(outdir: Path, plan: PipelinePlanFile, staged: dict[str, Path],
                     check: tuple[dict[str, np.ndarray], dict[str, np.ndarray]], retrained: str | Path) -> float:
    """The largest difference between the stages chained (the staged ones in place of theirs) on `check`'s input
    and the retrained model's outputs on it; one line, and nothing replaced, where they disagree."""
    feeds, expected = check

    def path_of(stage: StageFiles) -> Path:
        if stage.machine in staged:
            return staged[stage.machine] / (ORT_FILE if stage.ort else MODEL_FILE)
        return outdir / (stage.ort or stage.model or "")

    outputs = chain_stages(plan.files, feeds, path_of)
    max_err, passed = compare_outputs(outputs, expected, plan.verification.atol, plan.verification.rtol)
    if not passed:
        raise SplitnnError(f"the updated stages chained differ from '{retrained}' by up to {max_err:.3g} (atol "
                           f"{plan.verification.atol}, rtol {plan.verification.rtol}); nothing was replaced")
    return max_err
