"""Codecs for the tensors that cross a cut (issue 14): each turns an array into bytes and back.

One module per codec family, each codec a small object with a `name` (its
spec), `encode(array) -> bytes` and `decode(bytes) -> array`; `parse_codec`
(specs.py) turns a spec such as "fp16", "int8:channel" or "int8+lossless" into
one. The bytes are self-describing (dtype, shape, scales travel with them),
so a receiver needs only the spec.
"""
