"""A pipeline plan's two baselines, run beside it (issue 33, item 5): the best plan over the source and one other
machine, and the source alone.

Each is planned again from the model and the machines the plan keeps (the
planner is exact and deterministic, so it is the plan partition compared
against), written and verified into a temporary folder as partition writes a
pipeline plan, and run by run_pipeline_bench like the plan itself: every
stage a process held to its machine's predicted time, every link emulated.
A baseline that is the plan itself (a plan over two machines, or the source
alone) is not run again.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.artifacts.plan_file import PipelinePlanFile, model_path, read_pipeline_plan
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.measure.pipeline import BaselineRun, run_pipeline_bench
from splitnn.onnxsplit.pipeline.export import plan_model_analysis, write_like
from splitnn.onnxsplit.pipeline.planning import PipelinePlan, choose_pipeline, plan_machines

BASELINES = ("two machines", "source alone")


def run_baselines(outdir: str | Path, requests: int, stream: bool, timeout_s: float,
                  progress: Callable[[str, int, int], None] | None = None, time_scale: float = 1.0
                  ) -> tuple[tuple[BaselineRun, ...], tuple[str, ...]]:
    """The two-machine plan and the source alone of the pipeline plan in `outdir`, each run as the plan is (the same
    requests, a stream where `stream`, the same `time_scale`); and each baseline left out, with why (the plan
    itself, one no machine can hold, the model gone, or a run that failed: the plan's own report is kept)."""
    folder = Path(outdir)
    plan = read_pipeline_plan(folder)
    model = model_path(folder, plan)
    if not model.is_file():
        return (), tuple(f"{name}: not run, the model '{model}' is gone (they are planned again from it)"
                         for name in BASELINES)
    analysis = plan_model_analysis(folder, plan)
    choice = choose_pipeline(analysis, plan_machines(plan), plan.objective)
    runs, left_out = [], []
    for name, baseline in zip(BASELINES, (choice.two_machines, choice.source_alone)):
        if baseline is None:
            left_out.append(f"{name}: no such plan fits the machines' memory")
        elif baseline.figures() == plan.predicted:
            left_out.append(f"{name}: the plan itself")
        else:
            try:
                runs.append(_run_one(name, baseline, analysis, plan, (requests, stream, timeout_s, time_scale),
                                     progress))
            except SplitnnError as exc:
                left_out.append(f"{name}: its run failed ({exc})")
    return tuple(runs), tuple(left_out)


def _run_one(name: str, baseline: PipelinePlan, analysis: Analysis, plan: PipelinePlanFile,
             how: tuple[int, bool, float, float], progress: Callable[[str, int, int], None] | None) -> BaselineRun:
    """One baseline written to a temporary folder (with the plan's ORT choice and tolerances) and run there."""
    requests, stream, timeout_s, time_scale = how
    with tempfile.TemporaryDirectory(prefix="splitnn-baseline-") as scratch:
        folder = Path(scratch) / "plan"
        write_like(analysis, baseline, plan_machines(plan), plan, folder)
        step = (lambda what, done, total: progress(f"{name}: {what}", done, total)) if progress else None
        report = run_pipeline_bench(folder, requests, stream, timeout_s, step, time_scale=time_scale)
    figures = baseline.figures()
    return BaselineRun(name, figures.machines, figures.latency_s, figures.throughput_fps, report.latency_p50_s,
                       report.stream_fps, report.run_predicted_latency_s, report.run_predicted_fps,
                       report.outputs_match)
