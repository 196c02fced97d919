/**
 * Shared instruments of the reliability tests (test/reliability, test/integration/reliability):
 * a seeded PRNG so random kill points reproduce, an on-disk consistency checker that compares
 * berthd's metadata with its content store and snapshotter directories, mount-table, process
 * and socket inspection through /proc, and the SIGUSR2 resource dump of a running berthd.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, join } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { collectGarbage, type TestDaemon } from './daemon.js';

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------- randomness

/** mulberry32: a tiny deterministic PRNG; `next()` is uniform in [0, 1). */
export function prng(seed: number): { seed: number; next(): number; int(lo: number, hi: number): number; pick<T>(xs: readonly T[]): T } {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    seed,
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
  };
}

/** A seed from the environment (BERTH_SEED, decimal) or the given default; tests print it. */
export function seedFromEnv(fallback: number): number {
  const v = process.env.BERTH_SEED;
  if (v && /^\d+$/.test(v)) return Number(v) >>> 0;
  return fallback >>> 0;
}

/** A positive integer from the environment, or the default. */
export function envInt(name: string, fallback: number): number {
  const v = process.env[name];
  return v && /^\d+$/.test(v) ? Number(v) : fallback;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 10_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

// ---------------------------------------------------------------- /proc

/** Mount points at or below `dir` in this process's mount table (mount namespace of the tests and berthd). */
export function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (!mp) continue;
    const path = mp.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (path === dir || path.startsWith(`${dir}/`)) out.push(path);
  }
  return out;
}

/** Open descriptors, resident memory (bytes) and threads of a process. */
export function procStats(pid: number): { fds: number; rss: number; threads: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { fds: readdirSync(`/proc/${pid}/fd`).length, rss: field('VmRSS') * 1024, threads: field('Threads') };
}

function cmdline(pid: string): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/**
 * Whether a shim process is an idle spare (plugins/runtime/v2/spares.ts): one started ahead of
 * a task sits in a `.spare-*` directory until a task takes it (its command line keeps the
 * spare's id after that). Not the `start` action that makes it.
 */
function isSpare(pid: string): boolean {
  const args = cmdline(pid);
  if (args[args.length - 1] === 'start') return false;
  try {
    return basename(readlinkSync(`/proc/${pid}/cwd`)).startsWith('.spare-');
  } catch {
    return false;
  }
}

/** A process for a failure message: pid, parent, working directory and command line. */
export function describeProcess(pid: number): string {
  let cwd = '?';
  let ppid = '?';
  try { cwd = readlinkSync(`/proc/${pid}/cwd`); } catch { /* gone */ }
  try { ppid = /PPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '?'; } catch { /* gone */ }
  return `pid ${pid} (parent ${ppid}, cwd ${cwd}): ${cmdline(String(pid)).join(' ')}`;
}

/** Pids of the shims serving tasks of the daemon at `address`: its shims less the spare one(s). */
export function taskShimPids(address: string): number[] {
  return shimPids(address).filter((pid) => !isSpare(String(pid)));
}

/** Pids of spare shims of the daemon at `address`. */
export function spareShimPids(address: string): number[] {
  return shimPids(address).filter((pid) => isSpare(String(pid)));
}

/**
 * The shim serving task `id` of namespace `ns`: the shim process whose working directory is
 * the task's bundle. (Its `-id` argument is the task's only when the shim was not a spare.)
 */
export function shimOfTask(state: string, ns: string, id: string): number | undefined {
  const bundle = join(state, 'io.containerd.runtime.v2.task', ns, id);
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    if (!cmdline(pid).some((a) => a.includes('containerd-shim'))) continue;
    try {
      if (readlinkSync(`/proc/${pid}/cwd`) === bundle) return Number(pid);
    } catch { /* gone meanwhile */ }
  }
  return undefined;
}

/** Pids of shim processes serving the daemon at `address` (their `-address` argument), spares included. */
export function shimPids(address: string): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const args = cmdline(pid);
    if (!args.some((a) => a.includes('containerd-shim'))) continue;
    const i = args.indexOf('-address');
    if (i >= 0 && args[i + 1] === address) out.push(Number(pid));
  }
  return out;
}

/** Socket inodes held open by `pid`. */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.add(m[1]!);
    } catch {
      // Closed meanwhile.
    }
  }
  return out;
}

/**
 * What `pid` listens on: unix sockets in the accepting state (by path) and TCP sockets in LISTEN
 * plus any bound UDP socket, from /proc/net, matched by the inodes of the process's descriptors.
 */
