"""partition as one job: a model file to a published, verified plan folder, whatever the options.

The command line (cli/partition.py) and the API (api.partition) both run `partition_model`; they differ only in
how they show what it says (JobHooks) and what they do with the result. The steps: analyze the model; for a
vertical split plan every cut (an image codec forces the cut at the input), then write one cut (its codec chosen
with it under --codec auto, or priced over a trace or a range of rates), or every cut an adaptive plan keeps; for
tiles plan the stacks and write the tiles. Each writer verifies its parts against the model before it publishes.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager

from splitnn.cost_models.profiles import DeviceProfile
from splitnn.onnxsplit.analysis.analyze import Analysis
from splitnn.onnxsplit.artifacts.plan_file import PlanFile
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.jobs.choices import CodecChoice, CutChoice, PlanningInputs, TilePlanning, VerificationChoice


def _say_nothing(_: Any) -> None:
    return None


def _no_status(_: str) -> ContextManager[Any]:
    return contextlib.nullcontext()


@dataclass(frozen=True)
class JobHooks:
    """What a job tells its caller while it runs; by default, nothing (the command line shows each)."""

    note: Callable[[str], None] = _say_nothing  # something the user should know: a choice not used, a caveat
    planned: Callable[[Any], None] = _say_nothing  # the plan, once made and before anything is written
    status: Callable[[str], ContextManager[Any]] = _no_status  # around a long step, named
    progress: Callable[[], ContextManager[Any]] | None = None  # a progress display (--codec auto's pairs)


@dataclass(frozen=True)
class Partitioned:
    """A published plan folder: its plan file, and the plan it was written from."""

    document: PlanFile
    plan: Any  # vertical.planning.Plan (every candidate cut) or tiles.planning.TilePlan (its stacks)
    trials: tuple[Any, ...] | None = None  # --codec auto: every cut and codec pair priced


@dataclass(frozen=True)
class PartitionJob:
    """Everything partition is asked for."""

    strategy: str = "vertical"  # or "tiles", or "pipeline" (over a machines file)
    planning: PlanningInputs | None = None  # a vertical split's profiles and limits (required for one)
    choice: CutChoice = field(default_factory=CutChoice)
    codec: CodecChoice = field(default_factory=CodecChoice)
    verification: VerificationChoice = field(default_factory=VerificationChoice)
    tiles: TilePlanning = field(default_factory=TilePlanning)
    machines: str | None = None  # the machines file of a pipeline plan


def partition_model(model: str | Path, out: str | Path, job: PartitionJob,
                    input_shapes: dict[str, tuple[int, ...]] | None = None, hooks: JobHooks | None = None
                    ) -> Partitioned:
    """Plan, write and verify `job` for `model` into the folder `out` (published only once verified)."""
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.model.loading import load_graph

    hooks = hooks or JobHooks()
    if job.strategy not in ("vertical", "tiles", "pipeline"):
        raise SplitnnError(f"unknown strategy '{job.strategy}': use vertical, tiles or pipeline")
    if job.strategy == "pipeline":
        return _pipeline(model, out, job, input_shapes, hooks)
    if job.codec.reply != "none" and job.strategy == "tiles":
        raise SplitnnError("--reply-codec applies to a split between a device and a server: drop it with "
                           "--strategy tiles")
    if job.strategy == "tiles":
        from splitnn.cost_models.catalog import load_device

        node = load_device(job.tiles.node_profile)  # a wrong name is said before the model is read
        return _tiles(analyze(load_graph(str(model), input_shapes or {})), node, out, job, hooks)
    analysis = analyze(load_graph(str(model), input_shapes or {}))
    from splitnn.onnxsplit.codecs.specs import image_spec
    from splitnn.onnxsplit.vertical.codec_planning import image_input_cut
    from splitnn.onnxsplit.vertical.planning import plan_split

    if job.planning is None:
        raise SplitnnError("a vertical split needs its device, server and link (PartitionJob.planning)")
    inputs, choice = job.planning, job.choice
    forced = choice.forced
    if image_spec(job.codec.spec) is not None:  # an image file is the model's input: everything else on the server
        forced = image_input_cut(analysis, job.codec.spec, choice.forced)
    plan = plan_split(analysis, inputs.device, inputs.server, inputs.link, choice.objective, inputs.constraints, forced)
    hooks.planned(plan)
    if choice.adaptive:
        return _adaptive(analysis, plan, out, job, hooks)
    return _vertical(analysis, plan, out, job, hooks)


def _vertical(analysis: Analysis, plan: Any, out: str | Path, job: PartitionJob, hooks: JobHooks) -> Partitioned:
    """One cut (and its codec) chosen, written and verified."""
    from splitnn.onnxsplit.vertical.export import write_split

    choice, codec, verification = job.choice, job.codec, job.verification
    if codec.spec == "auto" and (choice.trace is not None or choice.bandwidth_range is not None):
        raise SplitnnError("--codec auto picks the cut at the link's typical rate: with --trace or --bandwidth-range, "
                           "name a codec")
    calibration = _calibration(codec, analysis)
    spec, trials = codec.spec, None
    if spec == "auto":
        plan, spec, trials = _auto_codec(analysis, plan, codec, calibration, hooks)
    if choice.trace is not None:
        from splitnn.onnxsplit.vertical.link_range import plan_over_trace

        plan = plan_over_trace(plan, choice.trace, choice.trace_name or "", choice.percentile)
    if choice.bandwidth_range is not None:
        from splitnn.onnxsplit.vertical.link_range import plan_over_range

        plan = plan_over_range(plan, *choice.bandwidth_range)
    with hooks.status("writing and verifying the parts..."):
        document = write_split(analysis, plan, out, ort_format=verification.ort_format, atol=verification.atol,
                               rtol=verification.rtol, codec=spec, calibration=calibration,
                               max_output_change=codec.limit, codec_trials=trials, reply_codec=codec.reply)
    if codec.reply != "none" and document.reply_codec is None:
        why = ("plain float32 comes back soonest" if codec.reply == "auto" and not document.parts.server.empty
               else "the chosen cut sends nothing to the server")
        hooks.note(f"{why}, so --reply-codec {codec.reply} is not used")
    if spec != "none" and document.codec is None:
        hooks.note(f"the chosen cut sends nothing to the server, so --codec {codec.spec} is not used (choose a cut "
                   "that sends, with --cut or another --link)")
    return Partitioned(document, plan, tuple(trials) if trials is not None else None)


def _calibration(codec: CodecChoice, analysis: Analysis) -> Any:
    """The calibration inputs a codec is measured on (None: the verification input)."""
    if codec.calibration is None or (codec.spec == "none" and codec.reply == "none"):
        return None
    from splitnn.onnxsplit.model.calibration import load_calibration
    from splitnn.onnxsplit.vertical.export import CalibrationInputs

    return CalibrationInputs(tuple(load_calibration(codec.calibration, analysis.graph, codec.preprocess)),
                             codec.calibration)


def _auto_codec(analysis: Analysis, plan: Any, codec: CodecChoice, calibration: Any, hooks: JobHooks
                ) -> tuple[Any, str, Any]:
    """--codec auto: the cut and the codec chosen together (vertical/codec_planning)."""
    from splitnn.onnxsplit.model.sample_inputs import random_inputs
    from splitnn.onnxsplit.vertical.codec_check import default_limit
    from splitnn.onnxsplit.vertical.codec_planning import plan_cut_and_codec

    inputs = calibration.feeds if calibration is not None else (random_inputs(analysis.graph),)
    if calibration is None:
        hooks.note("--codec auto without --calibration measures the codecs on a random input; give your own inputs "
                   "for figures that hold on your data")
    display = hooks.progress() if hooks.progress is not None else contextlib.nullcontext(None)
    with display as progress:
        chosen = plan_cut_and_codec(analysis, plan, inputs, codec.limit or default_limit(analysis.graph),
                                    calibrated=calibration is not None, reply_spec=codec.reply, progress=progress)
    return chosen.plan, chosen.codec, chosen.trials


def _adaptive(analysis: Analysis, plan: Any, out: str | Path, job: PartitionJob, hooks: JobHooks) -> Partitioned:
    """Every cut that is best somewhere in the range of rates, each with its codec, written and verified."""
    from splitnn.onnxsplit.codecs.specs import require_one_codec
    from splitnn.onnxsplit.model.sample_inputs import random_inputs
    from splitnn.onnxsplit.vertical.adaptive import plan_adaptive, plan_adaptive_coded, write_adaptive
    from splitnn.onnxsplit.vertical.codec_check import default_limit

    choice, codec, verification = job.choice, job.codec, job.verification
    assert choice.bandwidth_range is not None  # cut_choice requires one with adaptive
    verification_feeds = None
    if codec.spec == "none" and codec.reply == "none":
        adaptive = plan_adaptive(plan, *choice.bandwidth_range)
    else:
        require_one_codec(codec.spec, "--adaptive")  # before any input is read
        calibration = _calibration(codec, analysis)
        inputs = list(calibration.feeds) if calibration is not None else [random_inputs(analysis.graph)]
        verification_feeds = inputs[0] if calibration is not None else None  # what run-bench sends: the user's
        with hooks.status(f"pricing every cut in {codec.spec}, the answers in {codec.reply}..."):
            adaptive = plan_adaptive_coded(analysis, plan, *choice.bandwidth_range, codec.spec, inputs,
                                           codec.limit or default_limit(analysis.graph), codec.reply)
    with hooks.status("writing and verifying the kept cuts..."):
        document = write_adaptive(analysis, adaptive, out, ort_format=verification.ort_format,
                                  atol=verification.atol, rtol=verification.rtol, feeds=verification_feeds)
    return Partitioned(document, adaptive)


def _tiles(analysis: Analysis, node: DeviceProfile, out: str | Path, job: PartitionJob, hooks: JobHooks
           ) -> Partitioned:
    """The tile plan on nodes of profile `node`, written and verified."""
    from splitnn.onnxsplit.tiles.export import write_tiles
    from splitnn.onnxsplit.tiles.planning import plan_tiles

    tiles, verification = job.tiles, job.verification
    plan = plan_tiles(analysis, tiles.nodes, node, tiles.grid, tiles.fuse_until,
                      tiles.stacks, tiles.fc_split, tiles.cluster_link_bps)
    hooks.planned(plan)
    with hooks.status("writing and verifying the tiles..."):
        document = write_tiles(analysis, plan, out, reuse=tiles.reuse, atol=verification.atol, rtol=verification.rtol)
    return Partitioned(document, plan)


def _pipeline(model: str | Path, out: str | Path, job: PartitionJob, input_shapes: dict[str, tuple[int, ...]] | None,
              hooks: JobHooks) -> Partitioned:
    """Stages over the machines of `job.machines`, written and verified chained."""
    from splitnn.cost_models.machines import read_machines
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.pipeline.export import write_pipeline
    from splitnn.onnxsplit.pipeline.planning import choose_pipeline

    if job.machines is None:
        raise SplitnnError("a pipeline plan needs a machines file (--machines FILE)")
    c = job.choice
    vertical_only = {"--cut": c.forced, "--adaptive": c.adaptive or None, "--trace": c.trace,
                     "--percentile": c.percentile, "--bandwidth-range": c.bandwidth_range,
                     "--codec": None if job.codec.spec == "none" else job.codec.spec,
                     "--reply-codec": None if job.codec.reply == "none" else job.codec.reply}
    given = [flag for flag, value in vertical_only.items() if value is not None]
    if given:
        raise SplitnnError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to a split between a "
                           "device and a server: drop it with --machines (its machines and links are the file's)")
    if c.objective not in ("latency", "throughput"):
        raise SplitnnError(f"--objective {c.objective}: a pipeline plan is chosen for latency or throughput")
    machines = read_machines(job.machines)  # a bad file is said before the model is read
    analysis = analyze(load_graph(str(model), input_shapes or {}))
    with hooks.status("choosing the stages..."):
        choice = choose_pipeline(analysis, machines, job.choice.objective)
    hooks.planned(choice)
    with hooks.status("writing and verifying the stages..."):
        document = write_pipeline(analysis, choice, machines, out, str(job.machines), atol=job.verification.atol,
                                  rtol=job.verification.rtol, ort_format=job.verification.ort_format)
    return Partitioned(document, choice)
