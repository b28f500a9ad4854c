"""onnxsplit/vertical"""
