#!/usr/bin/env bash
# The demo behind 'make demo': validate and run the wordcount module, then show its results.
set -euo pipefail
cd "$(dirname "$0")/.."

cx=${CONTAINEREXEC:-.venv/bin/containerexec}
out=demo-out/counts

echo "==> containerexec validate specs/wordcount.yaml"
"$cx" validate specs/wordcount.yaml

echo "==> containerexec run specs/wordcount.yaml (one shard per text file)"
rm -rf "$out"
"$cx" run specs/wordcount.yaml -i corpus=specs/wordcount/data -o counts="$out"

echo
echo "==> results in $out/:"
ls "$out"
echo
echo "==> top 5 words of $out/alice.txt.tsv:"
head -n 5 "$out/alice.txt.tsv"
echo
echo "==> top 10 words across all files:"
python3 - "$out"/*.tsv <<'PY'
import collections, sys
total = collections.Counter()
for path in sys.argv[1:]:
    for line in open(path, encoding="utf-8"):
        word, n = line.rstrip("\n").split("\t")
        total[word] += int(n)
for word, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:10]:
    print(f"{word}\t{n}")
PY

# pipeline demo (issue 6) goes here
