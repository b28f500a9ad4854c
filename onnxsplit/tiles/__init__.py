"""onnxsplit/tiles"""
