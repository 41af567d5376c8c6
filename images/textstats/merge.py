"""Sum word counts: every word<TAB>count TSV under a folder -> one TSV, most frequent first."""

from __future__ import annotations

import argparse
import collections
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("counts", help="a folder of word<TAB>count TSV files")
    parser.add_argument("totals", help="the TSV to write")
    args = parser.parse_args(argv)
    total: collections.Counter[str] = collections.Counter()
    files = 0
    for root, _dirs, names in os.walk(args.counts):
        for name in sorted(names):
            if not name.endswith(".tsv"):
                continue
            files += 1
            with open(os.path.join(root, name), encoding="utf-8") as f:
                for line in f:
                    word, _, n = line.rstrip("\n").partition("\t")
                    total[word] += int(n)
    rows = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    with open(args.totals, "w", encoding="utf-8") as f:
        f.writelines(f"{word}\t{n}\n" for word, n in rows)
    print(f"{files} count files -> {len(rows)} distinct words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
