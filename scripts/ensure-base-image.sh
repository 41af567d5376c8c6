#!/usr/bin/env bash
# Build the base image containerexec/base:bookworm from Debian packages when it
# is missing or was built from another recipe: no image can be pulled here (no
# Docker Hub). Idempotent: one `docker image inspect` when it is up to date.
# ENGINE=podman builds it for Podman: a copy of Docker's image when Docker has it up
# to date (the same image ID), else the same mmdebstrap recipe imported by podman.
set -euo pipefail

image=${CONTAINEREXEC_BASE_IMAGE:-containerexec/base:bookworm}
engine=${ENGINE:-docker}
case "$engine" in
  docker | podman) ;;
  *) echo "ENGINE must be docker or podman, got '$engine'" >&2; exit 2 ;;
esac

# python3-debugpy lets 'containerexec repro --debug' attach an editor to any module;
# python3-pip and python3-venv make the ordinary 'RUN pip install' of a Dockerfile
# work where the build has a network (environment.build.network: host).
packages=python3,python3-debugpy,python3-pip,python3-venv
# Debian marks its Python "externally managed" (PEP 668), so a plain 'pip install'
# refuses to run: in an image that only one program uses, that guard only gets in the way.
hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED'
# The label says which recipe built the image, so a machine with an image of an older
# recipe (no pip) rebuilds it once instead of keeping it forever.
recipe=$(printf '%s\n%s\n' "$packages" "$hook" | sha256sum | cut -c1-16)
label=containerexec.base-recipe

recipe_of() {
  "$1" image inspect --format "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null || true
}
have=$(recipe_of "$engine")
if [ "$have" = "$recipe" ]; then
  exit 0
fi
if [ "$engine" = podman ] && command -v docker >/dev/null 2>&1 \
  && [ "$(recipe_of docker)" = "$recipe" ]; then
  echo "==> copying $image from Docker to Podman (once, about 30 s)" >&2
  docker save "$image" | podman load -q >/dev/null
  exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "The base image $image is missing or out of date and mmdebstrap is not installed: install it ('sudo apt-get install mmdebstrap') and run this again." >&2
    exit 1
  fi
  echo "==> installing mmdebstrap (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq mmdebstrap >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq mmdebstrap >/dev/null; }
fi

if [ -n "$have" ] || "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "==> rebuilding $image: its recipe changed (now with pip and venv; once, a few minutes)" >&2
else
  echo "==> building $image with mmdebstrap (once, a few minutes)" >&2
fi
# The tag moves to the new image at the end of the import; images built FROM the old
# one keep its layers and go on working.
mmdebstrap --quiet --variant=minbase --include="$packages" --customize-hook="$hook" bookworm - \
  | "$engine" import --change 'CMD ["/bin/bash"]' --change "LABEL $label=$recipe" - "$image" >/dev/null
