"""onnxsplit/runtime"""
