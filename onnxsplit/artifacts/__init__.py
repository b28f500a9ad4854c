"""The plan folder: its file names, the typed plan file, parts cut from the graph, part files, the chain
executor, verification, publishing.

Depends on the layers below; knows nothing of how a plan was chosen.
"""
