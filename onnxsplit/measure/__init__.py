"""run-bench: a plan measured end to end on this machine (splits, sweeps of cuts, tile plans), typed reports,
charts.

The top library layer; knows nothing of the CLI.
"""
