"""`splitnn samples`: build the reference networks deterministically."""
from __future__ import annotations

import json

import click

from splitnn.cli.render import human_bytes, stderr, stdout


@click.group()
def samples() -> None:
    """List and build the bundled reference networks (LeNet-5, AlexNet, VGG, ResNet-18, MobileNet).

    \b
    Examples:
      splitnn samples list
      splitnn samples build vgg16 -o vgg16.onnx
      splitnn samples build resnet18 -o r18.onnx --input-size 96 --external-data
    """


@samples.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_samples(as_json: bool) -> None:
    """Show the samples that can be built."""
    from rich.table import Table

    from splitnn.sample_models import SAMPLES

    if as_json:
        click.echo(json.dumps([{"name": s.name, "description": s.description, "default_input_size": s.default_size} for s in SAMPLES.values()], indent=1))
        return
    table = Table(title="Samples")
    table.add_column("name")
    table.add_column("input size", justify="right")
    table.add_column("description")
    for sample in SAMPLES.values():
        table.add_row(sample.name, str(sample.default_size), sample.description)
    stdout().print(table)


@samples.command("build")
@click.argument("name")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Where to write the .onnx file.")
@click.option("--input-size", type=click.IntRange(min=1), help="Input height and width (default: the network's own, 224 or 32).")
@click.option("--seed", default=0, show_default=True, help="Seed of the weights.")
@click.option("--external-data", is_flag=True, help="Write the weights to <name>.data beside the graph.")
def build(name: str, output: str, input_size: int | None, seed: int, external_data: bool) -> None:
    """Build sample NAME with seeded random weights and write it to OUTPUT."""
    from splitnn.onnxsplit.core.atomic_files import save_model_atomic
    from splitnn.sample_models import build_sample

    with stderr().status(f"building {name}..."):
        model = build_sample(name, input_size, seed)
        written = save_model_atomic(model, output, external_data=external_data)
    for path in written:
        stderr().print(f"wrote {path} ({human_bytes(path.stat().st_size)})")
