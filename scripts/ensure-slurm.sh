#!/usr/bin/env bash
# The Slurm tests start their own single-node cluster (tests/slurm.py): install
# Slurm's daemons and clients once. Their own services stay off; munge is installed
# because the package wants it, but the test cluster uses auth/none.
set -euo pipefail
if command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 \
  && command -v sbatch >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "Slurm is not installed: install it ('sudo apt-get install slurm-wlm munge') to run the Slurm tests." >&2
  exit 1
fi
echo "==> installing slurm-wlm and munge (once)" >&2
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the packages from starting their own services on install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null 2>&1 \
  || { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; }
