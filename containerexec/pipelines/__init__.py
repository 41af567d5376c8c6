"""Running pipelines: a planned DAG of module runs on one shared executor, its record and
its bound inputs and outputs. Above the run core, below authoring and repro.

Plural on purpose: `containerexec.pipeline` is the public @pipeline decorator, and a
subpackage of that name would replace it as an attribute once imported.
"""
