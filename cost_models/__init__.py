"""Cost models: per-operator MACs, the roofline on device profiles, link profiles, fitted profiles.

Depends on onnxsplit's `core` and `model` layers only (the loaded Graph); knows
nothing of plans, files or networks.
"""
from __future__ import annotations

from splitnn.cost_models import operators  # noqa: F401  (importing the families fills the registry)
from splitnn.cost_models.registry import (
    NodeCost,
    UnpricedOps,
    handler_for,
    node_costs,
    register,
    registered_ops,
    unpriced_ops,
)

__all__ = ["NodeCost", "UnpricedOps", "handler_for", "node_costs", "register", "registered_ops", "unpriced_ops"]
