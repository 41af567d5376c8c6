"""What a run does for modules made from Python (authoring/) that a spec's data cannot:
list a ContainerModule's array() in its image when the run starts (`array.python`),
and say when a resume runs a changed source file.

array() runs in a container as a shard does: the run's inputs mounted read-only,
no output mounted, no network unless the spec asks, the caller's uid:gid. Never on
this host: a spec file may come from anyone. Its list becomes the run's
`array.values` (each value as JSON text, which the in-container entry decodes),
recorded in run.json, so the run's workers, resumes and repro use that list.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from containerexec.errors import RunError, UsageError
from containerexec.model import arrays
from containerexec.model.arrays import NOTHING_NEXT, Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import resolve
from containerexec.model.spec import ModuleSpec
from containerexec.run import returned
from containerexec.run.context import RunOptions, Services
from containerexec.run.logs import LogSink
from containerexec.run.runner import Tracker, run_invocation
from containerexec.store.records import RunRecord

ENV_ARRAY = "CONTAINEREXEC_PY_ARRAY"  # the entry calls this method and returns its list
LISTING = "array-list"  # its staging folder and log (.log) in the run's folder


def lists(spec: ModuleSpec) -> bool:
    return spec.array is not None and spec.array.python is not None


def expanded(
    spec: ModuleSpec, bindings: Bindings, selection: str | None
) -> tuple[list[Shard], list[Shard]]:
    """The shards and those selected, as far as they are known before the image: none
    yet for an array.python (see listed)."""
    if lists(spec):
        return [], []
    shards = arrays.expand(spec.array, bindings.inputs)
    return shards, arrays.select(shards, selection)


def listed(
    services: Services,
    spec: ModuleSpec,
    bindings: Bindings,
    run_id: str,
    image: str,
    opts: RunOptions,
) -> ModuleSpec:
    """`spec` with `array.values` set to what its `array.python` method returns, now, in
    `image`. Raises RunError when the container fails or returns no list, UsageError
    when the list is empty and the array does not allow that."""
    assert spec.array is not None and spec.array.python is not None
    where = f"module '{spec.name}': array.python: {spec.array.python}() in its image"
    run_dir, secrets = services.store.run_dir(run_id), services.secrets
    staging = run_dir / LISTING
    inv = resolve(
        spec,
        bindings,
        Shard(0, "", 1),
        run_id=run_id,
        image=image,
        staging=staging,
        user=opts.user or f"{os.getuid()}:{os.getgid()}",
        labels=dict(opts.labels),
    )
    inv = inv.model_copy(
        update={
            "mounts": [m for m in inv.mounts if m.kind == "input"],
            "env": {**inv.env, ENV_ARRAY: spec.array.python},
            "name": f"cx-{run_id}-{LISTING}",
        }
    )
    inv = returned.mounted(inv, staging)
    shutil.rmtree(staging, ignore_errors=True)
    returned.prepare(staging, inv)
    log = LogSink(run_dir / f"{LISTING}.log", redact=list(secrets.values()))
    try:
        attempt = run_invocation(
            services.engine, inv, secrets=secrets, log=log, tracker=Tracker(), clock=time.time
        )
        log.finish()
        if not attempt.ok:
            said = attempt.message or f"exit {attempt.exit_code}"
            tail = "".join(f"\n  {line}" for line in attempt.log_tail[-20:])
            raise RunError(
                f"{where} failed ({attempt.failure}: {said}); nothing was run; "
                f"its log: {log.path}{tail}"
            )
        try:
            value = returned.read(staging, inv)
        except returned.ValueUnreadable as exc:
            raise RunError(f"{where}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not isinstance(value, list):
        got = "nothing" if value is None else type(value).__name__
        raise RunError(
            f"{where} returned {got}, not a list; array.python needs a module that "
            "`containerexec spec build` made from a ContainerModule"
        )
    if not value and not spec.array.allow_empty:
        raise UsageError(f"{where} returned an empty list; {NOTHING_NEXT}")
    return _with_values(spec, [json.dumps(v, sort_keys=True) for v in value])


def recorded(spec: ModuleSpec, prev: RunRecord) -> ModuleSpec:
    """For a resume: the list the run's start made (a run is one list, as it is one image)."""
    if spec.array is None or spec.array.python is None:
        return spec
    values = (prev.spec.get("array") or {}).get("values")
    if not isinstance(values, list):
        raise UsageError(
            f"--resume {prev.run_id}: that run recorded no list of array.python values; "
            "start a new run"
        )
    return _with_values(spec, [str(v) for v in values])


def _with_values(spec: ModuleSpec, values: list[str]) -> ModuleSpec:
    assert spec.array is not None
    array = spec.array.model_copy(update={"python": None, "values": values})
    return spec.model_copy(update={"array": array})


def source_changed(spec: ModuleSpec, prev: RunRecord, spec_path: Path | None) -> list[str]:
    """The notice of a resume whose Python module source differs from the run's (a spec
    built again by `spec build`): its shards run the new source, the others ran the old."""
    was = (prev.spec.get("source") or {}).get("sha256")
    if spec.source is None or was is None or was == spec.source.sha256:
        return []
    return [
        f"the Python source {spec.source.file} of module '{spec.name}' changed since run "
        f"{prev.run_id} started (sha256 {was[:12]} -> {spec.source.sha256[:12]}); the shards "
        "this resume runs run the new source, the shards that succeeded ran the old one; to "
        f"run one source for every shard, start a new run: containerexec run "
        f"{spec_path or 'SPEC'} (without --resume)"
    ]
