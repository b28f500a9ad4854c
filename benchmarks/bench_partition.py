"""Wall time of `splitnn partition` on the VGG-16 sample against reading and writing its bytes once.

Target (issue 3): partition takes no longer than about twice the time to read
and write the model's weights once on this machine. Each round measures, one
after the other, median of --runs:

  read + write once      the .onnx read and a copy written through Python, 16 MB at a time
                         through one reused buffer (no fsync, as partition does not fsync either)
  copy in the kernel     the same bytes by shutil.copyfile (copy_file_range, as partition copies)
  writes alone           a child process that imports what partition imports, reads the
                         graph and writes both parts (graphs and weight blobs), nothing else
  verification alone     a child process that imports what partition imports and runs only
                         the two inferences the built-in verification runs (the original
                         model, and the written .ort device part chained to the server
                         part), as partition overlaps them: the floor under partition
  partition              `splitnn partition` as a child process, verification and .ort included

Every step first deletes what it wrote in the previous round, right before it
starts, so each writes its 553 MB into page cache freed a moment before. On a
virtual machine that hands freed memory back to its host (free page
reporting), memory touched for the first time is several times slower to
write than memory just freed; without this order, and with a fresh 64 MB
buffer per read, the baseline swung between 0.5 and 1.3 s. The children's CPU seconds (user + sys) are printed too: they
move less than wall time on a shared machine.

    python benchmarks/bench_partition.py --runs 9 [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def read_write_once(source: Path, target: Path) -> float:
    target.unlink(missing_ok=True)
    buffer = bytearray(16 * 1024 * 1024)
    view = memoryview(buffer)
    start = time.perf_counter()
    with open(source, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
        while size := src.readinto(buffer):
            dst.write(view[:size])
    return time.perf_counter() - start


def copy_in_kernel_once(source: Path, target: Path) -> float:
    """The same bytes copied by shutil.copyfile, which Linux does in the kernel (as partition does)."""
    target.unlink(missing_ok=True)
    start = time.perf_counter()
    shutil.copyfile(source, target)
    return time.perf_counter() - start


def _timed_child(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of a child process."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, _children_cpu() - cpu


def partition_once(model: Path, outdir: Path) -> tuple[float, float]:
    shutil.rmtree(outdir, ignore_errors=True)
    return _timed_child([sys.executable, "-m", "splitnn.cli", "partition", str(model), "-o", str(outdir), "--link", "4g",
                         "--objective", "throughput", "--json"])


def verification_once(model: Path, plan_dir: Path) -> tuple[float, float]:
    return _timed_child([sys.executable, str(Path(__file__).resolve()), "--verification-child", str(model), str(plan_dir)])


def writes_once(model: Path, plan_dir: Path, target: Path) -> tuple[float, float]:
    shutil.rmtree(target, ignore_errors=True)
    return _timed_child([sys.executable, str(Path(__file__).resolve()), "--writes-child", str(model), str(plan_dir), str(target)])


def writes_child(model: Path, plan_dir: Path, target: Path) -> None:
    """Only the writes of partition: both parts of the plan's cut, graphs and weight blobs."""
    import splitnn.cli.main  # noqa: F401  (what partition imports before it starts)
    from splitnn.onnxsplit.analysis.analyze import analyze
    from splitnn.onnxsplit.artifacts.part_files import save_part
    from splitnn.onnxsplit.artifacts.parts import extract_parts
    from splitnn.onnxsplit.artifacts.plan_file import read_plan
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.model.weight_source import WeightSource

    tensors = tuple(read_plan(plan_dir, strategy="vertical").cut.tensors)
    analysis = analyze(load_graph(model))
    cut = next(c for c in analysis.cuts if tuple(c.tensors) == tensors)
    parts = extract_parts(analysis.graph, analysis.graph.model, cut)
    with WeightSource.of(analysis.graph) as weights:
        for side, part in zip(("device", "server"), parts):
            if part.model is not None:
                save_part(part, target / side, weights)


