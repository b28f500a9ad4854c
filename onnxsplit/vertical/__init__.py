"""The vertical split: predict every cut on a device, a link and a server, choose one, write it, update its
weights.

Depends on `artifacts` and below; knows nothing of tiles or sockets.
"""
