"""Running modules: the runner (one attempt), the Run and its executor, staging, logs,
cache, pipelines and repro."""
