"""Count words per .txt file of a corpus (the code of specs/azureml/count.yml)."""

import argparse
import pathlib

parser = argparse.ArgumentParser()
parser.add_argument("--corpus", required=True)
parser.add_argument("--stopwords")
parser.add_argument("--min-length", type=int, default=1)
parser.add_argument("--scale", type=float, default=1.0)
parser.add_argument("--lower", choices=["true", "false", "True", "False"], default="true")
parser.add_argument("--label", required=True)
parser.add_argument("--note")
parser.add_argument("--counts", required=True)
parser.add_argument("--total", required=True)
args = parser.parse_args()

stop = set(pathlib.Path(args.stopwords).read_text().split()) if args.stopwords else set()
total = 0
for path in sorted(pathlib.Path(args.corpus).glob("*.txt")):
    counts: dict[str, int] = {}
    for word in path.read_text().split():
        word = word.lower() if args.lower.lower() == "true" else word
        if len(word) >= args.min_length and word not in stop:
            counts[word] = counts.get(word, 0) + 1
    lines = [f"{w}\t{n * args.scale:g}" for w, n in sorted(counts.items())]
    (pathlib.Path(args.counts) / f"{path.stem}.tsv").write_text("".join(x + "\n" for x in lines))
    total += sum(counts.values())
pathlib.Path(args.total).write_text(f"{args.label}\t{total}\n")
if args.note is not None:
    print(f"note: {args.note!r}")
if args.note == "fail":
    raise SystemExit(3)
