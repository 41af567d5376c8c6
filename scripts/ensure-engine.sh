#!/usr/bin/env bash
# Make sure a Docker engine answers: install Debian's docker.io and start
# dockerd detached when needed. Idempotent and quiet when already done.
set -euo pipefail

log=${CONTAINEREXEC_DOCKERD_LOG:-/var/log/containerexec-dockerd.log}

if timeout 10 docker info >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "No Docker engine answers and this user is not root: install Docker (Debian: 'sudo apt-get install docker.io') and start it, or add this user to the 'docker' group." >&2
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> installing Debian's docker.io (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null 2>&1 || true
  apt-get install -y -qq docker.io >/dev/null
fi

if ! timeout 10 docker info >/dev/null 2>&1; then
  echo "==> starting dockerd in the background (log: $log)" >&2
  # Detached from our stdout/stderr: a daemon holding CI's output open hangs CI.
  setsid dockerd >"$log" 2>&1 </dev/null &
  # Tests may restart an engine that this script started (fault tests), never another.
  echo $! >/run/containerexec-dockerd.pid
  for _ in $(seq 1 60); do
    if timeout 5 docker info >/dev/null 2>&1; then
      exit 0
    fi
    sleep 1
  done
  echo "dockerd did not answer within 60 s; see $log" >&2
  exit 1
fi
