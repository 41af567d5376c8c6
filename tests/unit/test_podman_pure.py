"""What PodmanEngine puts right without asking Podman (issue 23.2-3): where its socket is,
which repo digests no registry holds, label values its builder would choke on, loopback
registries, and sane ulimits."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import docker
import pytest

from containerexec.engine.payload import decode_label, encode_label
from containerexec.engine.podman import PodmanEngine, _loopback
from containerexec.engine.podmanservice import ROOTFUL_SOCKET, service_socket
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import resolve
from containerexec.model.spec import parse_spec


def offline(host: dict[str, Any]) -> PodmanEngine:
    """A PodmanEngine whose `info` is `host`; its client never connects."""
    client = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    engine = PodmanEngine(client, Path("/nonexistent.sock"))
    engine._host = host
    return engine


ROOTLESS_V1 = {"host": {"security": {"rootless": True}, "cgroupVersion": "v1"}}
ROOTLESS_V2_MEMORY = {
    "host": {"security": {"rootless": True}, "cgroupVersion": "v2", "cgroupControllers": ["memory"]}
}


def test_the_socket_is_the_named_one_else_roots_else_the_users_runtime_folder() -> None:
    assert service_socket({"CONTAINEREXEC_PODMAN_HOST": "unix:///x/p.sock"}, uid=0) == Path(
        "/x/p.sock"
    )
    assert service_socket({}, uid=0) == ROOTFUL_SOCKET
    assert service_socket({"XDG_RUNTIME_DIR": "/run/user/1234"}, uid=1234) == Path(
        "/run/user/1234/podman/podman.sock"
    )


def test_a_digest_podman_made_here_is_never_reported_for_any_name() -> None:
    made, pushed = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    info = offline({})._image_info(
        {
            "Id": "c" * 64,
            "Digest": made,  # what Podman made the image with: here, not in any registry
            "RepoTags": ["localhost/containerexec/base:bookworm", "127.0.0.1:5000/cx/m:t"],
            "RepoDigests": [
                f"localhost/containerexec/base@{made}",
                f"localhost/containerexec/base@{pushed}",
                f"127.0.0.1:5000/cx/m@{made}",
                f"127.0.0.1:5000/cx/m@{pushed}",
            ],
        }
    )
    assert info.id == "sha256:" + "c" * 64
    assert info.repo_digests == [f"127.0.0.1:5000/cx/m@{pushed}"]
    assert info.tags == ["containerexec/base:bookworm", "127.0.0.1:5000/cx/m:t"]
    pulled = offline({})._image_info(
        {"Id": "d" * 64, "Digest": pushed, "RepoTags": ["docker.io/library/python:3"],
         "RepoDigests": [f"docker.io/library/python@{pushed}"]}
    )  # fmt: skip
    assert (pulled.repo_digests, pulled.tags) == ([f"python@{pushed}"], ["python:3"])


@pytest.mark.parametrize(
    "value", ["command: [echo, '${{inputs.x}}']\n", "${HOME}", "plain", "", "a\nb ${"]
)
def test_a_label_value_survives_the_encoding_and_only_placeholders_are_encoded(value: str) -> None:
    sent = encode_label(value)
    assert decode_label(sent) == value
    assert ("${" in sent) is False
    assert (sent == value) is ("${" not in value)


@pytest.mark.parametrize(
    ("ref", "loopback"),
    [
        ("127.0.0.1:5000/a/b:t", True),
        ("127.3.4.5:80/a@sha256:" + "0" * 64, True),
        ("localhost:5000/a:t", True),
        ("registry.example.com/a:t", False),
        ("ubuntu:22.04", False),
    ],
)
def test_only_loopback_registries_are_spoken_to_without_tls(ref: str, loopback: bool) -> None:
    assert _loopback(ref) is loopback


def test_ulimits_never_exceed_this_processs_and_rootless_v1_stands_nproc_for_pids() -> None:
    spec = parse_spec("name: m\nenvironment: {image: i}\ncommand: [sh]\n", "m.yaml")
    inv = resolve(
        spec,
        Bindings({}, {}),
        Shard(0, "", 1),
        run_id="r",
        image="i",
        staging=Path("/s"),
        user="1:1",
    )
    _, files = resource.getrlimit(resource.RLIMIT_NOFILE)
    rootful = offline({"host": {"security": {"rootless": False}}})
    limits = rootful.ulimits(inv)
    assert limits["nofile"][1] <= files or files == resource.RLIM_INFINITY
    assert rootful.cannot_limit() == ()

    rootless = offline(ROOTLESS_V1)
    assert rootless.cannot_limit() == ("memory", "cpus", "pids")
    assert rootless.ulimits(inv)["nproc"] == (inv.limits.pids, inv.limits.pids)
    assert offline(ROOTLESS_V2_MEMORY).cannot_limit() == ("cpus", "pids")
