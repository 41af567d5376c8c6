"""Resolving an Invocation (pure) and rendering its create payload, checked against golden files.

Regenerate the golden files with `UPDATE_GOLDEN=1 pytest tests/unit/test_invocation.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from containerexec.engine.payload import create_kwargs
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import ModuleSpec, parse_spec

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
IMAGE = "sha256:" + "ab" * 32

ARRAY_SPEC = """\
name: wordcount
version: 1.2.3
environment: {image: containerexec/base:bookworm}
inputs:
  corpus: {type: directory}
  stopwords: {type: file}
  min_count: {type: integer, default: 1}
  lower: {type: boolean, default: true}
  label: {type: string, optional: true}
outputs:
  counts: {type: directory}
  summary: {type: file, path: summary.json}
command:
  - python3
  - /app/wc.py
  - "${{inputs.corpus}}/${{shard.value}}"
  - "${{outputs.counts}}/${{shard.index}}.tsv"
  - --stop=${{inputs.stopwords}}
  - --min
  - "${{inputs.min_count}}"
  - "${{inputs.lower}}"
  - [--label, "${{inputs.label}}"]
  - "${{outputs.summary}}"
env: {MODE: "count-${{inputs.min_count}}", PYTHONUNBUFFERED: "1"}
secrets: [API_TOKEN]
workdir: /app
resources: {cpus: 1.5, memory: 256m, shm_size: 64m, timeout: 10m}
array:
  glob: {input: corpus, pattern: "*.txt"}
"""

SINGLE_SPEC = """\
name: hello
environment: {image: containerexec/base:bookworm}
inputs:
  who: {type: string}
