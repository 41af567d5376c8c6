"""The registry fixture round-trips an image: push, drop the local copy, pull by digest."""

from __future__ import annotations

import io
import tarfile
import uuid

import docker
import pytest
from docker.errors import NotFound
from helpers import TEST_ENGINE
from registry import Registry


def tiny_context(content: str) -> io.BytesIO:
    """A build context of a FROM-scratch image holding one small, unique file."""
    files = {
        "Dockerfile": "FROM scratch\nCOPY hello.txt /hello.txt\n",
        "hello.txt": content,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def push(client: docker.DockerClient, repository: str, tag: str) -> str:
    """Push repository:tag and return the manifest digest the registry reports."""
    digest = ""
    for event in client.images.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in event, f"push of {repository}:{tag} failed: {event['error']}"
        digest = event.get("aux", {}).get("Digest", digest)
    assert digest.startswith("sha256:"), f"push of {repository}:{tag} reported no digest"
    return digest


def test_push_then_pull_by_digest_gives_the_same_image(
    docker_client: docker.DockerClient,
    registry: Registry,
    test_session_label: dict[str, str],
) -> None:
    if TEST_ENGINE == "podman":  # PodmanEngine's own push and pull: tests/engine/test_images.py
        pytest.skip("checks the fixture with docker-py's push, whose digest Podman's lacks")
    repository = f"{registry.address}/cx-tiny"
    tag = uuid.uuid4().hex[:12]
    image, _ = docker_client.images.build(
        fileobj=tiny_context(f"hello from {tag}\n"),
        custom_context=True,
        tag=f"{repository}:{tag}",
        labels=test_session_label,
        rm=True,
        forcerm=True,
    )
    assert image.id is not None
    pinned = ""
    try:
        digest = push(docker_client, repository, tag)
        docker_client.images.remove(f"{repository}:{tag}")
        try:
            docker_client.images.get(image.id)
        except NotFound:
            pass
        else:
            raise AssertionError(f"{image.id} is still present after removing its only tag")

        pinned = f"{repository}@{digest}"
        pulled = docker_client.images.pull(pinned)

        assert pulled.id == image.id
        assert pinned in pulled.attrs["RepoDigests"]
    finally:
        for ref in (f"{repository}:{tag}", pinned):
            if ref:
                try:
                    docker_client.images.remove(ref, force=True)
                except NotFound:
                    pass
