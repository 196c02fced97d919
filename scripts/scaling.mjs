#!/usr/bin/env node
// How berthd's costs grow with what it manages, side by side with Debian's containerd 1.6:
//   - running tasks, 1 → 50: memory per task (daemon RSS growth plus the shims' RSS and PSS),
//     with containerd's runc shim and with berth's own shim;
//   - 1,000 snapshots: prepare+commit latency at the start and at the end, `snapshots ls`,
//     daemon RSS and database sizes;
//   - 10,000 blobs: ingest latency at the start and at the end, `content ls`, metadata size;
//   - 100 namespaces: create and list time.
// Usage (root; after `npm run build`):
//   node scripts/scaling.mjs [--tasks 1,10,25,50] [--snapshots 1000] [--blobs 10000]
//                            [--namespaces 100] [--only tasks|snapshots|blobs|namespaces]
//                            [--no-containerd]
// Both daemons run on private temporary directories, which are removed at the end. Calls go
// through berth's client library (one connection, one call at a time), so the latencies are
// the daemons' own; containers are started with the real ctr, as a user would.
import { execFile as execFileCb, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { register } from 'tsx/esm/api';

const execFile = promisify(execFileCb);
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { values: opt } = parseArgs({
  options: {
    tasks: { type: 'string', default: '1,10,25,50' },
    snapshots: { type: 'string', default: '1000' },
    blobs: { type: 'string', default: '10000' },
    namespaces: { type: 'string', default: '100' },
    only: { type: 'string' },
    'no-containerd': { type: 'boolean', default: false },
  },
});
const want = (part) => !opt.only || opt.only === part;
if (process.getuid?.() !== 0) { console.error('scaling: run as root (containers, mounts)'); process.exit(1); }
if (!existsSync(join(repo, 'dist', 'berthd.js'))) { console.error('scaling: run `npm run build` first'); process.exit(1); }

register();
const { Connection } = await import('../client/connection.ts');
const { ContentClient } = await import('../client/images/content.ts');
const { SnapshotsDefinition } = await import('../api/gen/services/snapshots/v1/snapshots.ts');
const { NamespacesDefinition } = await import('../api/gen/services/namespaces/v1/namespace.ts');
const { LeasesDefinition } = await import('../api/gen/services/leases/v1/leases.ts');

// ---------------------------------------------------------------- measurement helpers
const now = () => performance.now();
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const MiB = (kb) => kb / 1024;
/** VmRSS of a process, KiB. */
const rssKb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
/** Proportional set size (shared pages divided among their users), KiB. */
const pssKb = (pid) => Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
/** Bytes of a SQLite or bolt database including its WAL. */
const dbBytes = (path) => [path, `${path}-wal`].reduce((n, p) => n + (existsSync(p) ? statSync(p).size : 0), 0);
const fmt = (x, d = 1) => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Processes whose command line has all of `words` (exact argv entries). */
function processesWith(...words) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let argv;
    try { argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0'); } catch { continue; }
    if (words.every((w) => argv.includes(w))) out.push(Number(d));
  }
  return out;
}

// ---------------------------------------------------------------- the daemons
const work = mkdtempSync(join(tmpdir(), 'berth-scaling-'));
const children = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

