#!/usr/bin/env bash
# Install the Chromium the browser tests drive (Playwright cannot download its own browsers
# here, so the tests launch /usr/bin/chromium). Idempotent; needs root (as on CI).
set -euo pipefail

if [ ! -x /usr/bin/chromium ]; then
  # apt may be busy with another install on a shared machine: wait for its lock.
  apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
  apt_get update -qq
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq chromium >/dev/null
fi
echo "Chromium ready: $(/usr/bin/chromium --version 2>/dev/null)"
