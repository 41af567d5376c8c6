#!/usr/bin/env bash
# The browser tests (tests/browser/) open reports in headless Chromium driven by
# Playwright; no browser can be downloaded here, so install Debian's `chromium` once.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is not installed: install it ('sudo apt-get install chromium') to run the browser tests." >&2
  exit 1
fi
echo "==> installing Debian's chromium (once)" >&2
export DEBIAN_FRONTEND=noninteractive
# Other set-up steps may hold the dpkg lock: wait for it rather than fail.
apt_install() {
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 chromium fonts-dejavu-core
}
apt_install >/dev/null 2>&1 || { apt-get update -qq -o DPkg::Lock::Timeout=300 >/dev/null 2>&1; apt_install >/dev/null; }
