"""Parse `--input-shape` strings: `NAME:1x3x224x224`, or a bare `1x3x224x224`."""
from __future__ import annotations

import re
from collections.abc import Iterable

from splitnn.onnxsplit.core.errors import SplitnnError

# The key of a bare shape, given without a name: it applies to the model's only input.
ANY_INPUT = ""

_DIMS = re.compile(r"^\d+(x\d+)*$")


def parse_shape(text: str) -> tuple[int, ...]:
    """`1x3x224x224` -> (1, 3, 224, 224); also accepts `[1,3,224,224]` and `1,3,224,224`."""
    cleaned = text.strip().strip("[]()").replace(",", "x").replace(" ", "")
    if not _DIMS.match(cleaned):
        raise SplitnnError(
            f"bad input shape '{text}': write dimensions as positive integers joined by 'x', e.g. 1x3x224x224"
        )
    dims = tuple(int(part) for part in cleaned.split("x"))
    if any(d <= 0 for d in dims):
        raise SplitnnError(f"bad input shape '{text}': every dimension must be at least 1")
    return dims


def parse_input_shapes(specs: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Turn repeated `--input-shape` values into {input name: shape}.

    A spec without a name is stored under ANY_INPUT. The input name may itself
    contain ':' (exported names like 'input:0'); the shape is after the last ':'.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        key = name if sep else ANY_INPUT
        if sep and not name:
            raise SplitnnError(f"bad --input-shape '{spec}': the name before ':' is empty; write NAME:1x3x224x224")
        if key in shapes:
            label = f"input '{key}'" if key else "the unnamed input"
            raise SplitnnError(f"--input-shape gives {label} twice: give each input once")
        shapes[key] = parse_shape(dims)
    if ANY_INPUT in shapes and len(shapes) > 1:
        raise SplitnnError("a bare --input-shape cannot be mixed with named ones: write NAME:DIMS for each input")
    return shapes


def format_shape(shape: Iterable[int | str]) -> str:
    return "x".join(str(d) for d in shape)
