"""Per-node costs: MACs from a registry of per-operator handlers, parameters and outputs generically.

A handler takes a Node and the Graph and returns the node's multiply-accumulate
count (MACs). Adding an operator is adding one decorated function in the
module of its family and one test. An operator with no handler costs 0 MACs
and is reported as unknown, never silently.

Conventions (stated once, used everywhere):
- MACs: a multiply-accumulate is one MAC; an elementwise or comparison
  operation on one element also counts one. Bias additions are not counted
  (Conv MACs = N*Cout*Hout*Wout*(Cin/group)*kh*kw, Gemm/MatMul = M*N*K).
- params: elements of the floating-point constants a node reads (initializers
  and Constant-node outputs), each constant counted once, at its first reader
  in topological order. BatchNormalization's running mean and variance are
  statistics, not learned parameters, and are left out of `params` (the
  torchvision convention), but their bytes are in `param_bytes`, as are
  integer constants such as Reshape shapes.
- output_bytes: bytes of the node's outputs that are not constants.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from splitnn.onnxsplit.core.records import Record
from splitnn.onnxsplit.model.graph import Graph, Node

MacHandler = Callable[[Node, Graph], int]

_HANDLERS: dict[str, MacHandler] = {}

# Inputs that are constant but not learned parameters, by op type and input position.
_STATISTICS_INPUTS: dict[str, frozenset[int]] = {"BatchNormalization": frozenset({3, 4})}


def register(*op_types: str, domain: str = "") -> Callable[[MacHandler], MacHandler]:
    """Decorator: make `handler` the MAC formula of `op_types` in `domain` (default: the ONNX domain)."""

    def wrap(handler: MacHandler) -> MacHandler:
        for op_type in op_types:
            key = _key(domain, op_type)
            if key in _HANDLERS:
                raise ValueError(f"two MAC handlers for {op_type}")
            _HANDLERS[key] = handler
        return handler

    return wrap


def _key(domain: str, op_type: str) -> str:
    return op_type if domain in ("", "ai.onnx") else f"{domain}.{op_type}"


def handler_for(node: Node) -> MacHandler | None:
    return _HANDLERS.get(_key(node.domain, node.op_type))


def registered_ops() -> list[str]:
    """The op types with a formula (other domains' prefixed with the domain, e.g. com.microsoft.QLinearAdd)."""
    return sorted(_HANDLERS)


@dataclass(frozen=True)
class UnpricedOps(Record):
    """The nodes with work to do (not computed from constants alone) whose operator has no MAC formula: each is
    priced at 0 MACs, so at 0 s on every profile, and a prediction made from the costs leaves its work out. A plan
    carries this (plan.json too) so that every command that plans or predicts can say so."""

    counts: dict[str, int]  # op type -> nodes of it, most first

    @property
    def nodes(self) -> int:
        return sum(self.counts.values())

    @property
    def op_types(self) -> tuple[str, ...]:
        return tuple(self.counts)


def unpriced_ops(graph: Graph) -> UnpricedOps | None:
    """The nodes of `graph` priced at 0 because their operator is unknown; None when there is none."""
    counts = Counter(node.op_type for node in graph.nodes if not node.is_constant and handler_for(node) is None)
    return UnpricedOps(dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))) if counts else None


@dataclass(frozen=True)
class NodeCost:
    """What one node costs: compute, the weights it brings, the activations it makes."""

    name: str
    op_type: str
    macs: int
    params: int
    param_bytes: int
    output_bytes: int
    known: bool  # False when no handler exists for op_type (macs is then 0)
    static: bool = False  # computed from constants alone: its work is done once, not per inference


def node_costs(graph: Graph) -> list[NodeCost]:
    """The cost of every node of `graph`, in topological order."""
    counted: set[str] = set()
    costs: list[NodeCost] = []
    for node in graph.nodes:
        params = 0
        param_bytes = 0
        if not node.is_constant:
            statistics = _STATISTICS_INPUTS.get(node.op_type, frozenset())
            reads = list(enumerate(node.inputs)) + [(-1, name) for name in node.implicit_inputs]
            for position, name in reads:
                if not name or name in counted or not graph.is_constant(name):
                    continue
                counted.add(name)
                param_bytes += graph.constant_values[name]
                if position not in statistics and _is_float(graph, name):
                    params += _elements(graph, name)
        handler = handler_for(node)
        macs = int(handler(node, graph)) if handler is not None else 0
        output_bytes = sum(
            graph.tensors[out].nbytes for out in node.outputs if out and not graph.is_constant(out) and out in graph.tensors
        )
        costs.append(
            NodeCost(
                name=node.name,
                op_type=node.op_type,
                macs=macs,
                params=params,
                param_bytes=param_bytes,
                output_bytes=output_bytes,
                known=handler is not None,
                static=node.is_constant,
            )
        )
    return costs


def _is_float(graph: Graph, name: str) -> bool:
    dtype = graph.initializers[name].dtype if name in graph.initializers else graph.tensors[name].dtype
    return np.issubdtype(np.dtype(dtype), np.floating)


def _elements(graph: Graph, name: str) -> int:
    shape = graph.initializers[name].shape if name in graph.initializers else graph.tensors[name].shape
    return int(np.prod(shape, dtype=np.int64))
