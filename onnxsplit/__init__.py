"""splitnn's library: load an ONNX model, find where it can be cut, plan and run the parts."""
from __future__ import annotations

from splitnn.onnxsplit.core.errors import SplitnnError

__all__ = ["SplitnnError"]
