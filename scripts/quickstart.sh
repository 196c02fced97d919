#!/usr/bin/env bash
# berth end to end on this machine: set-up, berthd up on a private root, a busybox image
# built locally into an OCI archive, imported, and a container run that prints a greeting.
# Leaves nothing running. Needs root (mounts, runc).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

DIR=${BERTH_QUICKSTART_DIR:-/tmp/berth-quickstart}
SOCK=$DIR/berth.sock
mkdir -p "$DIR"
cat > "$DIR/config.toml" <<TOML
version = 2
root = "$DIR/root"
state = "$DIR/state"
[grpc]
  address = "$SOCK"
TOML

node bin/berthd.js --config "$DIR/config.toml" > "$DIR/berthd.log" 2>&1 &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null; wait $DAEMON 2>/dev/null || true' EXIT
for _ in $(seq 200); do [ -S "$SOCK" ] && grep -q 'successfully booted' "$DIR/berthd.log" && break; sleep 0.05; done
grep -q 'successfully booted' "$DIR/berthd.log" || { cat "$DIR/berthd.log" >&2; echo "quickstart: berthd did not start" >&2; exit 1; }
echo "quickstart: berthd is up on $SOCK"

berth() { node bin/berth.js -a "$SOCK" -n quickstart "$@"; }
node scripts/make-image.mjs --out "$DIR/busybox.oci.tar" >/dev/null
berth images import "$DIR/busybox.oci.tar"
berth run --rm docker.io/library/busybox:latest hello-$$ echo "Hello from a berth container"
echo "quickstart: done (daemon log: $DIR/berthd.log)"