async function startDaemon(kind) {
  const dir = join(work, kind);
  const address = join(dir, `${kind}.sock`);
  const root = join(dir, 'root');
  const config = [
    'version = 2', `root = "${root}"`, `state = "${join(dir, 'state')}"`,
    ...(kind === 'containerd' ? ['disabled_plugins = ["io.containerd.grpc.v1.cri"]'] : []),
    '[grpc]', `  address = "${address}"`,
    '[plugins."io.containerd.internal.v1.opt"]', `  path = "${join(dir, 'opt')}"`,
  ].join('\n');
  (await import('node:fs')).mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.toml'), config);
  const [cmd, args] = kind === 'berthd'
    ? [process.execPath, [join(repo, 'bin', 'berthd.js'), '--config', join(dir, 'config.toml')]]
    : ['containerd', ['--config', join(dir, 'config.toml')]];
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'ignore'] });
  children.push(child);
  for (let i = 0; !existsSync(address); i++) {
    if (child.exitCode !== null || i > 1000) throw new Error(`${kind} did not start`);
    await sleep(20);
  }
  const d = {
    kind, address, root, pid: child.pid, child,
    conn: (namespace) => new Connection({ address, namespace, timeoutMs: 120_000 }),
    ctr: (namespace, ...a) => execFile('ctr', ['-a', address, '-n', namespace, ...a], { maxBuffer: 64 << 20 }),
    metaDb: kind === 'berthd' ? join(root, 'io.containerd.metadata.v1.sqlite', 'meta.db') : join(root, 'io.containerd.metadata.v1.bolt', 'meta.db'),
    overlayDb: join(root, 'io.containerd.snapshotter.v1.overlayfs', 'metadata.db'),
  };
  await d.conn('default').service(NamespacesDefinition).list({}); // answers
  return d;
}

const daemons = [await startDaemon('berthd')];
if (!opt['no-containerd']) daemons.push(await startDaemon('containerd'));
const results = [];
const row = (...cells) => results.push(cells);

/** A connection whose calls all run under one lease, so the garbage collector keeps what they make. */
async function leasedConnection(d, namespace) {
  const conn = d.conn(namespace);
  const { lease } = await conn.service(LeasesDefinition).create({ id: `scaling-${namespace}` });
  conn.lease = lease.id;
  return conn;
}

// ---------------------------------------------------------------- tasks
if (want('tasks')) {
  const image = 'docker.io/library/busybox:latest';
  const archive = join(work, 'busybox.tar');
  await execFile(process.execPath, [join(repo, 'scripts', 'make-image.mjs'), '--out', archive, '--name', image]);
  const steps = opt.tasks.split(',').map(Number);
  const setups = [
    ...daemons.map((d) => ({ d, runtime: 'io.containerd.runc.v2', shim: 'containerd-shim-runc-v2' })),
    { d: daemons[0], runtime: 'io.containerd.berth.v2', shim: 'containerd-shim-berth-v2' },
  ];
  for (const { d, runtime, shim } of setups) {
    const ns = `scale-${d.kind}-${runtime.split('.')[2]}`;
    await d.ctr(ns, 'images', 'import', archive);
    await sleep(1000);
    const base = rssKb(d.pid);
    const starts = [];
    let n = 0;
    for (const target of steps) {
      for (; n < target; n++) {
        const t0 = now();
        await d.ctr(ns, 'run', '-d', '--runtime', runtime, image, `t${n}`, 'sleep', '100000');
        starts.push(now() - t0);
      }
      await sleep(1500);
      const shims = processesWith('-namespace', ns).filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(shim));
      const shimRss = shims.reduce((s, p) => s + rssKb(p), 0);
      const shimPss = shims.reduce((s, p) => s + pssKb(p), 0);
      const daemonRss = rssKb(d.pid);
      row('tasks', `${d.kind} + ${shim}`, target,
        `daemon RSS ${fmt(MiB(daemonRss))} MiB (${daemonRss >= base ? '+' : ''}${fmt(MiB(daemonRss - base) / target, 2)}/task)`,
        `shims ${shims.length}: RSS ${fmt(MiB(shimRss / Math.max(shims.length, 1)))} MiB, PSS ${fmt(MiB(shimPss / Math.max(shims.length, 1)))} MiB each`,
        `per task: ${fmt(MiB((daemonRss - base + shimRss) / target))} MiB RSS, ${fmt(MiB((daemonRss - base + shimPss) / target))} MiB PSS`,
        `run -d ${fmt(median(starts.slice(-Math.min(5, starts.length))), 0)} ms`);
    }
    for (let i = 0; i < n; i++) await d.ctr(ns, 'tasks', 'kill', '-s', 'KILL', `t${i}`).catch(() => undefined);
    await sleep(1000);
    for (let i = 0; i < n; i++) {
      await d.ctr(ns, 'tasks', 'rm', '-f', `t${i}`).catch(() => undefined);
      await d.ctr(ns, 'containers', 'rm', `t${i}`).catch(() => undefined);
    }
  }
}

