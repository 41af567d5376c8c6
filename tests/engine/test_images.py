"""Images on the real engine with a real registry: pinning, pull policy, builds, push and share,
listing and pruning, and the errors of bad input."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from click.testing import CliRunner, Result
from registry import Registry, free_port

from containerexec.cli import App, cli
from containerexec.engine.docker import DockerEngine
from containerexec.environment import images
from containerexec.errors import ImageError, PullError
from containerexec.labels import LABEL_MODULE
from containerexec.model.spec import ModuleSpec, load_spec
from containerexec.run.executor import Executor, RunOptions
from containerexec.run.results import ShardEvent
from containerexec.store.tree import RunStore

BASE = "containerexec/base:bookworm"


@pytest.fixture
def created(engine: DockerEngine) -> Iterator[list[str]]:
    """Image references a test made; each is removed at the end, whatever the outcome."""
    refs: list[str] = []
    yield refs
    for ref in reversed(refs):
        try:
            engine.remove_image(ref)
        except Exception as exc:  # a best-effort cleanup must not hide the test's result
            print(f"cleanup of {ref}: {exc}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def marker_context(folder: Path, marker: str, extra: str = "") -> Path:
    """A build folder whose image holds /marker with `marker` in it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "marker").write_text(marker + "\n")
    (folder / "Dockerfile").write_text(f"FROM {BASE}\nCOPY marker /marker\n{extra}")
    return folder


def build_push(
    engine: DockerEngine, context: Path, repo: str, tag: str, labels: dict[str, str]
) -> tuple[str, str]:
    """Build `context` as repo:tag and push it; returns (image id, manifest digest)."""
    info = engine.build(
        str(context),
        dockerfile="Dockerfile",
        tag=f"{repo}:{tag}",
        buildargs={},
        target=None,
        labels=labels,
    )
    return info.id, engine.push(repo, tag)


def pushed_a(
    engine: DockerEngine,
    registry: Registry,
    folder: Path,
    labels: dict[str, str],
    created: list[str],
    prefix: str,
) -> tuple[str, str, str, str]:
    """A fresh module name and repository whose tag v1 holds image A: (name, repo, id, digest)."""
    name, repo = unique(prefix), f"{registry.address}/{unique(prefix)}"
    a_id, a_digest = build_push(engine, marker_context(folder / "a", "image-A"), repo, "v1", labels)
    created += [f"{repo}:v1", a_id]
    return name, repo, a_id, a_digest


def cx(runs: Path, *args: str, sleep: Callable[[float], object] | None = None) -> Result:
    """`containerexec --runs-dir RUNS ARGS...`, with an injected registry backoff."""
    return CliRunner().invoke(
        cli, ["--runs-dir", str(runs), *args], obj=App(runs_dir=runs, sleep=sleep)
    )


def run_containers(client: docker.DockerClient, module: str) -> list[str]:
    found = client.api.containers(all=True, filters={"label": f"containerexec.module={module}"})
    return [c["Id"] for c in found]


