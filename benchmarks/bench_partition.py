"""Wall time of `splitnn partition` on the VGG-16 sample against reading and writing its bytes once.

Target (issue 3): partition takes no longer than about twice the time to read
and write the model's weights once on this machine. Both are measured here,
alternating, median of --runs: the baseline reads the .onnx file and writes a
copy (no fsync, as partition does not fsync either); partition runs as a
child process, its built-in verification included (which loads and runs the
original model and both parts once).

    python benchmarks/bench_partition.py --runs 5 [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def read_write_once(source: Path, target: Path) -> float:
    start = time.perf_counter()
    with open(source, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(64 * 1024 * 1024):
            dst.write(chunk)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def copy_in_kernel_once(source: Path, target: Path) -> float:
    """The same bytes copied by shutil.copyfile, which Linux does in the kernel (as partition does)."""
    start = time.perf_counter()
    shutil.copyfile(source, target)
    elapsed = time.perf_counter() - start
    target.unlink()
    return elapsed


def partition_once(model: Path, outdir: Path, extra: list[str]) -> float:
    shutil.rmtree(outdir, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli", "partition", str(model), "-o", str(outdir), "--link", "4g",
                    "--objective", "throughput", "--json", *extra], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-bench-"))
    model = work / "vgg16.onnx"
    if not model.exists():
        subprocess.run([sys.executable, "-m", "cli", "samples", "build", "vgg16", "-o", str(model)], cwd=REPO, check=True)
    baseline, kernel_copy, full = [], [], []
    for _ in range(args.runs):
        baseline.append(read_write_once(model, work / "copy.bin"))
        kernel_copy.append(copy_in_kernel_once(model, work / "copy.bin"))
        full.append(partition_once(model, work / "plan", []))
    result = {
        "model_bytes": model.stat().st_size,
        "runs": args.runs,
        "read_write_once_s": statistics.median(baseline),
        "copy_in_kernel_s": statistics.median(kernel_copy),
        "partition_s": statistics.median(full),
    }
    result["ratio"] = result["partition_s"] / result["read_write_once_s"]
    result["ratio_to_kernel_copy"] = result["partition_s"] / result["copy_in_kernel_s"]
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"VGG-16 sample ({result['model_bytes'] / 1e6:.1f} MB), median of {args.runs} runs, {os.cpu_count()} cores")
    print(f"  read + write the file once       {result['read_write_once_s']:6.2f} s")
    print(f"  copy in the kernel (copyfile)    {result['copy_in_kernel_s']:6.2f} s")
    print(f"  splitnn partition (with verify)  {result['partition_s']:6.2f} s   ratio {result['ratio']:.2f}"
          f" (to the kernel copy {result['ratio_to_kernel_copy']:.2f})")


if __name__ == "__main__":
    main()
