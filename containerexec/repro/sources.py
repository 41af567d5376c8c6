"""Where a replay starts from, and what goes into an export.

A source is a run id, an exported file, a bundle, or a pipeline run (its id, its
pipeline.json, its export or its bundle) and one job of it. This module reads each
into a `Source`, writes runs and pipeline runs out (JSON or bundle), and makes what a
replay needs present here: the bundle's image (verified by its ID), the bundle's
inputs (unpacked into a folder of the store), and, for a pipeline job whose upstream
outputs are nowhere, replays of the upstream jobs first.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from pydantic import Field

from containerexec.engine import archive
from containerexec.engine.base import Engine
from containerexec.errors import ImageError, RecordError, UntrustedInput, UsageError
from containerexec.model.hostsafety import EnginePlaces
from containerexec.pipelines.record import PipelineRecord
from containerexec.repro import liveness, planning, replay
from containerexec.run.executor import Executor
from containerexec.store import bundle as bundles
from containerexec.store import export as portable
from containerexec.store.records import SCHEMA_VERSION, Record, ShardRecord, load_model, write_json
from containerexec.store.tree import RunStore

PIPELINE_EXPORT_KIND = "containerexec.pipeline-export"
Sleep = Callable[[float], object]


class PipelineExport(Record):
    """A pipeline run in one file: its record and every job's run export (job -> export)."""

    kind: Literal["containerexec.pipeline-export"] = "containerexec.pipeline-export"
    schema_version: int = SCHEMA_VERSION
    pipeline: PipelineRecord
    runs: dict[str, portable.RunExport] = Field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """The run to replay (for a pipeline, job `job`'s), and what came with it."""

    run: portable.RunExport
    bundle: bundles.Bundle | None = None
    pipeline: PipelineRecord | None = None
    job: str | None = None
    jobs: dict[str, portable.RunExport] = field(default_factory=dict)


def load(store: RunStore, target: str, *, job: str | None = None) -> Source:
    """A bundle, a pipeline (export, pipeline.json, id), or what `export.load_source` reads."""
    path = Path(target).expanduser()
    if path.is_dir() and (path / "pipeline.json").is_file():
        path = path / "pipeline.json"
    if bundles.is_bundle(path):
        b = bundles.Bundle(path)
        if b.pipeline is None:
            if job is not None:
                raise UsageError(f"--job {job}: bundle '{path}' holds one run, not a pipeline")
            return Source(next(iter(b.runs.values())), bundle=b)
        rec = PipelineRecord.model_validate(b.pipeline)
        jobs = {n: b.runs[j.run_id] for n, j in rec.jobs.items() if j.run_id in b.runs}
        return _pick(rec, jobs, job, bundle=b)
    if path.is_file() and _kind(path) in (PIPELINE_EXPORT_KIND, "pipeline"):
        if _kind(path) == PIPELINE_EXPORT_KIND:
            ex = load_model(path, PipelineExport)
            return _pick(ex.pipeline, ex.runs, job)
        rec = load_model(path, PipelineRecord)
        # A pipeline.json sits in <runs-dir>/pipelines/<id>/: its jobs' runs are beside it.
        return _pick(rec, _job_runs(RunStore(path.parents[2]), rec), job)
    if not path.exists() and os.sep not in target and not target.endswith(".json"):
        exact = (store.run_dir(target) / "run.json").is_file()
        pipeline = None if exact or target == "last" else store.resolve_pipeline(target)
        if pipeline is not None:
            rec = load_model(store.pipeline_dir(pipeline) / "pipeline.json", PipelineRecord)
            return _pick(rec, _job_runs(store, rec), job)
    if job is not None:
        raise UsageError(f"--job {job}: '{target}' is one run, not a pipeline run")
    return Source(portable.load_source(store, target))


