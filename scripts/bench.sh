#!/usr/bin/env bash
# Side-by-side benchmark of berthd against Debian's containerd 1.6 on this machine, driven by
# the same client (the real ctr), plus berth's own start-up figures.
#   npm run bench [-- --runs N] [--only SCENARIO]
# Scenarios (median seconds of N runs, the two daemons alternating): run, run8, pull, ingest,
# snap; then boot (spawn → socket), `berth version`, `berth images ls`, and daemon RSS.
# Everything runs on loopback in a private directory and is torn down at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=5; ONLY=""
while (($#)); do case "$1" in --runs) RUNS=$2; shift 2;; --only) ONLY=$2; shift 2;; *) echo "unknown argument $1" >&2; exit 2;; esac; done
bash scripts/setup.sh
W=$(mktemp -d /tmp/berth-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
wait_sock() { for _ in $(seq 400); do [ -S "$1" ] && ctr -a "$1" version >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "bench: $1 did not come up" >&2; return 1; }

# --- the two daemons -------------------------------------------------------------------
cat > "$W/berth.toml" <<TOML
version = 2
root = "$W/berth/root"
state = "$W/berth/state"
[grpc]
  address = "$W/berth.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/berth/opt"
TOML
cat > "$W/containerd.toml" <<TOML
version = 2
root = "$W/ctd/root"
state = "$W/ctd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$W/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$W/ctd/opt"
TOML
bin/berthd.js --config "$W/berth.toml" > "$W/berthd.log" 2>&1 & PIDS+=($!); BERTHD_PID=$!
containerd --config "$W/containerd.toml" > "$W/containerd.log" 2>&1 & PIDS+=($!); CTD_PID=$!
A=$W/berth.sock; B=$W/containerd.sock
wait_sock "$A" && wait_sock "$B" || exit 1

# --- fixtures: images in a local registry ------------------------------------------------
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$PORT
mkdir -p "$W/registry"
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}, delete: {enabled: true}}\nhttp: {addr: %s}\n' "$W/registry" "$REG" > "$W/registry.yml"
docker-registry serve "$W/registry.yml" > "$W/registry.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.05; done
node scripts/make-image.mjs --out "$W/busybox.tar" --name "$REG/library/busybox:latest" >/dev/null
node scripts/make-image.mjs --out "$W/big.tar" --name "$REG/library/big:latest" --extra-mb 240 --extra-files 9000 >/dev/null
for img in busybox big; do
  ctr -a "$B" -n fixtures images import "$W/$img.tar" >/dev/null
  ctr -a "$B" -n fixtures images push --plain-http "$REG/library/$img:latest" >/dev/null
done
ctr -a "$B" -n fixtures images rm "$REG/library/busybox:latest" "$REG/library/big:latest" >/dev/null
head -c 256M /dev/urandom > "$W/blob"
for s in "$A" "$B"; do ctr -a "$s" -n bench images pull --plain-http "$REG/library/busybox:latest" >/dev/null 2>&1; done

one() { # scenario socket iteration -> seconds
  local s=$1 a=$2 i=$3 t0 t1 ns=bench
  case $s in
    run) t0=$(now); ctr -a "$a" -n $ns run --rm "$REG/library/busybox:latest" "b$i-$$" true >/dev/null 2>&1; t1=$(now);;
    run8) t0=$(now); local runs=()
          for j in 1 2 3 4 5 6 7 8; do ctr -a "$a" -n $ns run --rm "$REG/library/busybox:latest" "b$i-$j-$$" true >/dev/null 2>&1 & runs+=($!); done
          wait "${runs[@]}"; t1=$(now);;  # only these: the daemons are children of this script too
    pull) ns=pull$i-$$
          t0=$(now); ctr -a "$a" -n $ns images pull --plain-http "$REG/library/big:latest" >/dev/null 2>&1; t1=$(now)
          ctr -a "$a" -n $ns images rm "$REG/library/big:latest" >/dev/null 2>&1
          for k in $(ctr -a "$a" -n $ns snapshots ls 2>/dev/null | awk 'NR>1{print $1}' | tac); do ctr -a "$a" -n $ns snapshots rm "$k" >/dev/null 2>&1; done
          for d in $(ctr -a "$a" -n $ns content ls -q 2>/dev/null); do ctr -a "$a" -n $ns content rm "$d" >/dev/null 2>&1; done;;
    ingest) t0=$(now); ctr -a "$a" -n $ns content ingest "ing$i-$$" < "$W/blob" >/dev/null 2>&1; t1=$(now)
          ctr -a "$a" -n $ns content rm "sha256:$(sha256sum "$W/blob" | cut -d' ' -f1)" >/dev/null 2>&1;;
    snap) t0=$(now); local p=""
          for j in $(seq 20); do ctr -a "$a" -n $ns snapshots prepare "a$i-$j-$$" $p >/dev/null 2>&1; ctr -a "$a" -n $ns snapshots commit "c$i-$j-$$" "a$i-$j-$$" >/dev/null 2>&1; p="c$i-$j-$$"; done
          t1=$(now)
          for j in $(seq 20 -1 1); do ctr -a "$a" -n $ns snapshots rm "c$i-$j-$$" >/dev/null 2>&1; done;;
  esac
  echo "$t1 - $t0" | bc -l
}
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }

