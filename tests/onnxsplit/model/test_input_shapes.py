from __future__ import annotations

import pytest

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.input_shapes import (
    ANY_INPUT,
    parse_input_shapes,
    parse_shape,
)


def test_named_and_bare():
    assert parse_input_shapes(["x:1x3x224x224", "mask:1x1"]) == {"x": (1, 3, 224, 224), "mask": (1, 1)}
    assert parse_input_shapes(["1x3x8x8"]) == {ANY_INPUT: (1, 3, 8, 8)}
    assert parse_input_shapes(["input:0:2x5"]) == {"input:0": (2, 5)}  # exported names may hold ':'
    assert parse_shape("[1,3,32,32]") == (1, 3, 32, 32)


@pytest.mark.parametrize("spec", ["x:1x3xq", "x:", "x:1x0x2", ":1x2", "x:-1x3", "1x"])
def test_bad_specs(spec):
    with pytest.raises(SplitnnError, match="input shape|--input-shape"):
        parse_input_shapes([spec])


def test_duplicates_and_mixing():
    with pytest.raises(SplitnnError, match="twice"):
        parse_input_shapes(["x:1", "x:2"])
    with pytest.raises(SplitnnError, match="mixed"):
        parse_input_shapes(["1x2", "y:3"])