def test_a_tag_pushed_again_between_attempts_changes_nothing_for_the_run(
    engine: DockerEngine,
    registry: Registry,
    test_session_label: dict[str, str],
    created: list[str],
    tmp_path: Path,
) -> None:
    name, repo, _, a_digest = pushed_a(
        engine, registry, tmp_path, test_session_label, created, "pin"
    )
    engine.remove_image(f"{repo}:v1")  # the run must pull
    spec_path = tmp_path / "pin.yaml"
    spec_path.write_text(
        f"name: {name}\nenvironment: {{image: '{repo}:v1', pull: always}}\n"
        "command: [sh, -c, 'cat /marker; exit 3']\n"
        "retries: {max_attempts: 2, on_exit_codes: [3], backoff: {initial: 0.1}}\n"
    )
    spec = load_spec(spec_path)
    moved: list[str] = []

    def push_b_when_retrying(event: ShardEvent) -> None:
        if event.kind == "retrying":
            b_id, b_digest = build_push(
                engine, marker_context(tmp_path / "b", "image-B"), repo, "v1", test_session_label
            )
            created.append(b_id)
            moved.append(b_digest)

    store = RunStore(tmp_path / "runs")
    executor = Executor(engine, store, sleep=lambda s: None, on_event=push_b_when_retrying)
    opts = RunOptions(labels=test_session_label)
    result = executor.start(spec, {}, {}, spec_path=spec_path, options=opts).wait()

    assert moved and moved[0] != a_digest, "the tag did not move during the run"
    assert result.record.image.pinned == f"{repo}@{a_digest}"
    shard = store.load_shards(result.record.run_id)[0]
    assert len(shard.attempts) == 2
    assert shard.invocation.image == f"{repo}@{a_digest}"
    log = Path(shard.log_path)
    first = log.with_name(f"{log.stem}.attempt1.log")
    assert "image-A" in first.read_text() and "image-A" in log.read_text()
    assert "image-B" not in first.read_text() + log.read_text()
    again = images.resolve(engine, spec, tmp_path, pull="always", sleep=lambda s: None)
    assert again.pinned == f"{repo}@{moved[0]}", "a new run resolves the moved tag"


@pytest.mark.podman  # CI: on Podman too
def test_a_resumed_run_pulls_its_first_digest_though_the_tag_moved(
    engine: DockerEngine,
    registry: Registry,
    test_session_label: dict[str, str],
    created: list[str],
    tmp_path: Path,
) -> None:
    name, repo, a_id, a_digest = pushed_a(
        engine, registry, tmp_path, test_session_label, created, "resume"
    )
    spec_path = tmp_path / "resume.yaml"
    spec_path.write_text(
        f"name: {name}\nenvironment: {{image: '{repo}:v1'}}\n"
        "outputs: {out: {type: directory}}\narray: {range: 2}\n"
        "command: [sh, -c, 'cat /marker > \"$0/$1\"', '${{outputs.out}}', '${{shard.index}}']\n"
    )
    spec = load_spec(spec_path)
    store, out = RunStore(tmp_path / "runs"), tmp_path / "out"
    executor = Executor(engine, store, sleep=lambda s: None)
    first = executor.start(
        spec,
        {},
        {"out": str(out)},
        spec_path=spec_path,
        options=RunOptions(shards="0", labels=test_session_label),
    ).wait()
    assert first.state == "succeeded"
    b_id, _ = build_push(
        engine, marker_context(tmp_path / "b", "image-B"), repo, "v1", test_session_label
    )
    created.append(b_id)
    engine.remove_image(a_id)  # the resumed run has to pull image A back by its digest

    resumed = (
        Executor(engine, store, sleep=lambda s: None)
        .resume(
            spec,
            first.record.run_id,
            spec_path=spec_path,
            options=RunOptions(labels=test_session_label),
        )
        .wait()
    )

    assert resumed.state == "succeeded"
    assert resumed.record.image.pinned == f"{repo}@{a_digest}"
    assert [(out / str(i)).read_text() for i in (0, 1)] == ["image-A\n", "image-A\n"]
    images_used = {s.invocation.image for s in store.load_shards(first.record.run_id).values()}
    assert images_used == {f"{repo}@{a_digest}"}