// ---------------------------------------------------------------- snapshots
if (want('snapshots')) {
  const total = Number(opt.snapshots);
  for (const d of daemons) {
    const conn = await leasedConnection(d, 'scale-snap');
    const snaps = conn.service(SnapshotsDefinition);
    const snapshotter = 'overlayfs';
    const rss0 = rssKb(d.pid);
    const lat = [];
    for (let i = 0; i < total; i++) {
      const t0 = now();
      await snaps.prepare({ snapshotter, key: `a${i}`, parent: '' });
      await snaps.commit({ snapshotter, name: `c${i}`, key: `a${i}` });
      lat.push(now() - t0);
    }
    const t0 = now();
    let listed = 0;
    for await (const r of snaps.list({ snapshotter })) listed += r.info.length;
    const listMs = now() - t0;
    const k = Math.min(50, Math.max(1, total >> 2));
    row('snapshots', d.kind, total,
      `prepare+commit ${fmt(median(lat.slice(0, k)), 2)} ms first ${k}, ${fmt(median(lat.slice(-k)), 2)} ms last ${k}`,
      `ls ${listed} in ${fmt(listMs, 0)} ms`,
      `RSS ${fmt(MiB(rss0))} → ${fmt(MiB(rssKb(d.pid)))} MiB`,
      `snapshotter db ${fmt(dbBytes(d.overlayDb) / 1048576, 2)} MiB, metadata db ${fmt(dbBytes(d.metaDb) / 1048576, 2)} MiB`);
    conn.close();
  }
}

// ---------------------------------------------------------------- blobs
if (want('blobs')) {
  const total = Number(opt.blobs);
  for (const d of daemons) {
    const conn = await leasedConnection(d, 'scale-blob');
    const content = new ContentClient(conn);
    const rss0 = rssKb(d.pid);
    const lat = [];
    for (let i = 0; i < total; i++) {
      const data = randomBytes(1024);
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      const t0 = now();
      await content.writeBlob(`blob-${i}`, data, { digest, size: data.length });
      lat.push(now() - t0);
    }
    const t0 = now();
    let listed = 0;
    for await (const _ of content.list()) listed++;
    const listMs = now() - t0;
    const k = Math.min(100, Math.max(1, total >> 2));
    row('blobs', d.kind, total,
      `ingest (1 KiB) ${fmt(median(lat.slice(0, k)), 2)} ms first ${k}, ${fmt(median(lat.slice(-k)), 2)} ms last ${k}`,
      `ls ${listed} in ${fmt(listMs, 0)} ms`,
      `RSS ${fmt(MiB(rss0))} → ${fmt(MiB(rssKb(d.pid)))} MiB`,
      `metadata db ${fmt(dbBytes(d.metaDb) / 1048576, 2)} MiB`);
    conn.close();
  }
}

// ---------------------------------------------------------------- namespaces
if (want('namespaces')) {
  const total = Number(opt.namespaces);
  for (const d of daemons) {
    const conn = d.conn('default');
    const nss = conn.service(NamespacesDefinition);
    const lat = [];
    for (let i = 0; i < total; i++) {
      const t0 = now();
      await nss.create({ namespace: { name: `scale-ns-${i}`, labels: { i: String(i) } } });
      lat.push(now() - t0);
    }
    const t0 = now();
    const { namespaces } = await nss.list({});
    const listMs = now() - t0;
    row('namespaces', d.kind, total, `create ${fmt(median(lat), 2)} ms (median)`, `list ${namespaces.length} in ${fmt(listMs, 1)} ms`);
    conn.close();
  }
}

// ---------------------------------------------------------------- report
const cpus = (await import('node:os')).cpus();
console.log(`# scaling: ${new Date().toISOString()}, ${cpus.length} × ${cpus[0]?.model ?? 'cpu'}, load ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`);
console.log('| part | daemon | n | measurements |');
console.log('|---|---|---:|---|');
for (const [part, who, n, ...cells] of results) console.log(`| ${part} | ${who} | ${n} | ${cells.join('; ')} |`);
process.exit(0);
