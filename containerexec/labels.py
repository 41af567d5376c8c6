"""Every `containerexec.*` label put on a container or an image, defined once."""

from __future__ import annotations

PREFIX = "containerexec"
LABEL_RUN = f"{PREFIX}.run"  # the run id: a run sweeps its own containers by it
LABEL_MODULE = f"{PREFIX}.module"
LABEL_SHARD = f"{PREFIX}.shard"
LABEL_PIPELINE_RUN = f"{PREFIX}.pipeline-run"
LABEL_REPRO_OF = f"{PREFIX}.repro-of"  # the run a repro replays a shard of
LABEL_MANAGED = f"{PREFIX}.managed"  # an image containerexec built or pushed (prune may remove it)
LABEL_SPEC = f"{PREFIX}.spec"  # a pushed module image carries its spec here
LABEL_CONTEXT_HASH = f"{PREFIX}.context-hash"
LABEL_LOCK = f"{PREFIX}.lock-sha256"  # an image of locked Python packages: the lock's hash
