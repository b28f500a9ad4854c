"""Cost models: per-operator MAC formulas (and, later, device, server and link models)."""
from __future__ import annotations

# Importing the family modules fills the registry.
from cost_models import (  # noqa: F401
    ops_conv,
    ops_data_movement,
    ops_elementwise,
    ops_matmul,
    ops_normalization,
    ops_pool,
    ops_reduce,
    ops_resize,
)
from cost_models.registry import NodeCost, handler_for, node_costs, register, registered_ops

__all__ = ["NodeCost", "handler_for", "node_costs", "register", "registered_ops"]
