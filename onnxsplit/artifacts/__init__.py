"""onnxsplit/artifacts"""
