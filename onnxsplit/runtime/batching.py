"""Requests from several devices for the same server part, run as one session call (issue 15, item 4).

A server part is written with the batch size it was planned for (1), so a batch needs a copy of the graph whose
inputs and outputs have an open first dimension. Whether that copy really computes each item as the original
does is not assumed: a graph that reshapes to a fixed shape ([1, -1]) or mixes items would fail or differ, so
`batchable_session` runs two random items both ways and keeps the copy only when they agree. Otherwise the part
is served one request at a time, and the reason is logged.

`Batcher` is the dynamic batcher of inference servers (Triton's max_batch_size and max_queue_delay): one thread
takes the first waiting request, waits at most `max_wait_s` for more, up to `max_batch`, stacks them along the
first axis, runs the session once and hands each device its rows. Requests whose tensors do not match the part
(dtype, shape) run alone, so one device's mistake is its own error; a failed batch is run again one by one.
Written here because onnxruntime has no batcher of its own, and an inference server (Triton, TorchServe) is a
whole service the split runtime would then have to run beside itself.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from splitnn.onnxsplit.core.ort_session import create_session, ort_numpy_dtype
from splitnn.onnxsplit.model.sample_inputs import random_feeds

BATCH_DIM = "splitnn_batch"  # the open first dimension of the batched copy
# Two items agree when every output is within this of the original's (both run the same kernels on the same
# data; only the order of floating-point sums may differ with the batch size).
AGREE_RTOL, AGREE_ATOL = 1e-4, 1e-5


@dataclass(frozen=True)
class BatchingCheck:
    """Whether a server part takes a batch: the session of its batched copy, or why not (`reason`)."""

    session: Any  # onnxruntime.InferenceSession, or None
    reason: str = ""


def _open_first_dim(model: Any) -> str:
    """Give every graph input and output an open first dimension in place; '' or why it cannot be."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims:
            return f"'{value.name}' has no batch dimension (a scalar or an unknown rank)"
        if dims[0].HasField("dim_value") and dims[0].dim_value != 1:
            return f"'{value.name}' has a first dimension of {dims[0].dim_value}, not 1"
        dims[0].dim_param = BATCH_DIM
    del model.graph.value_info[:]  # the shapes inferred for a batch of 1; onnxruntime infers them again
    _reshapes_keep_the_batch(model)
    return ""


def _reshapes_keep_the_batch(model: Any) -> None:
    """A Reshape to a constant shape of first dimension 1 takes its first dimension from its input instead (0,
    "copy", in ONNX's Reshape): exporters and constant folding at a batch of 1 leave [1, -1] and the like behind.
    Only a rewrite to try: the check that follows decides whether the copy computes what the part does."""
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:  # and the outputs of Constant nodes, which exporters use as much
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants.setdefault(node.output[0], node.attribute[0].t)
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue  # there 0 means a dimension of size 0, not "copy"
        shape = numpy_helper.to_array(constants[node.input[1]])
        if shape.ndim != 1 or not len(shape) or shape[0] != 1:
            continue
        name = f"{node.input[1]}__splitnn_batch"
        if name not in constants:
            copied = shape.copy()
            copied[0] = 0
            constants[name] = numpy_helper.from_array(copied, name)
            model.graph.initializer.append(constants[name])
        node.input[1] = name


def _random_items(session: Any, count: int) -> list[dict[str, np.ndarray]]:
    """`count` random single-item feeds for a session whose inputs are fixed but for the batch dimension
    (integer inputs all 0: they may index a table of any size)."""
    specs = {s.name: ([1, *s.shape[1:]], ort_numpy_dtype(s.type).name) for s in session.get_inputs()}
    return [random_feeds(specs, seed, integer_highs={name: 1 for name in specs}) for seed in range(count)]


def batchable_session(model_path: Path, single: Any, threads: int | None = None, spin: bool = True) -> BatchingCheck:
    """A session of `model_path` that takes a batch, checked against `single` (the part's own session) on two
    random items; or the reason it cannot be."""
    import onnx

    if any(not all(isinstance(d, int) for d in spec.shape[1:]) for spec in single.get_inputs()):
        return BatchingCheck(None, "its inputs have open dimensions besides the first")
    if str(model_path).endswith(".ort"):
        return BatchingCheck(None, "an ORT-format part keeps the shapes it was converted with")
    model = onnx.load(str(model_path))  # its weights too, from the external blob: the copy is one buffer
    reason = _open_first_dim(model)
    if reason:
        return BatchingCheck(None, reason)
    try:
        batched = create_session(model, threads=threads, spin=spin, quiet=True)  # its failure is an answer
        items = _random_items(single, 2)
        names = [o.name for o in single.get_outputs()]
        alone = [single.run(names, item) for item in items]
        together = batched.run(names, {n: np.concatenate([i[n] for i in items]) for n in items[0]})
    except Exception as exc:  # onnxruntime's errors share no base class but Exception
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return BatchingCheck(None, f"a batch of 2 does not run ({first[:200]})")
    for k, name in enumerate(names):
        rows = together[k]
        if rows.shape[:1] != (2,):
            return BatchingCheck(None, f"output '{name}' of a batch of 2 has shape {list(rows.shape)}")
        for i, outputs in enumerate(alone):
            if not np.allclose(rows[i : i + 1], outputs[k], rtol=AGREE_RTOL, atol=AGREE_ATOL):
                return BatchingCheck(None, f"output '{name}' of a batch differs from the item run alone (the graph "
                                           "mixes items or fixes the batch size)")
    return BatchingCheck(batched)


