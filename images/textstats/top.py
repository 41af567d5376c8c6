"""The N most frequent words of a word<TAB>count TSV, leaving out stop words, as a report."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("totals", help="a word<TAB>count TSV, most frequent first")
    parser.add_argument("report", help="the text report to write")
    parser.add_argument("-n", type=int, default=20, help="how many words")
    parser.add_argument("--stopwords", help="a file of words to leave out, one per line")
    args = parser.parse_args(argv)
    stop: set[str] = set()
    if args.stopwords:
        with open(args.stopwords, encoding="utf-8") as f:
            stop = {line.strip().lower() for line in f if line.strip()}
    rows = []
    with open(args.totals, encoding="utf-8") as f:
        for line in f:
            word, _, n = line.rstrip("\n").partition("\t")
            if word not in stop:
                rows.append((word, int(n)))
    rows.sort(key=lambda row: (-row[1], row[0]))
    with open(args.report, "w", encoding="utf-8") as f:
        for rank, (word, n) in enumerate(rows[: args.n], start=1):
            f.write(f"{rank:3d}  {word:<16} {n}\n")
    print(f"top {min(args.n, len(rows))} of {len(rows)} words ({len(stop)} stop words left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
