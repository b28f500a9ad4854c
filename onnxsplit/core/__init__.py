"""The ground layer: the user-error type, units, atomic writes, the one way to open onnxruntime, typed records.

Imports nothing from the rest of splitnn.
"""
