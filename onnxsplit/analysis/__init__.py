"""onnxsplit/analysis"""
