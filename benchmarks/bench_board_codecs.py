"""The built-in boards' codec references, estimated: how they were derived, so that anyone can derive them again.

No RockPro64 or Raspberry Pi 4 is at hand to time cost_models/codec_probe's two references on, so their TOML
carries estimates: each reference's time on this machine times how much slower the board runs single-threaded
7-Zip (`7za b -mmt1`, the headline "Tot" rating in MIPS), with the boards' ratings published by sbc-bench
(github.com/ThomasKaiser/sbc-bench, Results.md). Both are timed here in the same --rounds, one after the
other, and the medians printed, with the [codecs] lines each board's TOML would take.

Needs 7-Zip on the PATH (Debian: `apt-get install p7zip-full`). Takes about 40 s a round.

    python benchmarks/bench_board_codecs.py [--rounds 5]

Why 7-Zip: it is the single-core figure sbc-bench publishes for every board, and it runs unchanged on this
machine. An image encode and an int8+lossless frame of about 200 kB work in a core's caches, like 7-Zip's
inner loops and unlike a DRAM copy, whose ratio (about 19 for a RockPro64) the boards were priced by before.
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys

from splitnn.cost_models.codec_probe import codec_reference_seconds

# Board -> (its single-thread 7-Zip MIPS as sbc-bench published it with p7zip 16.02, which result and clock).
PUBLISHED_MIPS = {
    "rockpro64": (1755, "results/1iFp.txt, RK3399's A72 at 1.8 GHz"),
    "raspberry-pi-4": (1661, "results/3EgS.txt, BCM2711's A72 at 1.5 GHz"),
}


def seven_zip_mips() -> float:
    """This machine's single-thread 7-Zip rating: the "Tot:" line's last figure."""
    out = subprocess.run(["7za", "b", "-mmt1"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"^Tot:\s+\d+\s+\d+\s+(\d+)", out, re.MULTILINE)
    if match is None:
        raise SystemExit("7za printed no Tot: line; is it 7-Zip's benchmark?")
    return float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("7za") is None:
        sys.exit("7za is not on the PATH: install 7-Zip (Debian: apt-get install p7zip-full)")
    mips, image, array = [], [], []
    for round_ in range(args.rounds):
        mips.append(seven_zip_mips())
        image_s, array_s = codec_reference_seconds()
        image.append(image_s * 1e3)
        array.append(array_s * 1e3)
        print(f"round {round_ + 1}: 7-Zip {mips[-1]:.0f} MIPS, image {image[-1]:.3f} ms, array {array[-1]:.3f} ms")
    here, image_ms, array_ms = (statistics.median(v) for v in (mips, image, array))
    print(f"\nthis machine (medians of {args.rounds}): 7-Zip {here:.0f} MIPS, image {image_ms:.3f} ms, "
          f"array {array_ms:.3f} ms")
    for board, (board_mips, source) in PUBLISHED_MIPS.items():
        ratio = here / board_mips
        print(f"\n{board}: {board_mips} MIPS ({source}): {ratio:.2f} times slower\n"
              f"  image_reference_ms = {image_ms * ratio:.2f}\n  array_reference_ms = {array_ms * ratio:.2f}")


if __name__ == "__main__":
    main()
