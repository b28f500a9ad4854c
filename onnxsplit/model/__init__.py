"""onnxsplit/model"""
