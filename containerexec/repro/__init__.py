"""Reproducing runs: planning a replay of a recorded shard, running it, printing it as plain
docker, and the sources a replay starts from (run folders, exports, bundles)."""
