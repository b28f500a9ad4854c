"""A split running over the network: the wire format, the server, the device, the user-space link emulator,
frames pipelined.

Reads plan folders through `artifacts`; knows nothing of the CLI.
"""