@pytest.mark.podman  # CI: on Podman too
def test_a_local_image_once_pushed_to_a_gone_registry_is_pinned_by_id_and_repro_works(
    engine: DockerEngine,
    registry: Registry,  # the session's: only to skip when the registry package is missing
    test_session_label: dict[str, str],
    created: list[str],
    tmp_path: Path,
) -> None:
    local = f"{unique('cx-pin-local')}:v1"
    with Registry() as elsewhere:  # a registry of its own, stopped before the run
        repo = f"{elsewhere.address}/x/base"
        image_id, digest = build_push(
            engine, marker_context(tmp_path, "local-image"), repo, "v1", test_session_label
        )
    pushed = f"{repo}@{digest}"
    engine.tag(image_id, *local.split(":"))
    created += [pushed, f"{repo}:v1", local]
    spec_path = tmp_path / "pin.yaml"
    spec_path.write_text(
        f"name: cx-pin-local\nenvironment: {{image: '{local}'}}\n"
        "command: [sh, -c, 'cat /marker; exit 3']\n"
    )
    store = RunStore(tmp_path / "runs")
    opts = RunOptions(labels=test_session_label)
    executor = Executor(engine, store, sleep=lambda s: None)
    result = executor.start(load_spec(spec_path), {}, {}, spec_path=spec_path, options=opts).wait()

    assert result.record.image.pinned == image_id and result.record.image.digest is None
    assert store.load_shards(result.record.run_id)[0].invocation.image == image_id
    # The names the gone registry gave the image leave this engine; the image stays.
    engine.remove_image(pushed)
    engine.remove_image(f"{repo}:v1")
    assert engine.inspect_image(pushed) is None
    replay = cx(store.root, "repro", result.record.run_id, sleep=lambda s: None)
    assert replay.exit_code == 3, replay.output
    assert "reproduced: exit 3, same as recorded" in replay.stdout
    assert "local-image" in replay.output


def test_pull_policy_never_missing_and_always(
    engine: DockerEngine,
    registry: Registry,
    test_session_label: dict[str, str],
    created: list[str],
    tmp_path: Path,
) -> None:
    repo = f"{registry.address}/{unique('policy')}"
    a_id, digest = build_push(
        engine, marker_context(tmp_path / "a", "policy"), repo, "1", test_session_label
    )
    created += [f"{repo}:1", a_id]
    spec_path = tmp_path / "p.yaml"
    spec_path.write_text(f"name: policy\nenvironment: {{image: '{repo}:1'}}\ncommand: ['true']\n")
    spec = load_spec(spec_path)

    def resolve(pull: str) -> images.ImageRecord:
        return images.resolve(engine, spec, tmp_path, pull=pull, sleep=lambda s: None)

    assert resolve("missing").source == "local"
    assert resolve("always").source == "pull"
    assert resolve("always").pinned == f"{repo}@{digest}"
    engine.remove_image(a_id)
    with pytest.raises(ImageError, match="pull policy is 'never'"):
        resolve("never")
    assert resolve("missing").source == "pull"


def test_a_permanent_registry_answer_is_not_retried(
    engine: DockerEngine,
    registry: Registry,
) -> None:
    sleeps: list[float] = []
    ref = f"{registry.address}/{unique('absent')}:nope"
    with pytest.raises(PullError) as caught:
        images.pull_with_retries(engine, "absent", ref, sleep=sleeps.append)
    assert sleeps == []
    assert "module 'absent'" in str(caught.value) and ref in str(caught.value)
    assert "not found" in str(caught.value) or "unknown" in str(caught.value)


@pytest.mark.podman  # CI: on Podman too
def test_push_then_run_and_inspect_with_nothing_but_the_reference(
    engine: DockerEngine,
    registry: Registry,
    test_session_label: dict[str, str],
    created: list[str],
    tmp_path: Path,
) -> None:
    name, repo = unique("share"), f"{registry.address}/{unique('share')}"
    marker_context(tmp_path / "ctx", "shared-image")
    spec_path = tmp_path / "share.yaml"
    spec_path.write_text(
        f"name: {name}\nversion: 2.1.0\nenvironment: {{build: ctx}}\n"
        "outputs: {out: {type: directory}}\n"
        "command: [sh, -c, 'cat /marker > \"$0/marker.txt\"', '${{outputs.out}}']\n"
    )
    runs = tmp_path / "runs"
    label = "=".join(next(iter(test_session_label.items())))

    pushed = cx(runs, "push", str(spec_path), "--to", f"{repo}:1", "--label", label)

    assert pushed.exit_code == 0, pushed.output
    pinned = pushed.stdout.strip()
    record = json.loads((runs / "pushes" / f"{name}.json").read_text())
    assert pinned == record["pinned"] and pinned.startswith(f"{repo}@sha256:")
    created += [f"{repo}:1", pinned, record["image_id"], record["environment"]]
    for ref in (f"{repo}:1", pinned, record["image_id"], record["environment"]):
        engine.remove_image(ref)  # nothing of the module is left here but its reference
    assert engine.inspect_image(pinned) is None

    ran = cx(runs, "run", pinned, "-o", f"out={tmp_path / 'out'}")

    assert ran.exit_code == 0, ran.output
    assert (tmp_path / "out" / "marker.txt").read_text() == "shared-image\n"
    assert "layers" in ran.stderr  # pull progress was shown
    rec = RunStore(runs).load_run("last")
    assert rec.image.pinned == pinned and rec.spec_path is None and rec.version == "2.1.0"
    shown = cx(runs, "inspect", f"{repo}:1")
    assert shown.exit_code == 0, shown.output
    carried = load_spec_text(tmp_path, shown.stdout)
    assert carried.name == name and carried.environment.image == pinned


