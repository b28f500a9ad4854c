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


def render_pipeline_bench(report: Any) -> None:
    """A PipelineBenchReport: per stage and per hop predicted beside measured, then latency and frames per second
    against the plan's and this run's predictions and the baselines' predictions."""
    from rich.table import Table

    console = stdout()
    dilated = (f"; every time dilated by {report.time_scale:g} and the figures divided back"
               if report.time_scale != 1.0 else "")
    console.print(f"[bold]Pipeline[/bold] {' -> '.join(report.machines)}: every stage a process on this machine, held to "
                  f"its machine's predicted time, every link emulated; {report.requests} requests{dilated}")
    table = Table(title="Per stage and hop (median ms)", title_justify="left")
    for column in ("where", "bytes", "predicted", "this host", "measured"):
        table.add_column(column, justify="left" if column == "where" else "right")
    for stage, host in zip(report.stages, report.host_s or (None,) * len(report.stages)):
        flag = " (this host is slower: runs at its speed)" if stage.host_slower else ""
        table.add_row(f"stage on {stage.machine}{flag}", "", f"{stage.predicted_s * 1e3:.1f}",
                      "" if host is None else f"{host * 1e3:.1f}", f"{stage.measured_s * 1e3:.1f}")
    for hop in report.hops:
        table.add_row(f"{hop.sender} -> {hop.receiver}", human_bytes(hop.bytes), f"{hop.predicted_s * 1e3:.1f}", "",
                      f"{hop.measured_s * 1e3:.1f}")
    console.print(table)
    line = (f"latency p50 {report.latency_p50_s * 1e3:.1f} ms, p95 {report.latency_p95_s * 1e3:.1f} ms; predicted "
            f"{report.predicted_latency_s * 1e3:.1f} by the plan")
    if report.run_predicted_latency_s is not None:
        line += f", {report.run_predicted_latency_s * 1e3:.1f} for this run"
    console.print(line)
    if report.stream_fps is not None:
        line = f"stream: {report.stream_fps:.2f} frames/s; predicted {report.predicted_fps:.2f} by the plan"
        if report.run_predicted_fps is not None:
            line += f", {report.run_predicted_fps:.2f} for this run (each stage at the slower of its prediction and " \
                    "this host, and this host's cores)"
        console.print(line)
    if report.baselines:
        _render_baselines(console, report)
    if report.baselines or report.baselines_left_out:
        for line in report.baselines_left_out:
            console.print(f"baseline {line}")
    else:
        if report.two_machines_predicted_latency_s is not None:
            console.print(f"the best two-machine plan, predicted: {report.two_machines_predicted_latency_s * 1e3:.1f} "
                          f"ms, {report.two_machines_predicted_fps:.2f} frames/s (not run)")
        if report.source_alone_predicted_s is not None:
            console.print(f"the source alone, predicted: {report.source_alone_predicted_s * 1e3:.1f} ms (not run)")
    drop = report.drop
    if drop is not None:
        alone = f", {drop.answered_alone} answered by the source alone" if drop.failover else ""
        if drop.replanned:
            alone += (f", {drop.answered_replanned} through the stages planned again over the machines left "
                      f"({' -> '.join(drop.replanned)}, running {drop.replan_s:.1f} s after the first request that found the drop)")
        elif drop.replan_error:
            alone += f" (no plan over the machines left: {drop.replan_error})"
        console.print(f"stage on {drop.stage} killed after {drop.killed_after_answers} answers of a stream of "
                      f"{drop.requests}: {drop.answered} answered through the stages{alone}, {drop.failed} sent and "
                      f"never answered, {drop.not_sent} refused by the broken chain ({drop.failed_after_drop} "
                      f"unanswered were offered after the drop was seen), {drop.unaccounted} unaccounted for")
    if report.outputs_match is not None:
        verdict = "match" if report.outputs_match else "[red]DIFFER[/red]"
        console.print(f"outputs {verdict} the unpartitioned model (max abs error {report.max_abs_err:.3g})")


def _render_baselines(console: Any, report: Any) -> None:
    """The plan beside its baselines, run in the same bench: latency and frames per second, measured beside
    predicted, and the plan's measured figures against each baseline's."""
    from rich.table import Table

    table = Table(title="The plan and its baselines, run one after the other", title_justify="left")
    for column in ("plan", "machines", "latency p50 ms (pred)", "frames/s (pred)", "plan's latency", "plan's frames/s"):
        table.add_column(column, justify="left" if column in ("plan", "machines") else "right")
    fps = report.stream_fps
    table.add_row("this plan", " -> ".join(report.machines),
                  f"{report.latency_p50_s * 1e3:.1f} ({report.predicted_latency_s * 1e3:.1f})",
                  "" if fps is None else f"{fps:.2f} ({report.predicted_fps:.2f})", "", "")
    for base in report.baselines:
        faster = base.latency_p50_s / report.latency_p50_s
        table.add_row(base.name, " -> ".join(base.machines),
                      f"{base.latency_p50_s * 1e3:.1f} ({base.predicted_latency_s * 1e3:.1f})",
                      "" if base.stream_fps is None else f"{base.stream_fps:.2f} ({base.predicted_fps:.2f})",
                      f"{faster:.2f}x faster" if faster >= 1 else f"{1 / faster:.2f}x slower",
                      "" if fps is None or not base.stream_fps else f"{fps / base.stream_fps:.2f}x")
    console.print(table)
