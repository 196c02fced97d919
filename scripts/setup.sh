#!/usr/bin/env bash
# Prepares a fresh Debian machine for berth: the host tools berth drives (runc, the Debian
# containerd package for its ctr client and runc shim, btrfs-progs, busybox-static for test
# images, docker-registry for a local registry, zstd, openssl for the TLS tests' certificates),
# then npm dependencies and the build.
# Idempotent: skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in runc:runc ctr:containerd containerd-shim-runc-v2:containerd containerd-shim:containerd \
            mkfs.btrfs:btrfs-progs busybox:busybox-static docker-registry:docker-registry zstd:zstd \
            mkfs.ext4:e2fsprogs losetup:mount openssl:openssl; do
  bin=${pair%%:*}; pkg=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || [ -x "/sbin/$bin" ] || need+=("$pkg")
done
if ((${#need[@]})); then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's containerd package may have started a system daemon; berth never needs it.

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  # npm 11 can write a lock file that its own `npm ci` then rejects (platform-specific optional
  # packages of @bufbuild/buf left out); `npm install` honours the same lock in that case.
  npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1 ||
    npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
npm run --silent build >/dev/null
echo "setup: ok" >&2