def load_spec_text(folder: Path, text: str) -> ModuleSpec:
    path = folder / "carried.yaml"
    path.write_text(text)
    return load_spec(path)


def test_an_unreachable_registry_fails_after_bounded_retries_with_one_line(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    test_session_label: dict[str, str],
    tmp_path: Path,
) -> None:
    name, address = unique("offline"), f"127.0.0.1:{free_port()}"
    spec_path = tmp_path / "offline.yaml"
    spec_path.write_text(
        f"name: {name}\nenvironment: {{image: '{address}/x:1', pull: always}}\ncommand: ['true']\n"
    )
    local = tmp_path / "local.yaml"  # its image is here: only the push meets the registry
    local.write_text(f"name: {name}\nenvironment: {{image: '{BASE}'}}\ncommand: ['true']\n")
    label = "=".join(next(iter(test_session_label.items())))
    runs = tmp_path / "runs"
    for args in (
        ["run", str(spec_path)],
        ["run", f"{address}/x:1"],
        ["push", str(local), "--to", f"{address}/pushed:1", "--label", label],
    ):
        sleeps: list[float] = []
        result = cx(runs, *args, sleep=sleeps.append)
        errors = [line for line in result.stderr.splitlines() if "rror" in line]
        assert result.exit_code == 1, result.output
        assert len(sleeps) == images.PULL_ATTEMPTS - 1, args
        assert len(errors) == 1 and errors[0].startswith("Error: "), result.stderr
        error = errors[0]
        assert address in error and "after 4 attempts" in error
        assert "connection refused" in error
    assert run_containers(docker_client, name) == []
    assert engine.inspect_image(f"{address}/pushed:1") is None  # not left half-tagged
    for image in engine.images({LABEL_MODULE: name}):  # the labelled image, complete
        engine.remove_image(image.id)


def test_a_failed_pull_of_an_image_present_here_goes_on_offline(
    engine: DockerEngine,
    created: list[str],
    tmp_path: Path,
) -> None:
    repo = f"127.0.0.1:{free_port()}/{unique('offline')}"
    engine.tag(BASE, repo, "1")
    created.append(f"{repo}:1")
    spec_path = tmp_path / "offline.yaml"
    spec_path.write_text(
        f"name: offline\nenvironment: {{image: '{repo}:1', pull: always}}\ncommand: ['true']\n"
    )
    sleeps: list[float] = []
    rec = images.resolve(engine, load_spec(spec_path), tmp_path, sleep=sleeps.append)
    base = engine.inspect_image(BASE)
    assert base is not None and rec.source == "local" and rec.id == base.id
    assert len(sleeps) == images.PULL_ATTEMPTS - 1


def fails_to_build_and_run(runs: Path, spec_path: Path, name: str) -> list[str]:
    """`build` then `run` SPEC: each exits 1 naming the module; returns their stderr."""
    out = []
    for command in ("build", "run"):
        result = cx(runs, command, str(spec_path))
        assert result.exit_code == 1, result.output
        assert f"module '{name}'" in result.stderr
        out.append(result.stderr)
    return out


