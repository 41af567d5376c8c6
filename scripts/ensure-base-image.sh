#!/usr/bin/env bash
# Build the base image containerexec/base:bookworm from Debian packages when it
# is missing: no image can be pulled here (no Docker Hub). Idempotent.
set -euo pipefail

image=${CONTAINEREXEC_BASE_IMAGE:-containerexec/base:bookworm}

if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi

if ! command -v mmdebstrap >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "The base image $image is missing and mmdebstrap is not installed: install it ('sudo apt-get install mmdebstrap') and run this again." >&2
    exit 1
  fi
  echo "==> installing mmdebstrap (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq mmdebstrap >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq mmdebstrap >/dev/null; }
fi

echo "==> building $image with mmdebstrap (once, about 30 s)" >&2
# python3-debugpy lets 'containerexec repro --debug' attach an editor to any module.
mmdebstrap --quiet --variant=minbase --include=python3,python3-debugpy bookworm - \
  | docker import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
