"""One model over many unequal machines (issue 33): a machines file's machines and links, the stages the model is
cut into and which machine runs each, chosen exactly by dynamic programming, and the stage folders.

Depends on `artifacts` and below; knows nothing of sockets (the runtime runs what it writes).
"""