export function listeningSockets(pid: number): string[] {
  const inodes = socketInodes(pid);
  const out: string[] = [];
  const lines = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').slice(1).filter(Boolean) : []);
  for (const line of lines('/proc/net/unix')) {
    const cols = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode [Path]; flag 0x10000 is __SO_ACCEPTCON (listening).
    if (inodes.has(cols[6]!) && (parseInt(cols[3]!, 16) & 0x10000) !== 0) out.push(`unix:${cols[7] ?? '(anonymous)'}`);
  }
  for (const proto of ['tcp', 'tcp6', 'udp', 'udp6']) {
    for (const line of lines(`/proc/net/${proto}`)) {
      const cols = line.trim().split(/\s+/);
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
      const listening = proto.startsWith('udp') || cols[3] === '0A';
      if (listening && inodes.has(cols[9]!)) out.push(`${proto}:${cols[1]}`);
    }
  }
  return out.sort();
}

// ---------------------------------------------------------------- berthd's own view

export interface ResourceDump {
  fds: number;
  rss: number;
  heapUsed: number;
  handles: number;
  timers: number;
  resources: Record<string, number>;
}

/** Sends SIGUSR2 to berthd and parses the `resource dump` line it logs. */
export async function resourceDump(d: TestDaemon): Promise<ResourceDump> {
  const from = d.log().length;
  d.process.kill('SIGUSR2');
  const line = await waitFor('the resource dump in the log', () => d.log().slice(from).split('\n').find((l) => l.includes('msg="resource dump"')), 5000, 10);
  const num = (k: string) => Number(new RegExp(` ${k}=(\\d+)`).exec(line)?.[1] ?? NaN);
  const quoted = / resources=("(?:[^"\\]|\\.)*"|\S+)/.exec(line)?.[1] ?? '{}';
  const json = quoted.startsWith('"') ? (JSON.parse(quoted) as string) : quoted;
  return { fds: num('fds'), rss: num('rss'), heapUsed: num('heapUsed'), handles: num('handles'), timers: num('timers'), resources: JSON.parse(json) as Record<string, number> };
}

/** Makes berthd run one garbage collection now and waits for it (a lease deleted with sync). */
export async function forceGc(d: TestDaemon, namespace = 'reliability-gc'): Promise<void> {
  await collectGarbage(d.connect(namespace));
}

// ---------------------------------------------------------------- consistency

export interface ConsistencyReport {
  /** Violations: metadata and disk disagree in a way nothing will repair. */
  errors: string[];
  /** Debris that garbage collection or boot cleanup removes (must be gone once they ran). */
  garbage: string[];
  counts: { blobs: number; contentRecords: number; ingests: number; snapshotRecords: number; backendSnapshots: number; mounts: number };
}