@dataclass(eq=False)  # compared by identity: its arrays have no single truth value
class _Pending:
    feeds: dict[str, np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    outputs: list[np.ndarray] | None = None
    error: BaseException | None = None


@dataclass
class BatchCounts:
    runs: int = 0  # session calls
    requests: int = 0  # requests answered by them
    largest: int = 0  # the most requests in one call

    @property
    def mean_batch(self) -> float:
        return self.requests / self.runs if self.runs else 0.0


class Batcher:
    """Runs `session` on stacked requests from any number of threads (see the module doc). `run` blocks until
    the request's own outputs are back, or raises what running it raised."""

    def __init__(self, session: Any, inputs: Sequence[str], outputs: Sequence[str], max_batch: int,
                 max_wait_s: float, alone: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
                 senders: Callable[[], int] = lambda: 2) -> None:
        self.session, self.inputs, self.outputs = session, list(inputs), list(outputs)
        # How many devices could send a request now (the server's open connections): with one, no other request
        # can join a batch, and waiting for one would only delay it.
        self.senders = senders
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.alone = alone  # the part's own session, for a request that cannot join a batch
        # Each input's shape but the first dimension, and its dtype: what a request must match to join a batch.
        self.specs = {s.name: (tuple(s.shape[1:]), ort_numpy_dtype(s.type)) for s in session.get_inputs()}
        self.counts = BatchCounts()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="splitnn-batcher")
        self._thread.start()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        pending = _Pending(feeds)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.outputs is not None
        return pending.outputs

    def close(self) -> None:
        self._queue.put(None)

    def _fits(self, feeds: dict[str, np.ndarray]) -> bool:
        """Whether a request can join a batch: every input one item (or more) of the part's dtype and shape."""
        for name, (shape, dtype) in self.specs.items():
            value = feeds.get(name)
            if value is None or value.ndim != len(shape) + 1 or tuple(value.shape[1:]) != shape:
                return False
            if value.dtype != dtype or value.shape[0] != feeds[self.inputs[0]].shape[0]:
                return False
        return True

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        """The first request and those that arrive within max_wait_s of it, up to max_batch; and whether the
        batcher was closed meanwhile."""
        batch, deadline = [first], time.perf_counter() + self.max_wait_s
        if self.senders() <= 1:
            deadline = 0.0  # only what is already waiting joins
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get(timeout=max(deadline - time.perf_counter(), 0.0))
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, closed = self._collect(first)
            try:
                together = [p for p in batch if self._fits(p.feeds)]
                for pending in batch:
                    if pending not in together:
                        self._run_alone(pending)
                if together:
                    self._run_together(together)
            except BaseException as exc:  # never leave a device waiting for ever, nor the batcher dead
                for pending in batch:
                    if not pending.done.is_set():
                        pending.error = exc
                        pending.done.set()
            if closed:
                return

    def _run_alone(self, pending: _Pending) -> None:
        try:
            pending.outputs = self.alone(pending.feeds)
        except BaseException as exc:  # handed to the request's own thread, which answers with an error frame
            pending.error = exc
        pending.done.set()

    def _run_together(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            self._run_alone(batch[0])
            self._count(1)
            return
        sizes = [p.feeds[self.inputs[0]].shape[0] for p in batch]
        try:
            stacked = {n: np.concatenate([p.feeds[n] for p in batch]) for n in self.inputs}
            values = self.session.run(self.outputs, stacked)
        except Exception:  # one request the check above let through: run each alone, so only it fails
            for pending in batch:
                self._run_alone(pending)
            return
        self._count(len(batch))
        start = 0
        for pending, size in zip(batch, sizes):
            pending.outputs = [v[start : start + size] for v in values]
            start += size
            pending.done.set()

    def _count(self, requests: int) -> None:
        self.counts.runs += 1
        self.counts.requests += requests
        self.counts.largest = max(self.counts.largest, requests)
