"""What `splitnn partition --machines` prints: each stage and hop of a pipeline plan, and how it compares."""
from __future__ import annotations

from typing import Any

from splitnn.cli.render import human_bytes, stdout


def render_pipeline(document: Any) -> None:
    """A PipelinePlanFile as tables: what each machine does, what crosses each link, the prediction beside the best
    two-machine plan and the source alone, and a verdict where more machines do not help."""
    from rich.table import Table

    console = stdout()
    p = document.predicted
    profiles = {m.name: m.profile.name for m in document.machines}
    console.print(f"[bold]Pipeline plan[/bold] over {len(document.machines)} machines ({document.machines_file}), "
                  f"objective {document.objective}: {' -> '.join(p.machines)}")
    table = Table(title="Stages", title_justify="left")
    for column in ("stage", "machine", "profile", "layers", "MACs", "predicted ms", "memory / usable"):
        table.add_column(column, justify="left" if column in ("machine", "profile", "layers") else "right")
    for number, stage in enumerate(document.stages):
        layers = ("(relay: forwards what it receives)" if stage.empty else
                  f"{stage.end - stage.start}: {stage.first_node} .. {stage.last_node}")
        table.add_row(str(number), stage.machine, profiles[stage.machine], layers, f"{stage.macs / 1e6:,.1f} M",
                      f"{stage.compute_s * 1e3:.1f}", f"{human_bytes(stage.memory_bytes)} / {human_bytes(stage.usable_bytes)}")
    console.print(table)
    hops = Table(title="Hops", title_justify="left")
    for column in ("from", "to", "sends", "bytes", "predicted ms"):
        hops.add_column(column, justify="right" if column in ("bytes", "predicted ms") else "left")
    for hop in (*document.hops, *document.reply):
        what = "the answer" if hop.cut == document.stages[-1].end and hop in document.reply else _names(hop.tensors)
        hops.add_row(hop.sender, hop.receiver, what, human_bytes(hop.bytes), f"{hop.seconds * 1e3:.1f}")
    if document.hops or document.reply:
        console.print(hops)
    console.print(f"predicted: {p.latency_s * 1e3:.1f} ms per request, {p.throughput_fps:.2f} frames/s streamed "
                  f"(the slowest stage or link: {p.period_s * 1e3:.1f} ms)")
    for label, other in (("the best two-machine plan", document.two_machines), ("the source alone", document.source_alone)):
        console.print(_against(label, p, other, document.objective))
    verdict = _verdict(document)
    if verdict:
        console.print(verdict)
    v = document.verification
    console.print(f"verified: the stages chained against the model, max abs error {v.max_abs_err:.3g}")


def _names(tensors: tuple[str, ...]) -> str:
    return ", ".join(tensors[:3]) + (f" (+{len(tensors) - 3})" if len(tensors) > 3 else "")


def _against(label: str, p: Any, other: Any, objective: str) -> str:
    if other is None:
        return f"{label}: does not fit (the model exceeds its machines' memory)"
    if objective == "latency":
        ratio = other.latency_s / p.latency_s if p.latency_s else 1.0
        return (f"{label} ({' -> '.join(other.machines)}): {other.latency_s * 1e3:.1f} ms per request; this plan "
                f"{_factor(ratio, 'faster')}")
    ratio = p.throughput_fps / other.throughput_fps if other.throughput_fps else 1.0
    return (f"{label} ({' -> '.join(other.machines)}): {other.throughput_fps:.2f} frames/s; this plan "
            f"{_factor(ratio, 'the frames per second')}")


def _factor(ratio: float, what: str) -> str:
    if abs(ratio - 1.0) < 0.005:
        return "is the same"
    return f"{ratio:.2f}x {what}" if what == "faster" else f"gives {ratio:.2f}x {what}"


def _verdict(document: Any) -> str | None:
    """Where more machines than two do not help: said, with the figures."""
    p, two = document.predicted, document.two_machines
    if two is None or len(document.machines) <= 2:
        return None
    gain = (two.latency_s / p.latency_s if document.objective == "latency"
            else p.throughput_fps / two.throughput_fps)
    if gain >= 1.05:
        return None
    working = [s.machine for s in document.stages if not s.empty]
    return (f"more machines do not help here: the best plan over all {len(document.machines)} runs parts on "
            f"{len(working)} of them and is {gain:.2f}x the best two-machine plan")
