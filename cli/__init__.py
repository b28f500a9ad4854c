"""The `splitnn` command line: options, calls into onnxsplit, rendering with rich."""
