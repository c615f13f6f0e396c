#!/usr/bin/env bash
# Install bubblewrap, the sandbox of the local job executor and session launcher
# (NBPLANE_SANDBOX), and check that it works here: tests/security/test_sandbox.py needs it, and
# `nbplane serve` refuses local jobs and sessions without it unless --single-tenant.
# Idempotent; needs root (as on CI), which bubblewrap needs too.
set -euo pipefail

if ! command -v bwrap >/dev/null 2>&1; then
  # apt may be busy with another install on a shared machine: wait for its lock.
  apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
  apt_get update -qq
  DEBIAN_FRONTEND=noninteractive apt_get install -y -qq bubblewrap >/dev/null
fi
# The same namespaces nbplane asks for; a container that forbids them fails here, in words.
bwrap --ro-bind / / --dev /dev --proc /proc --unshare-pid --unshare-ipc --unshare-uts \
  --new-session --cap-drop ALL -- /bin/true
echo "bubblewrap ready: $(bwrap --version)"
