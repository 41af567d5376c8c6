"""What an image reference names, in the engine's own terms (pure, no engine SDK)."""

from __future__ import annotations

# Docker's default registry: a reference with no host in it names Docker Hub.
DEFAULT_REGISTRY = "docker.io"


def registry_of(ref: str) -> str:
    """The registry host a reference names; docker.io when it names none."""
    first = ref.split("/", 1)[0]
    return (
        first
        if "/" in ref and ("." in first or ":" in first or first == "localhost")
        else DEFAULT_REGISTRY
    )


__all__ = ["DEFAULT_REGISTRY", "registry_of"]
