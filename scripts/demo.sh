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

echo
echo "==> containerexec pipeline graph specs/wordstats/pipeline.yaml"
"$cx" pipeline graph specs/wordstats/pipeline.yaml
echo
echo "==> containerexec pipeline run specs/wordstats/pipeline.yaml (split -> count array -> merge -> top)"
rm -rf demo-out/wordstats
"$cx" pipeline run specs/wordstats/pipeline.yaml \
  -o report=demo-out/wordstats/top.txt -o totals=demo-out/wordstats/totals.tsv
echo
echo "==> top words of the corpus (demo-out/wordstats/top.txt):"
cat demo-out/wordstats/top.txt
echo
echo "==> the same pipeline again (--overwrite: replace the report): nothing changed, so every shard comes from the cache"
"$cx" pipeline run specs/wordstats/pipeline.yaml -o report=demo-out/wordstats/top.txt --overwrite
