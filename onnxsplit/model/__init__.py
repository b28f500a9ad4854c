"""The loaded model: a graph read without its weight bytes, every tensor's shape, where each weight lives.

Depends on `core` only; knows nothing of costs, plans or networks.
"""
