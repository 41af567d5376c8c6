#!/usr/bin/env bash
# Make sure Podman's Docker-compatible API answers at /run/podman/podman.sock: install
# Debian's podman (with catatonit, its init, and what rootless use needs: uidmap,
# slirp4netns, fuse-overlayfs) and start `podman system service` detached when needed.
# The service started here is the documented long-lived one, as dockerd is for Docker.
# Idempotent and quiet when already done.
set -euo pipefail

sock=${CONTAINEREXEC_PODMAN_SOCKET:-/run/podman/podman.sock}
log=${CONTAINEREXEC_PODMAN_LOG:-/var/log/containerexec-podman.log}

answers() {
  curl -fsS --max-time 5 --unix-socket "$sock" http://podman/_ping >/dev/null 2>&1
}

if command -v podman >/dev/null 2>&1 && answers; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "No Podman service answers at $sock and this user is not root: install Podman (Debian: 'sudo apt-get install podman catatonit uidmap slirp4netns fuse-overlayfs'); containerexec starts a rootless service itself." >&2
  exit 1
fi

need=()
for pkg in podman catatonit uidmap slirp4netns fuse-overlayfs curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing ${need[*]} (once)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

if ! answers; then
  echo "==> starting 'podman system service' in the background (log: $log)" >&2
  mkdir -p "$(dirname "$sock")"
  # Detached from our stdout/stderr: a service holding CI's output open hangs CI. From /:
  # its conmons inherit its folder and fail every start ("Failed to get working
  # directory") once that folder is deleted, e.g. a checkout removed after set-up.
  (cd / && exec setsid podman system service --time=0 "unix://$sock" >"$log" 2>&1 </dev/null) &
  echo $! >/run/containerexec-podman.pid
  for _ in $(seq 1 60); do
    if answers; then
      exit 0
    fi
    sleep 0.5
  done
  echo "the Podman service did not answer within 30 s; see $log" >&2
  exit 1
fi
