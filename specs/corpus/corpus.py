"""A corpus pipeline written in Python: normalise each text, count its words, merge the counts.

    normalise   @module, one shard per file of the corpus (ShardFile): lower-case words
    wordstats   ContainerModule (stopes-style) with a glob, one shard per normalised file
    merge       @module, one shard: the corpus's most frequent words

Each shard of the two glob arrays mounts only its own file and is cached on it, so after
one file of the corpus changes, a rerun runs one container per job:

    python3 specs/corpus/corpus.py -i corpus=specs/corpus/data -o report=report.tsv

Only the standard library runs in the containers (containerexec/base:bookworm).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from containerexec.authoring import (
    ContainerModule,
    InputDir,
    OutputDir,
    OutputFile,
    ShardFile,
    module,
    pipeline,
)

IMAGE = "containerexec/base:bookworm"


@module(image=IMAGE, array={"glob": {"input": "corpus", "pattern": "*.txt"}, "max_parallel": 4})
def normalise(doc: ShardFile, out: OutputDir) -> int:
    """Lower-case the words of one text, one line per line; returns how many words."""
    words = 0
    lines = []
    for line in doc.read_text(encoding="utf-8").splitlines():
        found = re.findall(r"[a-z']+", line.lower())
        words += len(found)
        lines.append(" ".join(found) + "\n")
    (out / doc.name).write_text("".join(lines), encoding="utf-8")
    return words


@dataclass
class Stats:
    """The config of WordStats: where the texts are, where counts go, the shortest word."""

    texts: InputDir = Path("texts")
    counts: OutputDir = Path("counts")
    min_length: int = 3


class WordStats(ContainerModule):
    """Count the words of one normalised text (words shorter than min_length left out)."""

    image = IMAGE

    # One shard per file of config.texts (instead of array()): run() gets that file as
    # iteration_value, and each shard mounts and is cached on its file alone.
    glob = {"input": "texts", "pattern": "*.txt"}

    def __init__(self, config: Stats) -> None:  # `validate corpus.py:WordStats` uses Stats()
        super().__init__(config)

    def run(self, iteration_value=None, iteration_index=0):
        words = iteration_value.read_text(encoding="utf-8").split()
        counts = Counter(w for w in words if len(w) >= self.config.min_length)
        rows = "".join(f"{w}\t{n}\n" for w, n in sorted(counts.items()))
        (self.config.counts / f"{iteration_value.stem}.tsv").write_text(rows, encoding="utf-8")
        return {"file": iteration_value.name, "words": sum(counts.values())}


@module(image=IMAGE)
def merge(counts: InputDir, report: OutputFile, top: int = 10) -> None:
    """Sum the per-text counts; the `top` most frequent words, then by word."""
    total: Counter[str] = Counter()
    for path in sorted(counts.glob("*.tsv")):
        for row in path.read_text(encoding="utf-8").splitlines():
            word, n = row.split("\t")
            total[word] += int(n)
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    report.write_text("".join(f"{w}\t{n}\n" for w, n in ranked), encoding="utf-8")


@pipeline(name="corpus-stats")
def corpus_stats(corpus: InputDir):
    """Normalise, count and merge a folder of texts."""
    low = normalise(corpus=corpus)
    stats = WordStats(Stats()).as_module()(texts=low.outputs.out)
    return {"report": merge(counts=stats.outputs.counts).outputs.report}


if __name__ == "__main__":
    raise SystemExit(corpus_stats.main())
