"""`splitnn update-weights`: sync a split after retraining."""
from __future__ import annotations

import json
from typing import Any

import click

from splitnn.cli.render import human_bytes, stdout


@click.command("update-weights")
@click.argument("outdir", metavar="OUTDIR", type=click.Path(file_okay=False))
@click.option("--from", "retrained", required=True, metavar="RETRAINED.onnx", help="The retrained model (same graph, new weights).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def update_weights(outdir: str, retrained: str, as_json: bool) -> None:
    """Replace the weights of a split in OUTDIR with those of RETRAINED.onnx.

    Checks that the graph is the same, rewrites device/weights.bin and
    server/weights.bin, and reports per part which tensors changed and how
    many bytes the device must download (0 when only server layers changed).
    The device's .ort is kept when it reproduces the updated part with the
    new blob's weights given at load, so only the changed tensors travel;
    where onnxruntime folded a changed weight into others when it wrote the
    .ort (plan.json's device_ort_folded), or the kept file does not
    reproduce the part, it is rebuilt, said and counted. The reference
    outputs run-bench compares against become the retrained model's.

    A pipeline plan (partition --machines): per stage, the tensors changed
    and what its machine must download (its .ort, rebuilt, where it runs
    one); the stages are chained against the retrained model before any
    file is replaced.

    \b
    Examples:
      splitnn update-weights out/vgg16 --from vgg16-finetuned.onnx
      splitnn update-weights out/r18 --from r18-v2.onnx --json
      splitnn update-weights out/pipe --from vgg16-finetuned.onnx     (a pipeline plan: each stage)
    """
    from splitnn.onnxsplit.api import update_weights as run_update
    from splitnn.onnxsplit.artifacts.pipeline_records import PipelineWeightsUpdateRecord

    report = run_update(outdir, retrained)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
        return
    console = stdout()
    if isinstance(report, PipelineWeightsUpdateRecord):
        _render_stages(console, report)
        return
    for side, part in report.parts.items():
        names = ", ".join(part.changed[:5]) + (f" +{len(part.changed) - 5}" if len(part.changed) > 5 else "")
        tensors = "tensor" if len(part.changed) == 1 else "tensors"
        console.print(f"{side}: {len(part.changed)} {tensors} changed ({human_bytes(part.changed_bytes)} of "
                      f"{human_bytes(part.blob_bytes)}){': ' + names if names else ''}")
    console.print(f"[bold]the device must download {human_bytes(report.device_download_bytes)}[/bold]"
                  f"{_ort_note(report.ort_rebuilt, report.ort_rebuilt_for)}")


def _ort_note(rebuilt: bool | None, rebuilt_for: tuple[str, ...]) -> str:
    """What became of the device's .ort, after the download."""
    if rebuilt is None:
        return ""
    if not rebuilt:
        return " (the .ort is kept: it takes the changed weights from the blob at load)"
    if not rebuilt_for:
        return (" (the changed tensors and the .ort, rebuilt: given the new weights at load, the old one did not "
                "reproduce the updated part)")
    names = ", ".join(rebuilt_for[:3]) + (f" +{len(rebuilt_for) - 3}" if len(rebuilt_for) > 3 else "")
    return (f" (the changed tensors and the .ort, rebuilt: onnxruntime had folded {names} into other weights when "
            "it wrote the old one)")


def _render_stages(console: Any, report: Any) -> None:
    """A pipeline plan's update: per stage, what changed and what its machine must download."""
    for stage in report.stages:
        tensors = "tensor" if len(stage.changed) == 1 else "tensors"
        names = ", ".join(stage.changed[:5]) + (f" +{len(stage.changed) - 5}" if len(stage.changed) > 5 else "")
        ort = " (its .ort, rebuilt: it holds its weights)" if stage.ort_rebuilt else ""
        console.print(f"stage on {stage.machine}: {len(stage.changed)} {tensors} changed ("
                      f"{human_bytes(stage.changed_bytes)} of {human_bytes(stage.blob_bytes)}){': ' + names if names else ''}"
                      f"; it must download {human_bytes(stage.download_bytes)}{ort}")
    console.print(f"verified: the stages chained match the retrained model (max abs error {report.max_abs_err:.3g})")
