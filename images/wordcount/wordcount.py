"""Count the words of one text file and write them as a TSV sorted by count."""

from __future__ import annotations

import argparse
import collections
import os
import re
import sys

WORD_RE = re.compile(r"[a-z]+(?:'[a-z]+)*")


def count_words(text: str) -> collections.Counter[str]:
    """Lowercase `text` and count its words (letters, with inner apostrophes)."""
    return collections.Counter(WORD_RE.findall(text.lower()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("input", help="a text file (UTF-8)")
    parser.add_argument("output", help="the TSV to write: word<TAB>count")
    parser.add_argument(
        "--min", type=int, default=1, dest="min_count", help="keep words seen at least N times"
    )
    parser.add_argument(
        "--fail-on", metavar="WORD", help="exit 3 if this word occurs (to demonstrate failures)"
    )
    args = parser.parse_args(argv)

    if not os.path.isfile(args.input):
        print(f"error: input file '{args.input}' does not exist", file=sys.stderr)
        return 2
    with open(args.input, encoding="utf-8", errors="replace") as f:
        counts = count_words(f.read())

    if args.fail_on and counts[args.fail_on.lower()] > 0:
        print(f"error: found forbidden word '{args.fail_on}' in {args.input}", file=sys.stderr)
        return 3

    kept = [(word, n) for word, n in counts.items() if n >= args.min_count]
    rows = sorted(kept, key=lambda row: (-row[1], row[0]))
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.writelines(f"{word}\t{n}\n" for word, n in rows)
    print(f"{args.input}: {sum(counts.values())} words, {len(counts)} distinct")
    return 0


if __name__ == "__main__":
    sys.exit(main())
