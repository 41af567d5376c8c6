"""Images without an engine: references, context hashes, pinning, the carried spec, progress."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeEngine

from containerexec.cli import cli
from containerexec.cli.commands.images import TransferProgress, human_bytes
from containerexec.engine.base import ImageInfo
from containerexec.engine.dockererrors import registry_failure
from containerexec.environment import images, sharing
from containerexec.errors import ImageError, PullError
from containerexec.model.spec import parse_spec

DIGEST = "sha256:" + "ab" * 32
SPEC = """\
name: wc
version: 1.2.0
environment: {build: {context: ctx, args: {A: '1'}}}
inputs:
  corpus: {type: directory}
  min: {type: integer, default: 2}
outputs: {counts: {type: directory}}
command: [python3, /app/wc.py, '${{inputs.corpus}}', '${{outputs.counts}}',
          [--min, '${{inputs.min}}']]
array: {glob: {input: corpus, pattern: '*.txt'}, max_parallel: 3}
resources: {memory: 256m, timeout: 5m}
retries: {max_attempts: 2, on_exit_codes: [137]}
"""


@pytest.mark.parametrize(
    "ref",
    [
        "containerexec/base:bookworm",
        "127.0.0.1:5000/wc",
        "127.0.0.1:5000/team/wc:1.0-rc.1",
        f"127.0.0.1:5000/wc@{DIGEST}",
        f"localhost/wc:v1@{DIGEST}",
        "python",
        "sha256:" + "cd" * 32,
    ],
)
def test_valid_references_are_accepted(ref: str) -> None:
    images.check_reference("wc", ref)


@pytest.mark.parametrize(
    "ref",
    [
        "Not A Ref",
        "UPPER/case",
        "repo:tag:tag",
        "repo@sha256:short",
        "",
        "repo:",
        "a//b",
    ],
)
def test_a_malformed_reference_names_the_module_and_the_form(ref: str) -> None:
    with pytest.raises(ImageError) as caught:
        images.check_reference("wc", ref)
    text = str(caught.value)
    assert text.startswith(f"module 'wc': image '{ref}'")
    assert "[REGISTRY/]REPO[:TAG][@sha256:DIGEST]" in text


def test_an_image_error_before_the_module_is_known_names_only_the_image() -> None:
    assert str(ImageError("", "r:1", "gone")) == "image 'r:1': gone"


PINNED = "127.0.0.1:5000/cx/job@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            "manifest for x@sha256:1 not found: manifest unknown: manifest unknown",
            "gone from its registry",
        ),
        (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            "registry '127.0.0.1:5000' does not answer",
        ),
        ("unauthorized: authentication required", "log in (your engine's login command)"),
    ],
)
def test_pull_failures_get_one_line_with_the_next_step(answer: str, expected: str) -> None:
    # moved from test_repro_offline: repro's wording is now images.registry_advice
    error = PullError(None, PINNED, answer, failure=registry_failure(answer))
    text = images.registry_advice(error)
    assert expected in text and "\n" not in text


def test_the_final_pull_error_names_module_attempts_and_next_step_from_fields() -> None:
    answer = "dial tcp 127.0.0.1:1: connect:\n connection refused"
    engine_error = PullError(None, "127.0.0.1:1/x:1", answer, failure="unreachable")
    final = engine_error.advised(
        module="wc", attempts=4, advice=images.registry_advice(engine_error, 4)
    )
    assert str(final) == (
        "module 'wc': image '127.0.0.1:1/x:1': pull failed after 4 attempts "
        "(dial tcp 127.0.0.1:1: connect: connection refused): registry '127.0.0.1:1' "
        "does not answer; start it or check that this engine can reach it, then retry"
    )
    assert (final.attempts, final.failure, final.transient) == (4, "unreachable", True)
    assert engine_error.module is None and str(engine_error).startswith("image '127.0.0.1:1/x:1'")
    pushed = PullError(None, "r/x:1", "denied: no", failure="denied", operation="push")
    assert "refused the push" in images.registry_advice(pushed)
    tag = PullError(None, "r/x:1", "manifest unknown", failure="not-found")
    assert "check the reference" in images.registry_advice(tag)


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("127.0.0.1:5000/a/b:tag", "127.0.0.1:5000/a/b"),
        (f"127.0.0.1:5000/a@{DIGEST}", "127.0.0.1:5000/a"),
        ("127.0.0.1:5000/a", "127.0.0.1:5000/a"),
        ("base:bookworm", "base"),
    ],
)
def test_repo_of_drops_tag_and_digest(ref: str, repo: str) -> None:
    assert images.repo_of(ref) == repo


def test_split_target_defaults_the_tag_and_refuses_a_digest() -> None:
    assert sharing.split_target("wc", "127.0.0.1:5000/wc") == ("127.0.0.1:5000/wc", "latest")
    assert sharing.split_target("wc", "127.0.0.1:5000/t/wc:2") == ("127.0.0.1:5000/t/wc", "2")
    with pytest.raises(ImageError, match="not a digest"):
        sharing.split_target("wc", f"127.0.0.1:5000/wc@{DIGEST}")


def make_context(folder: Path) -> Path:
    (folder / "sub").mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM base\nCOPY . /app\n")
    (folder / "sub" / "a.py").write_text("print(1)\n")
    return folder


def test_context_hash_depends_on_content_and_settings_but_not_on_times(tmp_path: Path) -> None:
    a, b = make_context(tmp_path / "a"), make_context(tmp_path / "b")
    os.utime(b / "sub" / "a.py", (1, 1))
    base = images.context_hash(a, "Dockerfile", {"X": "1"}, None)
    assert images.context_hash(b, "Dockerfile", {"X": "1"}, None) == base
    assert images.context_hash(a, "Dockerfile", {"X": "2"}, None) != base
    assert images.context_hash(a, "Dockerfile", {"X": "1"}, "test") != base
    (b / "sub" / "a.py").chmod(0o755)
    assert images.context_hash(b, "Dockerfile", {"X": "1"}, None) != base
    (a / "sub" / "a.py").write_text("print(2)\n")
    assert images.context_hash(a, "Dockerfile", {"X": "1"}, None) != base
    assert images.build_tag("wc", base) == f"containerexec/wc:ctx-{base[:16]}"


def test_pin_prefers_the_digest_of_the_repository_asked_for() -> None:
    info = ImageInfo(
        id="sha256:" + "cd" * 32, repo_digests=[f"other/x@{DIGEST}", f"127.0.0.1:5000/wc@{DIGEST}"]
    )
    assert images.pin(info, "127.0.0.1:5000/wc:1") == (f"127.0.0.1:5000/wc@{DIGEST}",) * 2
    assert images.pin(info, f"a/b@{DIGEST}") == (f"a/b@{DIGEST}",) * 2
    built = ImageInfo(id="sha256:" + "cd" * 32)
    assert images.pin(built, "containerexec/wc:ctx-1") == (built.id, None)


def test_a_local_image_once_pushed_elsewhere_is_pinned_by_its_id_not_that_registry() -> None:
    pushed = ImageInfo(id="sha256:" + "cd" * 32, repo_digests=[f"127.0.0.1:5000/x/base@{DIGEST}"])
    assert images.pin(pushed, "containerexec/base:bookworm") == (pushed.id, None)
    assert images.pin(pushed, "sha256:" + "cd" * 32) == (pushed.id, None)
    hub = ImageInfo(id="sha256:" + "cd" * 32, repo_digests=[f"python@{DIGEST}"])
    assert images.pin(hub, "docker.io/library/python:3") == (f"python@{DIGEST}",) * 2
    assert images.pin(hub, "python:3") == (f"python@{DIGEST}",) * 2


def test_resume_sees_an_unchanged_build_folder_with_a_network_as_unchanged(
    tmp_path: Path,
) -> None:
    make_context(tmp_path / "ctx")
    text = "name: wc\nenvironment: {build: {context: ctx, network: host}}\ncommand: [sh]\n"
    spec = parse_spec(text, "wc.yaml")
    built = images.build(FakeEngine(), spec, tmp_path)  # the fake has every tag: no build
    assert images.context_changed(spec, tmp_path, built) is None
    (tmp_path / "ctx" / "sub" / "a.py").write_text("print(2)\n")
    assert images.context_changed(spec, tmp_path, built) == (tmp_path / "ctx").resolve()


def test_the_carried_spec_round_trips_with_only_the_environment_replaced() -> None:
    spec = parse_spec(SPEC, "wc.yaml")
    text = sharing.carried_spec(spec, "127.0.0.1:5000/wc:1")
    back = parse_spec(text, "label")
    assert back.environment.image == "127.0.0.1:5000/wc:1" and back.environment.build is None
    assert back.model_copy(update={"environment": spec.environment}) == spec
    assert "ctx" not in text  # the build folder does not travel with the image


def test_a_push_record_refuses_unknown_fields() -> None:
    record = sharing.PushRecord(
        module="wc",
        version="1",
        to="r/wc:1",
        pinned=f"r/wc@{DIGEST}",
        digest=DIGEST,
        image_id="sha256:1",
        environment="sha256:2",
        spec_path=None,
        pushed_at=0.0,
    )
    data = record.model_dump(mode="json")
    assert sharing.PushRecord.model_validate(data) == record
    with pytest.raises(ValueError, match="extra"):
        sharing.PushRecord.model_validate({**data, "surprise": 1})


def pull_events(layers: dict[str, int]) -> list[dict[str, object]]:
    events: list[dict[str, object]] = [{"status": "Pulling from 127.0.0.1:5000/wc", "id": "1"}]
    events += [
        {"status": "Pulling fs layer", "id": layer, "progressDetail": {}} for layer in layers
    ]
    for layer, size in layers.items():
        events += [
            {
                "status": "Downloading",
                "id": layer,
                "progressDetail": {"current": size // 2, "total": size},
            },
            {"status": "Download complete", "id": layer, "progressDetail": {}},
            {
                "status": "Extracting",
                "id": layer,
                "progressDetail": {"current": size, "total": size},
            },
            {"status": "Pull complete", "id": layer, "progressDetail": {}},
        ]
    return [
        *events,
        {"status": f"Digest: {DIGEST}"},
        {"status": "Status: Downloaded newer image for 127.0.0.1:5000/wc:1"},
    ]


def test_pull_progress_counts_layers_and_bytes() -> None:
    lines: list[str] = []
    progress = TransferProgress(lines.append)
    for event in pull_events({"a" * 12: 3_000_000, "b" * 12: 1_000}):
        progress(event)
    assert lines == [
        f"pull 127.0.0.1:5000/wc:1: 1/2 layers, 3.0 MB/3.0 MB (layer {'a' * 12} pull complete)",
        f"pull 127.0.0.1:5000/wc:1: 2/2 layers, 3.0 MB/3.0 MB (layer {'b' * 12} pull complete)",
    ]


def test_push_progress_names_the_repository_and_counts_existing_layers() -> None:
    lines: list[str] = []
    progress = TransferProgress(lines.append)
    for event in [
        {"status": "The push refers to repository [127.0.0.1:5000/wc]"},
        {"status": "Preparing", "id": "c" * 12, "progressDetail": {}},
        {"status": "Layer already exists", "id": "c" * 12, "progressDetail": {}},
        {"status": "1: digest: ... size: 528"},
        {"aux": {"Tag": "1", "Digest": DIGEST, "Size": 528}},
    ]:
        progress(event)
    assert lines == [
        f"push 127.0.0.1:5000/wc: 1/1 layers, 0 B (layer {'c' * 12} layer already exists)"
    ]


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1500, "1.5 kB"), (291_000_000, "291.0 MB"), (3e12, "3000.0 GB")],
)
def test_human_bytes(n: float, text: str) -> None:
    assert human_bytes(n) == text


def test_push_needs_a_destination_and_an_existing_spec(tmp_path: Path) -> None:
    spec = tmp_path / "wc.yaml"
    spec.write_text(SPEC)
    runner = CliRunner()
    no_to = runner.invoke(cli, ["push", str(spec)])
    assert no_to.exit_code == 2 and "--to" in no_to.stderr
    missing = runner.invoke(cli, ["push", str(tmp_path / "nope.yaml"), "--to", "r/x:1"])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