function openReadonly(path: string): BetterSqlite3.Database {
  const Database = require('better-sqlite3') as typeof BetterSqlite3;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

const listDir = (p: string) => (existsSync(p) ? readdirSync(p) : []);

/**
 * Compares berthd's metadata database with what is on disk (run with the daemon stopped, or
 * quiet). Errors:
 *  - a content record without a blob file, or one of the wrong size or digest (or not a regular file);
 *  - a committed snapshot record whose backend record or directory is missing, or whose kinds differ;
 *  - an active/view snapshot record without a backend that no lease holds (it would never go away);
 *  - a mount below the daemon's directories other than the rootfs of a task that is alive.
 * Garbage (allowed right after a crash, gone after boot cleanup and one collection):
 *  - blob files no record (or shared ingest) refers to; ingest directories no ingest record owns;
 *  - backend snapshots no record refers to; snapshot directories no backend record owns.
 */
export async function checkConsistency(d: TestDaemon, opts: { liveTasks?: string[] } = {}): Promise<ConsistencyReport> {
  const errors: string[] = [];
  const garbage: string[] = [];
  const contentRoot = join(d.root, 'io.containerd.content.v1.content');
  const md = openReadonly(join(d.root, 'io.containerd.metadata.v1.sqlite', 'meta.db'));
  let counts: ConsistencyReport['counts'];
  try {
    // Content records against blob files.
    const rows = md.prepare('SELECT namespace, digest, size FROM content').all() as { namespace: string; digest: string; size: number }[];
    const checked = new Map<string, string | undefined>();
    for (const r of rows) {
      const path = join(contentRoot, 'blobs', ...r.digest.split(':'));
      if (!checked.has(r.digest)) {
        let problem: string | undefined;
        try {
          const st = lstatSync(path);
          if (!st.isFile()) problem = 'is not a regular file';
          else if (st.size !== r.size) problem = `has ${st.size} bytes, record says ${r.size}`;
          else if ((await sha256File(path)) !== r.digest) problem = 'does not match its digest';
        } catch {
          problem = 'is missing';
        }
        checked.set(r.digest, problem);
      }
      const problem = checked.get(r.digest);
      if (problem) errors.push(`content ${r.namespace}/${r.digest}: blob ${problem}`);
    }
    const expected = new Set((md.prepare("SELECT expected FROM ingests WHERE expected != ''").all() as { expected: string }[]).map((r) => r.expected));
    const recorded = new Set(rows.map((r) => r.digest));
    let blobs = 0;
    for (const alg of listDir(join(contentRoot, 'blobs'))) {
      for (const hex of listDir(join(contentRoot, 'blobs', alg))) {
        blobs++;
        const digest = `${alg}:${hex}`;
        if (!recorded.has(digest) && !expected.has(digest)) garbage.push(`blob ${digest} has no record`);
      }
    }
    // Ingests.
    const backendRefs = new Set((md.prepare('SELECT backend_ref FROM ingests').all() as { backend_ref: string }[]).map((r) => r.backend_ref));
    const ingestDirs = listDir(join(contentRoot, 'ingest'));
    for (const name of ingestDirs) {
      let ref = '';
      try {
        ref = readFileSync(join(contentRoot, 'ingest', name, 'ref'), 'utf8');
      } catch {
        // No ref file: debris of a writer killed while creating it.
      }
      if (!backendRefs.has(ref)) garbage.push(`ingest ${name} (${JSON.stringify(ref)}) has no record`);
    }
    // Snapshots, per local snapshotter.
    const snaps = md.prepare('SELECT namespace, snapshotter, key, backend_key, kind FROM snapshots').all() as
      { namespace: string; snapshotter: string; key: string; backend_key: string; kind: number }[];
    const leased = new Set((md.prepare("SELECT namespace, type, id FROM lease_resources WHERE type LIKE 'snapshots/%'").all() as
      { namespace: string; type: string; id: string }[]).map((r) => `${r.namespace}\0${r.type.slice('snapshots/'.length)}\0${r.id}`));
    let backendSnapshots = 0;
    for (const snapshotter of ['overlayfs', 'native']) {
      const sroot = join(d.root, `io.containerd.snapshotter.v1.${snapshotter}`);
      if (!existsSync(join(sroot, 'metadata.db'))) continue;
      const bdb = openReadonly(join(sroot, 'metadata.db'));
      try {
        const backend = new Map((bdb.prepare('SELECT id, key, kind FROM snapshots').all() as { id: number; key: string; kind: number }[]).map((r) => [r.key, r]));
        backendSnapshots += backend.size;
        const referenced = new Set<string>();
        for (const s of snaps.filter((x) => x.snapshotter === snapshotter)) {
          referenced.add(s.backend_key);
          const b = backend.get(s.backend_key);
          const name = `snapshot ${s.namespace}/${snapshotter}/${s.key}`;
          if (!b) {
            if (s.kind === 3) errors.push(`${name}: committed record without backend snapshot ${s.backend_key}`);
            else if (!leased.has(`${s.namespace}\0${snapshotter}\0${s.key}`)) errors.push(`${name}: record without backend snapshot, held by no lease`);
            else garbage.push(`${name}: leased record without backend snapshot`);
            continue;
          }
          if (b.kind !== s.kind) errors.push(`${name}: kind ${s.kind} in metadata, ${b.kind} in the backend`);
          if (!existsSync(join(sroot, 'snapshots', String(b.id)))) errors.push(`${name}: directory snapshots/${b.id} is missing`);
        }
        for (const [key] of backend) if (!referenced.has(key)) garbage.push(`backend snapshot ${snapshotter}:${key} has no record`);
        const ids = new Set([...backend.values()].map((b) => String(b.id)));
        for (const dir of listDir(join(sroot, 'snapshots'))) {
          // overlayfs keeps a few directories ready for the next snapshots (spare-*).
          if (!ids.has(dir) && !dir.startsWith('spare-')) garbage.push(`directory ${snapshotter}/snapshots/${dir} has no backend record`);
        }
      } finally {
        bdb.close();
      }
    }
    // Mounts.
    const allowed = new Set((opts.liveTasks ?? []).map((t) => join(d.state, 'io.containerd.runtime.v2.task', t, 'rootfs')));
    const mounts = mountsUnder(d.dir);
    for (const m of mounts) if (!allowed.has(m)) errors.push(`mount ${m} is left behind`);
    counts = { blobs, contentRecords: rows.length, ingests: ingestDirs.length, snapshotRecords: snaps.length, backendSnapshots, mounts: mounts.length };
  } finally {
    md.close();
  }
  return { errors, garbage, counts };
}

/**
 * Waits until the daemon's boot cleanup and a forced collection have removed all garbage (the
 * backend pruning runs after the collection returns), then returns the final report.
 */
export async function settledConsistency(d: TestDaemon, opts: { liveTasks?: string[]; timeoutMs?: number } = {}): Promise<ConsistencyReport> {
  await forceGc(d);
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  for (;;) {
    const report = await checkConsistency(d, opts);
    if ((report.errors.length === 0 && report.garbage.length === 0) || Date.now() > deadline) return report;
    await sleep(100);
  }
}
