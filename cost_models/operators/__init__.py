"""The MAC formulas, one module per operator family; importing this package fills the registry.

Adding an operator: one function decorated with `@register("OpType")` in the
module of its family (or a new module imported below), and one test in
tests/cost_models/test_operators.py.
"""
from __future__ import annotations

from splitnn.cost_models.operators import (  # noqa: F401
    attention,
    conv,
    data_movement,
    elementwise,
    matmul,
    normalization,
    pool,
    quantized,
    recurrent,
    reduce,
    resize,
)
