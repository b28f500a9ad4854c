"""What the model costs and where it can be cut: activation liveness, every cut, the per-node cost table.

Depends on `core`, `model` and `cost_models`; writes no files.
"""
