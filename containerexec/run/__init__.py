"""Running modules: the runner (one attempt), the Run and its executor, staging, logs,
cache and where shards run. Pipelines (pipeline/) and repro (repro/) sit above it."""
