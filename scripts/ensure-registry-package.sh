#!/usr/bin/env bash
# Tests start their own reference registry: install Debian's docker-registry
# (only the binary is used; its service and default config stay off).
set -euo pipefail
if command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker-registry is not installed: install it ('sudo apt-get install docker-registry') to run the registry tests." >&2
  exit 1
fi
echo "==> installing Debian's docker-registry (once)" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the package from starting its own service on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq docker-registry >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq docker-registry >/dev/null; }