def _kind(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # whoever loads it says what is wrong with it
    if not isinstance(data, dict):
        return None
    if "jobs" in data and "run_id" not in data and "kind" not in data:
        return "pipeline"
    kind = data.get("kind")
    return kind if isinstance(kind, str) else None


def _job_runs(store: RunStore, rec: PipelineRecord) -> dict[str, portable.RunExport]:
    out = {}
    for name, j in rec.jobs.items():
        if j.run_id and (store.run_dir(j.run_id) / "run.json").is_file():
            out[name] = portable.export_run(store, j.run_id)
    return out


def _pick(
    rec: PipelineRecord,
    jobs: dict[str, portable.RunExport],
    job: str | None,
    *,
    bundle: bundles.Bundle | None = None,
) -> Source:
    """Job `job` of the pipeline run, or its first failed job."""
    states = ", ".join(f"{n} ({j.state})" for n, j in rec.jobs.items())
    if job is None:
        failed = [n for n, j in rec.jobs.items() if j.state == "failed" and n in jobs]
        if not failed:
            raise UsageError(
                f"pipeline run '{rec.id}' has no failed job with a run; pick one with "
                f"--job J (jobs: {states})"
            )
        job = failed[0]
    if job not in jobs:
        raise UsageError(
            f"--job {job}: pipeline run '{rec.id}' has no recorded run of it (jobs: {states})"
        )
    return Source(jobs[job], bundle=bundle, pipeline=rec, job=job, jobs=jobs)


def export_pipeline(store: RunStore, pipeline_id: str) -> PipelineExport:
    rec = load_model(store.pipeline_dir(pipeline_id) / "pipeline.json", PipelineRecord)
    return PipelineExport(pipeline=rec, runs=_job_runs(store, rec))


def write_export(store: RunStore, target: str, dest: Path | None) -> tuple[str, str]:
    """`runs export -o`: a run's or a pipeline run's JSON to `dest` (None: returned only).

    Returns (what was exported, in words; the JSON text).

    Raises:
        StillRunning: a live process still runs it (see repro/liveness.py).
    """
    pipeline = _pipeline_id(store, target)
    _refuse_running(store, target, pipeline)
    if pipeline is not None:
        data = export_pipeline(store, pipeline)
        what = f"pipeline run {pipeline} ({len(data.runs)} job runs)"
    else:
        run = portable.export_run(store, target)
        data, what = run, f"run {run.run.run_id} ({len(run.shards)} shards)"  # type: ignore[assignment]
    dumped = data.model_dump(mode="json")
    if dest is not None:
        write_json(dest, dumped)
    return what, json.dumps(dumped, indent=1, sort_keys=True)


def _refuse_running(store: RunStore, target: str, pipeline: str | None) -> None:
    refusal = liveness.still_running(store, target, pipeline)
    if refusal is not None:
        raise refusal


def running(
    store: RunStore, target: str, elsewhere: liveness.Elsewhere | None = None
) -> liveness.StillRunning | None:
    """Who still runs `target` (a run or a pipeline run), or None."""
    return liveness.still_running(store, target, _pipeline_id(store, target), elsewhere)


def wait_until_ended(
    store: RunStore, target: str, elsewhere: liveness.Elsewhere | None = None
) -> None:
    """`runs export --wait`: return once nothing runs `target` (Ctrl-C stops)."""
    liveness.wait_until_ended(store, target, _pipeline_id(store, target), elsewhere)


def _pipeline_id(store: RunStore, target: str) -> str | None:
    if target == "last" or (store.run_dir(target) / "run.json").is_file():
        return None
    return store.resolve_pipeline(target)


def write_bundle(
    store: RunStore,
    target: str,
    dest: Path,
    *,
    engine: Callable[[], Engine] | None = None,
    job: str | None = None,
    shard: int | None = None,
    with_inputs: bool = False,
    max_input_bytes: int = bundles.DEFAULT_MAX_INPUT_BYTES,
) -> bundles.BundleManifest:
    """`runs export --bundle`: a run or a pipeline run as a bundle.

    `engine` given: the images go in too (--with-image). `with_inputs`: the inputs of
    one shard (`shard`, else the first failed) of the run (of a pipeline: of `job`, else
    the first failed job), upstream outputs included, within `max_input_bytes`.

    Raises:
        StillRunning: a live process still runs it (see repro/liveness.py).
    """
    pipeline = _pipeline_id(store, target)
    _refuse_running(store, target, pipeline)
    if pipeline is not None:
        source = _pick_for_export(store, pipeline, job, with_inputs)
        exports = list(source.jobs.values())
        raw = json.loads((store.pipeline_dir(pipeline) / "pipeline.json").read_text())
    else:
        if job is not None:
            raise UsageError(f"--job {job}: '{target}' is one run, not a pipeline run")
        source = Source(portable.export_run(store, target))
        exports, raw = [source.run], None
    images = {ex.run.image.id: ex.run.image.pinned for ex in exports} if engine else {}
    inputs: list[bundles.InputSource] = []
    inputs_of = None
    if with_inputs:
        rec = planning.pick_shard(source.run, shard)
        made_by = _made_by(source)
        inputs = [
            bundles.InputSource(
                m.name,
                Path(m.source),
                m.is_file,
                made_by.get(_folder(m.source, m.shard_file)),
                shard_file=m.shard_file,
            )
            for m in rec.invocation.mounts
            if m.kind == "input"
        ]
        what = f"shard {rec.index} of run '{rec.run_id}'"
        bundles.check_input_size(what, inputs, max_input_bytes)
        inputs_of = (rec.run_id, rec.index)
    eng = engine() if engine and images else None
    return bundles.write_bundle(
        dest,
        exports,
        pipeline=raw,
        log_files={
            ex.run.run_id: {s.index: store.log_path(ex.run.run_id, s.index) for s in ex.shards}
            for ex in exports
        },
        images=images,
        save_image=eng.save_image if eng else None,
        inputs=inputs,
        inputs_of=inputs_of,
    )


def _folder(source: str, shard_file: str) -> str:
    """The input's folder, for a glob shard that mounted only its own file inside it."""
    return source[: -len(shard_file) - 1] if shard_file else source


def _pick_for_export(store: RunStore, pipeline: str, job: str | None, need_job: bool) -> Source:
    rec = load_model(store.pipeline_dir(pipeline) / "pipeline.json", PipelineRecord)
    jobs = _job_runs(store, rec)
    if need_job or job is not None:
        return _pick(rec, jobs, job)
    return Source(next(iter(jobs.values())), pipeline=rec, jobs=jobs) if jobs else _none(rec)


def _none(rec: PipelineRecord) -> Source:
    raise RecordError(rec.id, "no job of this pipeline run has started a run; nothing to export")


def _made_by(source: Source) -> dict[str, str]:
    """Recorded output path -> the pipeline job that made it."""
    return {path: name for name, ex in source.jobs.items() for path in ex.run.outputs.values()}


def upstream_needed(source: Source, rec: ShardRecord, given: Mapping[str, str]) -> dict[str, str]:
    """Input name -> the job that made it, for the shard's inputs that are nowhere here."""
    made = _made_by(source)
    return {
        name: made[m.source]
        for name in planning.missing_inputs(rec, given)
        for m in rec.invocation.mounts
        if m.name == name and m.source in made
    }


def make_image_present(
    engine: Engine, source: Source, run: portable.RunExport, plan: planning.Plan, sleep: Sleep
) -> tuple[planning.Plan, str]:
    """The plan's image on this engine: from the bundle (then run by its verified ID), else
    as `planning.ensure_image` does (present, or pulled by digest); and how, in words."""
    loaded = bundle_image(engine, replace(source, run=run), run.run.image.id)
    if loaded is None:
        return plan, planning.ensure_image(engine, plan, sleep=sleep)
    inv = plan.inv.model_copy(update={"image": loaded})
    return replace(plan, inv=inv), "from the bundle, ID verified"


def replay_upstream(
    executor: Executor,
    source: Source,
    needed: Mapping[str, str],
    *,
    say: Callable[[str], None],
    sleep: Sleep,
    grants: planning.Grants = planning.NO_GRANTS,
    engine_places: EnginePlaces | None = None,
) -> dict[str, str]:
    """Replay each job in `needed` (input -> job), and what it needs first, in order; every
    shard as a one-shard replay whose outputs go to this store's pipeline folder, under the
    same `grants` as the job asked for. Returns input name -> the replayed output's path."""
    assert source.pipeline is not None and source.job is not None
    store = executor.store
    done: dict[str, dict[str, str]] = {}  # job -> recorded output path -> replayed path

    def run_job(job: str) -> dict[str, str]:
        if job in done:
            return done[job]
        ex = source.jobs[job]
        out_root = store.pipeline_dir(source.pipeline.id) / "jobs" / job  # type: ignore[union-attr]
        paths: dict[str, str] = {}
        for shard in sorted(ex.shards, key=lambda s: s.index):
            inputs = {
                name: run_job(up)[_source_of(shard, name)]
                for name, up in upstream_needed(source, shard, {}).items()
            }
            say(
                f"replaying upstream job '{job}' shard {shard.index} first: the output "
                f"job '{source.job}' reads is not here"
            )
            plan = planning.plan_replay(
                store,
                ex,
                shard=shard.index,
                inputs=inputs,
                outputs_root=out_root,
                grants=grants,
                engine_places=engine_places,
            )
            plan, _ = make_image_present(executor.engine, source, ex, plan, sleep)
            result = replay.start(executor, plan).wait()
            got = store.load_shards(plan.run_id)[shard.index]
            if got.state != "succeeded":
                raise UsageError(
                    f"upstream job '{job}' shard {shard.index} failed when replayed "
                    f"({got.message or got.failure}; run {plan.run_id}), so job "
                    f"'{source.job}' cannot be replayed on its outputs; replay it with "
                    f"'containerexec repro {source.pipeline.id} --job {job}'"  # type: ignore[union-attr]
                )
            paths |= {ex.run.outputs[o]: result.record.outputs[o] for o in ex.run.outputs}
        done[job] = paths
        return paths

    return {
        name: run_job(job)[_source_of(source.run.shards[0], name)] for name, job in needed.items()
    }


def _source_of(rec: ShardRecord, name: str) -> str:
    return next(m.source for m in rec.invocation.mounts if m.name == name)


@dataclass(frozen=True)
class Prepared:
    """What was made present for a replay: inputs to use, and what to tell the user."""

    inputs: dict[str, str]
    notes: list[str]
    image: str | None = None  # the image ID to run, when loaded from the bundle


def bundle_inputs(
    store: RunStore, source: Source, rec: ShardRecord, given: Mapping[str, str]
) -> Prepared:
    """The bundle's inputs of `rec`'s run, unpacked into a folder of the store; -i wins."""
    b = source.bundle
    if b is None or b.manifest.inputs_run != rec.run_id:
        return Prepared(dict(given), [])
    wanted = [i for i in b.manifest.inputs if i.name not in given]
    if not wanted:
        return Prepared(dict(given), [])
    folder = store.bundle_dir(f"{rec.run_id}-{_content_key(b, wanted)}")
    out = dict(given)
    for i in wanted:
        # Unpacking renames a complete folder into place, so one that is there is whole.
        if not (folder / i.file).exists():
            b.extract(i.file, folder)
        # A glob shard's own file is under inputs/<name>/; the replay is given that folder.
        out[i.name] = str(folder / i.file)
    names = ", ".join(i.name for i in wanted)
    return Prepared(out, [f"inputs {names} from the bundle, unpacked into {folder / 'inputs'}"])


def _content_key(b: bundles.Bundle, wanted: list[bundles.BundleInput]) -> str:
    """What the wanted inputs hold, as the bundle lists it: another bundle of the same run
    id with other content unpacks into a folder of its own, never into this one."""
    prefixes = tuple(f"{i.file}/" for i in wanted)
    listed = sorted(
        f"{f.path} {f.size} {f.sha256}"
        for f in b.manifest.files or []
        if f.path in {i.file for i in wanted} or f.path.startswith(prefixes)
    )
    return hashlib.sha256("\n".join(listed).encode()).hexdigest()[:12]


def bundle_image(engine: Engine, source: Source, recorded_id: str) -> str | None:
    """Load the run's image from the bundle unless the engine has it; its ID, checked.

    None when the bundle does not carry it (the caller pulls by digest instead)."""
    b = source.bundle
    carried = b.image_for(recorded_id) if b else None
    if b is None or carried is None:
        return None
    here = engine.inspect_image(recorded_id)
    if here is None:
        # Unpacked beside the bundle (same filesystem, likely room), removed once loaded.
        with tempfile.TemporaryDirectory(prefix=".cx-bundle-", dir=b.path.parent) as d:
            loaded = engine.load_image(_verified_image(source, recorded_id, Path(d)))
        here = engine.inspect_image(recorded_id)
        if here is None:
            raise ImageError(
                source.run.run.module,
                recorded_id,
                f"the engine loaded {', '.join(loaded) or 'nothing'} from bundle "
                f"'{b.path}', not the recorded image; check 'docker images' and the "
                "engine's log",
            )
    return here.id


def bundle_image_file(source: Source, recorded_id: str, dest: Path) -> Path | None:
    """For `repro --print`: the bundle's image, its ID checked, written to `dest` without
    tags, so the script's `docker load -i` moves no tag; None when the bundle has none."""
    b = source.bundle
    if b is None or b.image_for(recorded_id) is None:
        return None
    with tempfile.TemporaryDirectory(prefix=".cx-bundle-", dir=dest.parent) as d:
        archive.untagged(_verified_image(source, recorded_id, Path(d)), dest)
    return dest


def _verified_image(source: Source, recorded_id: str, folder: Path) -> Path:
    """The bundle's image tar unpacked into `folder`, after its own config says it is the
    recorded image (UntrustedInput, with both IDs, before any engine sees it)."""
    b = source.bundle
    carried = b.image_for(recorded_id) if b else None
    assert b is not None and carried is not None
    tar = b.extract(carried.file, folder)
    found = archive.image_id(tar, what=f"{b.path}: {carried.file}")
    if found != recorded_id:
        raise UntrustedInput(
            str(b.path),
            f"image '{carried.file}' has ID {found} but run "
            f"'{source.run.run.run_id}' recorded {recorded_id}; nothing was loaded. "
            "The bundle was edited or damaged: ask its sender to export it again",
        )
    return tar


__all__ = [
    "PipelineExport",
    "Prepared",
    "Source",
    "bundle_image",
    "bundle_image_file",
    "bundle_inputs",
    "load",
]
