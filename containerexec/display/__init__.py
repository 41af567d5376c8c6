"""The terminal display of runs and pipelines: live progress, then the summary, on stderr.

The CLI and the Python API (`Module.run(progress=True)`, `Pipeline.run(progress=True)`)
show the same; below the CLI, this is the only code that prints.
"""
