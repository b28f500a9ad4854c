"""Tiles across a cluster: fused-tile geometry, overlap reuse, neuron-split layers, the tile plan, its files,
and its execution on Dask distributed.

Depends on `artifacts` and below; knows nothing of the vertical split or sockets.
"""