printf '%-14s %10s %10s %7s %8s\n' scenario berthd containerd ratio target
row() { printf '%-14s %10.3f %10.3f %7s %8s\n' "$1" "$2" "$3" "$(ratio "$2" "$3")" "$4"; }
declare -A TARGET=([run]=0.9 [run8]=0.9 [pull]=0.7 [ingest]=0.4 [snap]=0.8)
for s in run run8 pull ingest snap; do
  [ -n "$ONLY" ] && [ "$ONLY" != "$s" ] && continue
  : > "$W/a"; : > "$W/b"
  for i in $(seq "$RUNS"); do one $s "$A" "$i" >> "$W/a"; one $s "$B" "$i" >> "$W/b"; done
  row "$s" "$(median < "$W/a")" "$(median < "$W/b")" "${TARGET[$s]}"
done

rss() { awk '/VmRSS/ {printf "%.1f\n", $2/1024}' "/proc/$1/status"; }
row rss-MiB "$(rss $BERTHD_PID)" "$(rss $CTD_PID)" 1.5

boot() { # command... -> ms from spawn to a listening socket
  local d; d=$(mktemp -d "$W/boot.XXXX"); local t0 t1 p
  t0=$(date +%s%N); "$@" --root "$d/r" --state "$d/s" --address "$d/s.sock" >/dev/null 2>&1 & p=$!
  while ! [ -S "$d/s.sock" ]; do sleep 0.001; done; t1=$(date +%s%N)
  kill $p; wait $p 2>/dev/null; echo $(( (t1 - t0) / 1000000 ))
}
: > "$W/ba"; : > "$W/bb"
# The programs run as `npx berthd` / `npx berth` run them: through their shebang (which, among
# other things, keeps Node from parsing NODE_EXTRA_CA_CERTS at start-up, core/sys/extra-ca.ts).
for i in $(seq "$RUNS"); do boot bin/berthd.js >> "$W/ba"; boot containerd >> "$W/bb"; done
row boot-ms "$(median < "$W/ba")" "$(median < "$W/bb")" 1.5
# What boot cannot go below on this machine: Node itself starting and listening on a unix
# socket, with no program around it. Printed for scale next to the two daemons.
node_listener() { NODE_EXTRA_CA_CERTS= exec node -e 'const a = process.argv; require("node:net").createServer().listen(a[a.indexOf("--address") + 1])' -- "$@"; }
: > "$W/bn"
for i in $(seq "$RUNS"); do boot node_listener >> "$W/bn"; done
printf '%-14s %10s ms (bare node listening on a unix socket, for scale)\n' "boot floor" "$(median < "$W/bn")"
cli() { local t0 t1; t0=$(date +%s%N); bin/berth.js -a "$A" -n bench "$@" >/dev/null 2>&1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
: > "$W/v"; : > "$W/l"
for i in $(seq "$RUNS"); do cli version >> "$W/v"; cli images ls >> "$W/l"; done
printf '%-14s %10s ms (target <= 120 ms)\n' "berth version" "$(median < "$W/v")"
printf '%-14s %10s ms\n' "berth images" "$(median < "$W/l")"