def verification_child(model: Path, plan_dir: Path) -> None:
    """Only the inferences of partition's built-in verification, on parts already written."""
    from concurrent.futures import ThreadPoolExecutor

    import splitnn.cli.main  # noqa: F401  (what partition imports before it starts)
    from splitnn.onnxsplit.artifacts.plan_file import read_plan
    from splitnn.onnxsplit.artifacts.verification import reference_outputs
    from splitnn.onnxsplit.core.ort_session import create_session
    from splitnn.onnxsplit.model.loading import load_graph
    from splitnn.onnxsplit.model.sample_inputs import random_inputs

    plan = read_plan(plan_dir, strategy="vertical")
    graph = load_graph(model)
    feeds = random_inputs(graph)
    with ThreadPoolExecutor(max_workers=1) as background:
        original = background.submit(reference_outputs, graph, feeds)
        pool = dict(feeds)
        for part, artifact in ((plan.parts.device, plan.artifacts.device_ort), (plan.parts.server, plan.artifacts.server_model)):
            if artifact is None:
                continue
            session = create_session(plan_dir / artifact, prepack=False, spin=False)
            pool.update(zip(part.outputs, session.run(list(part.outputs), {n: pool[n] for n in part.inputs})))
        original.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--verification-child", nargs=2, type=Path, metavar=("MODEL", "PLAN"), help=argparse.SUPPRESS)
    parser.add_argument("--writes-child", nargs=3, type=Path, metavar=("MODEL", "PLAN", "TARGET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verification_child:
        verification_child(*args.verification_child)
        return
    if args.writes_child:
        writes_child(*args.writes_child)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-bench-"))
    model = work / "vgg16.onnx"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", "vgg16", "-o", str(model)], cwd=REPO, check=True)
    plan_dir, copy, parts_only = work / "plan", work / "copy.bin", work / "parts-only"
    partition_once(model, plan_dir)  # parts for the verification-alone step, and a warm-up
    keys = ("rw", "kernel", "writes", "writes_cpu", "verify", "verify_cpu", "partition", "partition_cpu")
    rounds: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(args.runs):
        rounds["rw"].append(read_write_once(model, copy))
        rounds["kernel"].append(copy_in_kernel_once(model, copy))
        wall, cpu = writes_once(model, plan_dir, parts_only)
        rounds["writes"].append(wall)
        rounds["writes_cpu"].append(cpu)
        wall, cpu = verification_once(model, plan_dir)
        rounds["verify"].append(wall)
        rounds["verify_cpu"].append(cpu)
        wall, cpu = partition_once(model, plan_dir)
        rounds["partition"].append(wall)
        rounds["partition_cpu"].append(cpu)
    copy.unlink(missing_ok=True)
    shutil.rmtree(parts_only, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in rounds.items()}
    result = {
        "model_bytes": model.stat().st_size,
        "runs": args.runs,
        "cores": os.cpu_count(),
        "read_write_once_s": median["rw"],
        "copy_in_kernel_s": median["kernel"],
        "writes_alone_s": median["writes"],
        "writes_alone_cpu_s": median["writes_cpu"],
        "verification_alone_s": median["verify"],
        "verification_alone_cpu_s": median["verify_cpu"],
        "partition_s": median["partition"],
        "partition_cpu_s": median["partition_cpu"],
        "ratio": median["partition"] / median["rw"],
        "writes_ratio": median["writes"] / median["rw"],
        "verification_floor_ratio": median["verify"] / median["rw"],
        "per_run": rounds,
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"VGG-16 sample ({result['model_bytes'] / 1e6:.1f} MB), median of {args.runs} runs, {result['cores']} cores")
    print(f"  read + write the file once          {median['rw']:6.2f} s")
    print(f"  copy in the kernel (copyfile)       {median['kernel']:6.2f} s")
    print(f"  writes alone (imports, graph, parts) {median['writes']:6.2f} s   ratio {result['writes_ratio']:.2f}"
          f"   cpu {median['writes_cpu']:.2f} s")
    print(f"  verification alone (the floor)      {median['verify']:6.2f} s   ratio {result['verification_floor_ratio']:.2f}"
          f"   cpu {median['verify_cpu']:.2f} s")
    print(f"  splitnn partition (with verify)     {median['partition']:6.2f} s   ratio {result['ratio']:.2f}"
          f"   cpu {median['partition_cpu']:.2f} s")


if __name__ == "__main__":
    main()