command: [echo, "hello ${{inputs.who}}"]
network: true
"""


def golden(name: str, data: Any) -> None:
    """Compare `data` with tests/golden/NAME.json, or rewrite it under UPDATE_GOLDEN=1."""
    path = GOLDEN / f"{name}.json"
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"{path} is missing; run with UPDATE_GOLDEN=1 to write it"
    assert json.loads(path.read_text()) == json.loads(text), (
        f"{path} differs; if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff"
    )


def array_invocation(**bound: Any) -> tuple[ModuleSpec, Invocation]:
    spec = parse_spec(ARRAY_SPEC, "wc.yaml")
    inputs = {
        "corpus": "/data/corpus",
        "stopwords": "/data/stop words.txt",
        "min_count": 2,
        "lower": True,
        **bound,
    }
    bindings = Bindings(inputs, {"counts": "/results/counts", "summary": "/results/s.json"})
    inv = resolve(
        spec,
        bindings,
        Shard(3, "a b.txt", 8),
        run_id="wordcount-20260101-000000-abc",
        image=IMAGE,
        staging=Path("/runs/r/staging/000003"),
        user="1000:1000",
        labels={"team": "nlp"},
    )
    return spec, inv


def single_invocation(who: str, **kw: Any) -> Invocation:
    """The Invocation of the one-shard `hello` module for input `who`."""
    args: dict[str, Any] = {
        "run_id": "hello-1",
        "image": IMAGE,
        "staging": Path("/s"),
        "user": "1:1",
        **kw,
    }
    spec = parse_spec(SINGLE_SPEC, "hello.yaml")
    return resolve(spec, Bindings({"who": who}, {}), Shard(0, "", 1), **args)


def test_array_shard_create_kwargs_match_golden_file() -> None:
    _, inv = array_invocation()
    golden("create_kwargs_array_shard", create_kwargs(inv, secrets={}))


def test_single_run_with_network_create_kwargs_match_golden_file() -> None:
    inv = single_invocation("a; b", staging=Path("/runs/hello-1/staging/000000"), user="0:0")
    golden("create_kwargs_single_network", create_kwargs(inv, secrets={}))


def test_invocation_json_matches_golden_file() -> None:
    _, inv = array_invocation()
    golden("invocation_array_shard", inv.model_dump(mode="json"))


def test_safe_defaults_are_always_on() -> None:
    _, inv = array_invocation()
    kw = create_kwargs(inv, secrets={})
    hc = kw["host_config"]
    assert hc["network_mode"] == "none" and kw["network_disabled"] is True
    assert hc["cap_drop"] == ["ALL"]
    assert "no-new-privileges" in hc["security_opt"]
    assert hc["privileged"] is False
    assert hc["read_only"] is True
    assert "/tmp" in hc["tmpfs"]
    assert "auto_remove" not in hc
    assert kw["user"] == "1000:1000"
    sources = [m["source"] for m in hc["mounts"]]
    assert not any(s in ("/", "/var/run/docker.sock") for s in sources)


def test_inputs_mount_read_only_and_outputs_mount_their_staging_folder() -> None:
    _, inv = array_invocation()
    by_name = {m.name: m for m in inv.mounts}
    assert by_name["corpus"].read_only and by_name["stopwords"].read_only
    assert by_name["stopwords"].source == "/data/stop words.txt"
    assert by_name["stopwords"].target == "/inputs/stopwords/stop words.txt"
    assert not by_name["counts"].read_only
    assert by_name["counts"].source == "/runs/r/staging/000003/counts"
    assert by_name["summary"].source == "/runs/r/staging/000003/summary"


def test_argv_renders_container_paths_and_drops_unset_optional_groups() -> None:
    _, inv = array_invocation()
    assert inv.argv == [
        "python3",
        "/app/wc.py",
        "/inputs/corpus/a b.txt",
        "/outputs/counts/3.tsv",
        "--stop=/inputs/stopwords/stop words.txt",
        "--min",
        "2",
        "true",
        "/outputs/summary/summary.json",
    ]
    _, labelled = array_invocation(label="x ; y")
    assert labelled.argv[-3:] == ["--label", "x ; y", "/outputs/summary/summary.json"]


def test_shard_environment_variables_are_set() -> None:
    _, inv = array_invocation()
    assert inv.env["CONTAINEREXEC_SHARD_INDEX"] == "3"
    assert inv.env["CONTAINEREXEC_SHARD_VALUE"] == "a b.txt"
    assert inv.env["CONTAINEREXEC_SHARD_COUNT"] == "8"
    assert inv.env["MODE"] == "count-2"


def test_run_labels_are_set_and_cannot_be_overridden_by_caller_labels() -> None:
    inv = single_invocation("x", labels={"containerexec.run": "forged", "mine": "1"})
    assert inv.labels["containerexec.run"] == "hello-1"
    assert inv.labels["containerexec.module"] == "hello"
    assert inv.labels["containerexec.shard"] == "0"
    assert inv.labels["mine"] == "1"


def test_secret_values_reach_the_payload_but_never_the_invocation() -> None:
    _, inv = array_invocation()
    token = "s3cr3t-value"
    assert inv.secret_names == ["API_TOKEN"]
    assert token not in inv.model_dump_json()
    kw = create_kwargs(inv, secrets={"API_TOKEN": token, "OTHER": "not declared"})
    assert kw["environment"]["API_TOKEN"] == token
    assert "OTHER" not in kw["environment"]


def test_limits_become_engine_units() -> None:
    _, inv = array_invocation()
    hc = create_kwargs(inv, secrets={})["host_config"]
    assert hc["mem_limit"] == hc["memswap_limit"] == 256 * 1024**2
    assert hc["nano_cpus"] == 1_500_000_000
    assert hc["shm_size"] == 64 * 1024**2
    assert inv.limits.timeout_s == 600.0


def test_resolve_is_deterministic_and_round_trips_through_json() -> None:
    _, a = array_invocation()
    _, b = array_invocation()
    assert a == b
    assert Invocation.model_validate_json(a.model_dump_json()) == a


def test_short_names_module_shard_and_argv() -> None:
    _, inv = array_invocation()
    assert inv.short().startswith("wordcount shard 3/8 [sha256:abab")
    assert "'/inputs/corpus/a b.txt'" in inv.short()


@pytest.mark.parametrize("value", ["a b", "it's", 'say "hi"', "x;y", "l1\nl2"])
def test_string_inputs_with_shell_characters_stay_one_argument(value: str) -> None:
    inv = single_invocation(value)
    assert inv.argv == ["echo", f"hello {value}"]
