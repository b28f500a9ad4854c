"""What one hand-off between tile stacks costs in Dask's scheduler, with no compute (issue 31).

On an embedded LocalCluster of 2 workers (one thread each, as run-bench
starts them): a task's round trip through the client (submit, then wait for
its result), and a task that depends on the one before it, chained 10 deep,
on alternating workers and on one worker, with nothing and with a 1.6 MB map
(64x80x80 float32) as the result handed on. Medians of --repeats chains.
The client's hand-off pays the round trip per stack; the workers' hand-off
pays the chained hop (tiles/dask_runtime.py, HANDOFFS).

    python benchmarks/bench_dask_hop.py [--repeats 5] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

CHAIN = 10


def nothing(*_: object) -> int:
    return 1


def a_map(*_: object) -> np.ndarray:
    return np.ones((64, 80, 80), np.float32)


def chained_ms(client, task, workers: list[str], repeats: int) -> float:  # type: ignore[no-untyped-def]
    """The median time per task of a chain of CHAIN + 1 dependent tasks placed on `workers` in turn."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        future = client.submit(task, pure=False, workers=[workers[0]])
        for k in range(CHAIN):
            future = client.submit(task, future, pure=False, workers=[workers[(k + 1) % len(workers)]])
        future.result()
        times.append((time.perf_counter() - start) / (CHAIN + 1))
    return statistics.median(times) * 1e3


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        workers = list(client.scheduler_info()["workers"])
        client.submit(nothing, pure=False).result()  # warm-up
        trips = []
        for _ in range(4 * args.repeats):
            start = time.perf_counter()
            client.submit(nothing, pure=False, workers=[workers[0]]).result()
            trips.append(time.perf_counter() - start)
        figures = {"round_trip_ms": statistics.median(trips) * 1e3}
        for task, name in ((nothing, "nothing"), (a_map, "map")):
            figures[f"hop_{name}_other_worker_ms"] = chained_ms(client, task, workers, args.repeats)
            figures[f"hop_{name}_same_worker_ms"] = chained_ms(client, task, workers[:1], args.repeats)
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    for key, value in figures.items():
        print(f"{key:<32} {value:8.2f}")


if __name__ == "__main__":
    main()
