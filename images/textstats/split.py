"""Split each text file of a folder into parts of at most N lines: NAME-KKK.txt."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus", help="a folder of UTF-8 text files (*.txt)")
    parser.add_argument("parts", help="the folder to write the parts to")
    parser.add_argument("--lines", type=int, default=400, help="lines per part at most")
    args = parser.parse_args(argv)
    if args.lines < 1:
        print(f"error: --lines must be >= 1, got {args.lines}", file=sys.stderr)
        return 2
    os.makedirs(args.parts, exist_ok=True)
    names = sorted(n for n in os.listdir(args.corpus) if n.endswith(".txt"))
    written = 0
    for name in names:
        with open(os.path.join(args.corpus, name), encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
        stem = name[: -len(".txt")]
        for k, start in enumerate(range(0, max(len(lines), 1), args.lines)):
            part = os.path.join(args.parts, f"{stem}-{k:03d}.txt")
            with open(part, "w", encoding="utf-8") as out:
                out.writelines(lines[start : start + args.lines])
            written += 1
    print(f"{len(names)} files -> {written} parts of at most {args.lines} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
