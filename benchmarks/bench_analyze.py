"""Speed and memory of `splitnn analyze` on the VGG-16 sample, against onnx-tool's profile.

Targets: on the inline VGG-16 (about 553 MB), analyze takes at most half of
onnx-tool's wall time at no more peak memory (issue 2), and at most 0.35 of it
(issue 30); with the weights as external data, under 200 MB peak RSS; and
`splitnn --help` at most 0.3 s (issue 30: start-up).

Each measurement is one child process, timed from start to exit, with its peak
RSS read from the kernel's rusage of that child (os.wait4; this process holds
no model, so the RSS a child inherits at fork is a few MB). Runs alternate
between the tools so that machine noise hits both; medians are reported.

    python benchmarks/bench_analyze.py --runs 5 [--onnx-tool-python PATH] [--json]

onnx-tool must be importable by --onnx-tool-python (benchmarks/requirements.txt).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ONNX_TOOL_SNIPPET = "import sys, onnx_tool; onnx_tool.model_profile(sys.argv[1], save_profile=sys.argv[2])"


def measure(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}\n{proc.stderr.read().decode()}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--onnx-tool-python", default=sys.executable, help="a Python with onnx-tool installed")
    parser.add_argument("--workdir", type=Path, help="where to build the samples (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="splitnn-bench-"))
    inline = work / "inline" / "vgg16.onnx"
    external = work / "external" / "vgg16.onnx"
    # Built by child processes: a child's peak RSS starts at its parent's size at fork,
    # so this process must stay small (it holds no model).
    for path, extra in ((inline, []), (external, ["--external-data"])):
        if not path.exists():
            subprocess.run([sys.executable, "-m", "splitnn.cli", "samples", "build", "vgg16", "-o", str(path), *extra], cwd=REPO, check=True)

    splitnn = [sys.executable, "-m", "splitnn.cli", "analyze", "--json"]
    commands = {
        "splitnn --help": [sys.executable, "-m", "splitnn.cli", "--help"],
        "splitnn analyze (inline weights)": splitnn + [str(inline)],
        "onnx-tool model_profile (inline weights)": [args.onnx_tool_python, "-c", ONNX_TOOL_SNIPPET, str(inline), str(work / "profile.txt")],
        "splitnn analyze (external data)": splitnn + [str(external)],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    os.chdir(REPO)
    for _ in range(args.runs):
        for name, cmd in commands.items():
            samples[name].append(measure(cmd))

    rows = {
        name: {"wall_s": statistics.median(w for w, _ in runs), "peak_rss_mb": statistics.median(m for _, m in runs)}
        for name, runs in samples.items()
    }
    help_row, ours, theirs, ext = (rows[name] for name in commands)
    result = {
        "model_bytes": inline.stat().st_size,
        "runs": args.runs,
        "median": rows,
        "wall_ratio_splitnn_over_onnx_tool": ours["wall_s"] / theirs["wall_s"],
        "rss_ratio_splitnn_over_onnx_tool": ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        "targets": {
            "wall_at_most_half_of_onnx_tool": ours["wall_s"] <= 0.5 * theirs["wall_s"],
            "wall_at_most_0.35_of_onnx_tool": ours["wall_s"] <= 0.35 * theirs["wall_s"],
            "help_at_most_0.3_s": help_row["wall_s"] <= 0.3,
            "rss_at_most_onnx_tool": ours["peak_rss_mb"] <= theirs["peak_rss_mb"],
            "external_data_rss_under_200_mb": ext["peak_rss_mb"] < 200,
        },
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"VGG-16 sample, {result['model_bytes'] / 1e6:.1f} MB, median of {args.runs} runs each")
    for name, row in rows.items():
        print(f"  {name:<42} {row['wall_s']:6.2f} s  {row['peak_rss_mb']:7.1f} MB peak RSS")
    print(f"  wall ratio splitnn/onnx-tool: {result['wall_ratio_splitnn_over_onnx_tool']:.3f}   "
          f"RSS ratio: {result['rss_ratio_splitnn_over_onnx_tool']:.3f}")
    for target, met in result["targets"].items():
        print(f"  {'met' if met else 'MISSED'}: {target}")


if __name__ == "__main__":
    main()
