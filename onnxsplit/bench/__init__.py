"""onnxsplit/bench"""
