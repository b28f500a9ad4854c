"""onnxsplit/core"""