def test_a_failing_dockerfile_shows_the_step_and_tags_nothing(
    engine: DockerEngine,
    docker_client: docker.DockerClient,
    tmp_path: Path,
) -> None:
    name, token = unique("failbuild"), uuid.uuid4().hex
    marker_context(tmp_path / "ctx", "x", extra=f"RUN echo said-{token} && exit 3\n")
    spec_path = tmp_path / "fail.yaml"
    spec_path.write_text(f"name: {name}\nenvironment: {{build: ctx}}\ncommand: ['true']\n")
    for stderr in fails_to_build_and_run(tmp_path / "runs", spec_path, name):
        assert re.search(f"Step 3/[0-9]+ : RUN echo said-{token} && exit 3", stderr)
        # Docker's words, or Podman's (buildah's)
        assert "returned a non-zero code: 3" in stderr or "exit status 3" in stderr, stderr
        assert f"said-{token}" in stderr.split("build failed:", 1)[1]  # the log tail
    assert engine.images({LABEL_MODULE: name}) == []
    assert run_containers(docker_client, name) == []
    leftovers = [
        c for c in docker_client.api.containers(all=True) if token in (c.get("Command") or "")
    ]
    assert leftovers == [], "the failed step's container was left behind"


def test_an_unchanged_build_context_is_not_built_again(
    engine: DockerEngine,
    created: list[str],
    tmp_path: Path,
) -> None:
    marker_context(tmp_path / "ctx", unique("cache"))
    spec_path = tmp_path / "cache.yaml"
    spec_path.write_text(
        f"name: {unique('cache')}\nenvironment: {{build: ctx}}\ncommand: ['true']\n"
    )
    spec = load_spec(spec_path)
    first_log: list[str] = []
    first = images.resolve(engine, spec, tmp_path, on_log=first_log.append)
    created.append(first.ref)
    second_log: list[str] = []
    second = images.resolve(engine, spec, tmp_path, on_log=second_log.append)
    assert first_log and second_log == []
    assert second.pinned == first.pinned == first.id
    (tmp_path / "ctx" / "marker").write_text("changed\n")
    third = images.resolve(engine, spec, tmp_path, on_log=None)
    created.append(third.ref)
    assert third.ref != first.ref and third.id != first.id


def test_images_lists_last_use_and_prune_keeps_what_runs_need(
    engine: DockerEngine,
    test_session_label: dict[str, str],
    created: list[str],
    tmp_path: Path,
) -> None:
    name = unique("prune")
    marker_context(tmp_path / "ctx", "used")
    spec_path = tmp_path / "prune.yaml"
    spec_path.write_text(f"name: {name}\nenvironment: {{build: ctx}}\ncommand: ['true']\n")
    runs = tmp_path / "runs"
    ran = cx(runs, "run", str(spec_path))
    assert ran.exit_code == 0, ran.output
    used = RunStore(runs).load_run("last").image
    (tmp_path / "ctx" / "marker").write_text("unused\n")
    unused = images.resolve(engine, load_spec(spec_path), tmp_path)
    created += [used.ref, unused.ref]

    listed = cx(runs, "images", "list", "--module", name)
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {used.ref, unused.ref}
    assert rows[unused.ref].endswith("never") and not rows[used.ref].endswith("never")

    dry = cx(runs, "images", "prune", "--dry-run", "--module", name)
    assert dry.exit_code == 0 and f"would remove {unused.ref}" in dry.stdout
    assert used.ref not in dry.stdout and engine.inspect_image(unused.ref) is not None
    pruned = cx(runs, "images", "prune", "--module", name)
    assert pruned.exit_code == 0 and f"removed {unused.ref}" in pruned.stdout
    assert engine.inspect_image(unused.ref) is None
    assert engine.inspect_image(used.ref) is not None
    again = cx(runs, "images", "prune", "--module", name)
    assert "nothing to remove" in again.stdout
