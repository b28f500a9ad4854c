"""`analyze`: every node's cost, the model's totals and every cut, as plain data."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from splitnn.cost_models import NodeCost, node_costs
from splitnn.onnxsplit.analysis.cuts import Cut, enumerate_cuts
from splitnn.onnxsplit.analysis.memory import peak_activation_bytes
from splitnn.onnxsplit.model.graph import CONTROL_FLOW_OPS, Graph


@dataclass(frozen=True)
class Totals:
    macs: int  # per inference: static nodes left out
    params: int
    param_bytes: int  # as held in memory: a value computed from stored ones (int8 cast to float) at its own size
    peak_activation_bytes: int
    stored_param_bytes: int = 0  # as the file stores them: initializers and Constant nodes' values
    static_macs: int = 0  # the static nodes' work, done once (when a part loads or is folded)
    static_nodes: int = 0


@dataclass(frozen=True)
class Analysis:
    graph: Graph
    nodes: list[NodeCost]
    totals: Totals
    cuts: list[Cut]
    unknown_ops: dict[str, list[str]]  # op type -> names of its nodes

    @property
    def warnings(self) -> list[str]:
        lines = []
        for op_type, names in self.unknown_ops.items():
            what = f"{len(names)} {op_type} node{'s' if len(names) > 1 else ''} (e.g. '{names[0]}')"
            if op_type in CONTROL_FLOW_OPS:
                lines.append(
                    f"{what}: control flow is opaque: its body is counted as 0 MACs and no cut goes inside it"
                )
            else:
                lines.append(f"{what}: no cost formula for this operator, counted as 0 MACs")
        return lines

    def best_cuts(self, count: int) -> list[Cut]:
        """The `count` interior cuts that send the fewest bytes, in model order."""
        interior = [cut for cut in self.cuts if 0 < cut.id < len(self.cuts) - 1]
        smallest = sorted(interior, key=lambda cut: (cut.bytes, cut.id))[:count]
        return sorted(smallest, key=lambda cut: cut.id)

    def to_dict(self) -> dict[str, Any]:
        graph = self.graph
        return {
            "model": str(graph.path) if graph.path else None,
            "opset": graph.opset,
            "inputs": [
                {"name": n, "shape": list(graph.info(n).shape), "dtype": graph.info(n).dtype, "bytes": graph.info(n).nbytes}
                for n in graph.inputs
            ],
            "outputs": [
                {"name": n, "shape": list(graph.info(n).shape), "dtype": graph.info(n).dtype, "bytes": graph.info(n).nbytes}
                for n in graph.outputs
            ],
            "nodes": [asdict(cost) for cost in self.nodes],
            "totals": asdict(self.totals),
            "cuts": [{**asdict(cut), "tensors": list(cut.tensors)} for cut in self.cuts],
            "unknown_ops": [{"op_type": op, "count": len(names), "nodes": names} for op, names in self.unknown_ops.items()],
            "warnings": self.warnings,
            "notes": list(graph.shape_notes),
        }


def analyze(graph: Graph) -> Analysis:
    costs = node_costs(graph)
    unknown: dict[str, list[str]] = {}
    for cost in costs:
        if not cost.known:
            unknown.setdefault(cost.op_type, []).append(cost.name)
    totals = Totals(
        macs=sum(c.macs for c in costs if not c.static),
        params=sum(c.params for c in costs),
        param_bytes=sum(c.param_bytes for c in costs),
        peak_activation_bytes=peak_activation_bytes(graph),
        stored_param_bytes=sum(info.nbytes for info in graph.initializers.values())
        + sum(graph.constant_values[out] for node in graph.nodes if node.is_constant and not node.is_static
              for out in node.outputs if out),
        static_macs=sum(c.macs for c in costs if c.static),
        static_nodes=sum(1 for node in graph.nodes if node.is_static and node.op_type != "Constant"),
    )
    return Analysis(graph=graph, nodes=costs, totals=totals, cuts=enumerate_cuts(graph, costs), unknown_ops=unknown)
