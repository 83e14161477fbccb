"""Summarise py-spy collapsed stacks (`run.py --profile DIR`): where midge spends CPU.

    .venv/bin/python bench/profile_summary.py DIR/qos0-0.txt [--top 25]

Prints the functions with the most samples on top of the stack (self time) and the
most samples anywhere on the stack (inclusive time), as shares of all samples.
"""

from __future__ import annotations

import argparse
import collections
import sys


def load(path: str) -> list[tuple[list[str], int]]:
    stacks = []
    with open(path) as f:
        for line in f:
            frames, _, count = line.rstrip("\n").rpartition(" ")
            if frames:
                stacks.append((frames.split(";"), int(count)))
    return stacks


def _function(frame: str) -> str:
    """'name (path:line)' -> 'name (path)'."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else frame


def summarise(stacks, top: int) -> str:
    total = sum(n for _, n in stacks) or 1
    own: collections.Counter = collections.Counter()
    lines: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    for frames, n in stacks:
        lines[frames[-1]] += n
        frames = [_function(f) for f in frames]
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out = [f"{total} samples", "", "self time by function:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    out += ["", "self time by line:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in lines.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    for path in args.paths:
        print(f"== {path}")
        print(summarise(load(path), args.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
