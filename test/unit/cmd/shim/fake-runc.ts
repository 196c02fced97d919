/**
 * A stand-in for runc in unit tests: a shell script that keeps per-container state in a
 * directory, logs every invocation (one line per call, arguments tab-separated), and imitates
 * what the shim relies on. `create` starts the "container" as a background process that waits
 * for `start` and then runs the command in <dir>/cmd-<id> with the stdio runc was given, and
 * writes its pid to --pid-file; the process outlives runc like a real container init, so a
 * subreaper adopts it. Knobs: <dir>/start-delay-<id> (seconds `start` lingers after releasing
 * the process), id "fail" makes create log an error to log.json and exit 1.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../../helpers/tmp.js';

const SCRIPT = String.raw`#!/bin/sh
D="$FAKE_RUNC_DIR"
log=""
args=""
for a in "$@"; do args="$args$(printf '%s\t' "$a")"; done
echo "$args" >> "$D/calls"
while [ $# -gt 0 ]; do
  case "$1" in
    --root|--criu) shift 2 ;;
    --log) log="$2"; shift 2 ;;
    --log-format) shift 2 ;;
    --systemd-cgroup) shift ;;
    *) break ;;
  esac
done
cmd="$1"; shift
pidfile=""; all=""; force=""; process=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pid-file) pidfile="$2"; shift 2 ;;
    --bundle|--console-socket|--format) shift 2 ;;
    --process) process="$2"; shift 2 ;;
    --resources) shift 2 ;;
    --all) all=1; shift ;;
    --force) force=1; shift ;;
    --detach|--no-pivot|--no-new-keyring) shift ;;
    *) break ;;
  esac
done
id="$1"
case "$cmd" in
  create)
    if [ "$id" = fail ]; then
      echo '{"level":"error","msg":"fake runc: cannot create container","time":"2024-01-01T00:00:00Z"}' >> "$log"
      exit 1
    fi
    sh -c 'while [ ! -e "$1" ]; do sleep 0.02; done; exec sh -c "$(cat "$2")"' fake-init "$D/started-$id" "$D/cmd-$id" &
    echo $! > "$pidfile"
    echo $! > "$D/pid-$id"
    ;;
  start)
    [ -e "$D/pid-$id" ] || { echo "container $id does not exist" >&2; exit 1; }
    touch "$D/started-$id"
    if [ -e "$D/start-delay-$id" ]; then sleep "$(cat "$D/start-delay-$id")"; fi
    ;;
  exec)
    cp "$process" "$D/process-$id"
    # Forked from a subshell that exits at once, so the process goes straight to the subreaper
    # (as runc's does) and never stays a child this script could collect.
    ( sh -c "$(cat "$D/exec-cmd-$id")" & echo $! > "$pidfile" )
    ;;
  kill)
    sig="$2"
    pid=$(cat "$D/pid-$id" 2>/dev/null) || { echo "container does not exist" >&2; exit 1; }
    kill -"$sig" "$pid" 2>/dev/null || { echo "container not running" >&2; exit 1; }
    ;;
  delete)
    [ -e "$D/pid-$id" ] || { echo "container $id does not exist" >&2; exit 1; }
    if [ -n "$force" ]; then kill -9 "$(cat "$D/pid-$id")" 2>/dev/null; fi
    rm -f "$D/pid-$id" "$D/started-$id"
    ;;
  ps) echo "[$(cat "$D/pid-$id")]" ;;
  pause|resume) ;;
  update) cat > "$D/update-$id" ;;
  state) echo "{\"id\":\"$id\",\"pid\":$(cat "$D/pid-$id"),\"status\":\"running\"}" ;;
  *) echo "fake runc: unknown command $cmd" >&2; exit 2 ;;
esac
`;

export interface FakeRunc {
  dir: string;
  path: string;
  /** Every invocation's argv, in order. */
  calls(): string[][];
  /** The shell command the container `id` runs once started. */
  setCommand(id: string, command: string): void;
  setExecCommand(id: string, command: string): void;
  setStartDelay(id: string, seconds: number): void;
}

export function fakeRunc(): FakeRunc {
  const dir = tempDir('fake-runc-');
  const path = join(dir, 'runc');
  writeFileSync(path, SCRIPT);
  chmodSync(path, 0o755);
  writeFileSync(join(dir, 'calls'), '');
  process.env.FAKE_RUNC_DIR = dir;
  return {
    dir,
    path,
    calls: () => readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter(Boolean).map((l) => l.split('\t').filter((a, i, all) => i < all.length - 1 || a !== '')),
    setCommand: (id, command) => writeFileSync(join(dir, `cmd-${id}`), command),
    setExecCommand: (id, command) => writeFileSync(join(dir, `exec-cmd-${id}`), command),
    setStartDelay: (id, seconds) => writeFileSync(join(dir, `start-delay-${id}`), String(seconds)),
  };
}
