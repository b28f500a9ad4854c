"""Option groups shared by several commands (Polygraphy-style)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def input_shape_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="[NAME:]DIMS",
        help="Fix an input's shape, e.g. x:1x3x224x224 (repeat per input; a bare 1x3x224x224 for a one-input model).",
    )(func)
