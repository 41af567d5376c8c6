"""The on-disk tree: run, pipeline, cache and push records, ids, locks, atomic JSON, exports."""
