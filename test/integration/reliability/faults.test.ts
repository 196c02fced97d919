/**
 * Faults around a running berthd:
 *  - the disk fills up (its root on a 64 MiB tmpfs) while a blob is ingested and while a layer
 *    is unpacked: the client gets RESOURCE_EXHAUSTED / "no space left on device", nothing is
 *    committed half, and once space is freed the same operations succeed;
 *  - a shim is killed: its task ends with an exit status and a /tasks/exit event, and nothing
 *    of it (mounts, bundle, container process) is left;
 *  - runc is missing (not on the daemon's PATH, or a runtime option or override naming a
 *    binary that does not exist): the error names what is missing;
 *  - the registry connection drops in the middle of a blob: the pull resumes and completes;
 *  - a proxy snapshotter dies in the middle of an unpack: the daemon answers, garbage
 *    collection keeps the proxy's records, and the pull completes once the peer is back
 *    (peer restarts between calls are covered by test/integration/proxy.test.ts).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, statfsSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BERTH, berth, ctr, startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { BUSYBOX, makeBusyboxArchive } from '../../helpers/fixtures.js';
import { checkConsistency, forceGc, mountsUnder, prng, settledConsistency, shimOfTask, shimPids, sleep, waitFor } from '../../helpers/reliability.js';
import { startRegistry, startServer, type RunningRegistry } from '../client/remotes/helpers.js';
import { baseLayer, buildImage, ociArchive, pushFixture, type TarSpec } from '../../unit/client/images/fixtures.js';
import { EventsDefinition } from '../../../api/gen/services/events/v1/events.js';
import { TaskExit } from '../../../api/gen/events/task.js';
import { TasksDefinition } from '../../../api/gen/services/tasks/v1/tasks.js';
import { LeasesDefinition } from '../../../api/gen/services/leases/v1/leases.js';
import { SnapshotsDefinition } from '../../../api/gen/services/snapshots/v1/snapshots.js';
import { DiffDefinition } from '../../../api/gen/services/diff/v1/diff.js';
import { ImagesDefinition } from '../../../api/gen/services/images/v1/images.js';
import { ContentClient } from '../../../client/images/content.js';
import { VersionDefinition } from '../../../api/gen/services/version/v1/version.js';

let work: string;
let busybox: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'berth-faults-'));
  busybox = join(work, 'busybox.oci.tar');
  makeBusyboxArchive(busybox);
});
after(() => rmSync(work, { recursive: true, force: true }));

const ENOSPC = /no space left on device|RESOURCE_EXHAUSTED|ResourceExhausted|resource exhausted/i;
/** What a full disk reads like from the file system and from the metadata database (SQLite). */
const FULL = /no space left on device|database or disk is full/;

describe('disk full (daemon root on a 64 MiB tmpfs)', { timeout: 120_000 }, () => {
  let fs: string;
  let d: TestDaemon;
  const filler = () => join(fs, 'filler');
  /** Fills the filesystem until `leaveMiB` are free. */
  const fillTo = (leaveMiB: number) => {
    rmSync(filler(), { force: true });
    const st = statfsSync(fs);
    const free = st.bavail * st.bsize - leaveMiB * (1 << 20);
    if (free > 0) execFileSync('fallocate', ['-l', String(free), filler()]);
  };

  before(async () => {
    fs = mkdtempSync(join(tmpdir(), 'berth-enospc-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0755', 'tmpfs', fs]);
    d = await startDaemon({ parentDir: fs });
  });
  after(async () => {
    await d?.stop();
    spawnSync('umount', ['-l', fs]);
    rmSync(fs, { recursive: true, force: true });
  });

  it('an ingest that does not fit fails with ENOSPC, commits nothing, and succeeds once space is freed', async (t) => {
    const data = randomBytes(16 << 20);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    fillTo(6);
    const r = await ctr(d.address, ['content', 'ingest', '--expected-size', String(data.length), '--expected-digest', digest, 'big-ref'], { namespace: 'full', input: data });
    assert.notEqual(r.code, 0, 'the ingest cannot succeed');
    assert.match(r.stderr, ENOSPC, r.stderr);
    t.diagnostic(`ingest: ${r.stderr.trim()}`);
    // The status is RESOURCE_EXHAUSTED (ctr shows codes it has no class for as "unknown").
    const other = randomBytes(8 << 20);
    await assert.rejects(new ContentClient(d.connect('full')).writeBlob('other-ref', other, { digest: `sha256:${createHash('sha256').update(other).digest('hex')}`, size: other.length }),
      (err: { code?: number; message: string }) => err.code === 8 && FULL.test(err.message));
    const report = await checkConsistency(d);
    assert.deepEqual(report.errors, []);
    assert.ok(!existsSync(join(d.root, 'io.containerd.content.v1.content', 'blobs', 'sha256', digest.slice(7))), 'no blob was committed');
    assert.notEqual((await ctr(d.address, ['content', 'get', digest], { namespace: 'full' })).code, 0);
    // Still serving while full.
    assert.ok((await d.connect().service(VersionDefinition).version({})).version);
    // The partial ingest stays, resumable (as containerd keeps it).
    const active = await ctr(d.address, ['content', 'active'], { namespace: 'full' });
    assert.match(active.stdout, /^big-ref\s/m, active.stdout);
    rmSync(filler());
    // ctr resumes at the ingest's offset, which needs a seekable input.
    const file = join(work, 'big.bin');
    writeFileSync(file, data);
    const again = spawnSync('ctr', ['-a', d.address, '-n', 'full', 'content', 'ingest', '--expected-size', String(data.length), '--expected-digest', digest, 'big-ref'], { stdio: [openSync(file, 'r'), 'pipe', 'pipe'] });
    assert.equal(again.status, 0, again.stderr.toString());
    const got = execFileSync('ctr', ['-a', d.address, '-n', 'full', 'content', 'get', digest], { maxBuffer: 64 << 20 });
    assert.equal(createHash('sha256').update(got).digest('hex'), digest.slice(7));
    await ctr(d.address, ['content', 'rm', digest], { namespace: 'full' });
  });

  it('an unpack that does not fit fails with ENOSPC, leaves no committed snapshot, and completes once space is freed', async (t) => {
    // One layer of 40 MiB that compresses to almost nothing: the blob fits, its unpack does not.
    const text = Buffer.from('berth fills the disk with this line\n'.repeat((40 << 20) / 36));
    const img = buildImage([[...baseLayer(), { path: 'big.txt', data: text }]]);
    const archive = join(work, 'big.oci.tar');
    writeFileSync(archive, ociArchive(img, 'docker.io/berthtest/big:1'));
    await forceGc(d);
    // A snapshot to apply the layer into directly, made while there is room for its record.
    const conn = d.connect('full');
    await conn.service(LeasesDefinition).create({ id: 'probe', labels: {} });
    conn.lease = 'probe';
    const sn = conn.service(SnapshotsDefinition);
    const probe = await sn.prepare({ snapshotter: 'overlayfs', key: 'enospc-probe', parent: '' });
    fillTo(24);
    const r = await ctr(d.address, ['images', 'import', archive], { namespace: 'full' });
    assert.notEqual(r.code, 0, 'the unpack cannot succeed');
    assert.match(r.stderr, ENOSPC, r.stderr);
    t.diagnostic(`unpack: ${r.stderr.trim().split('\n').pop()}`);
    const snaps = await ctr(d.address, ['snapshots', 'ls'], { namespace: 'full' });
    assert.doesNotMatch(snaps.stdout, new RegExp(`^${img.chainIDs[0]}`, 'm'), 'no committed snapshot for the layer');
    // ctr prints every code it has no class for as "unknown"; the status itself is
    // RESOURCE_EXHAUSTED, for the layer's files and for the metadata database alike.
    await assert.rejects(conn.service(DiffDefinition).apply({ diff: img.layers[0]!.desc, mounts: probe.mounts }), (err: { code?: number; message: string }) =>
      err.code === 8 && /no space left on device/.test(err.message));
    await sn.remove({ snapshotter: 'overlayfs', key: 'enospc-probe' }).catch((err: { code?: number; message: string }) => {
      assert.equal(err.code, 8, err.message);
      assert.match(err.message, FULL);
    });
    assert.ok((await d.connect().service(VersionDefinition).version({})).version);
    rmSync(filler());
    // The importer could not remove its extraction snapshot while the disk was full: it stays,
    // active (never committed), under the importer's lease until that expires. Expire it.
    const leases = d.connect('full').service(LeasesDefinition);
    for (const l of (await leases.list({})).leases) await leases.delete({ id: l.id });
    const report = await settledConsistency(d, { timeoutMs: 20_000 });
    assert.deepEqual(report.errors, []);
    assert.deepEqual(report.garbage, []);
    const again = await ctr(d.address, ['images', 'import', archive], { namespace: 'full' });
    assert.equal(again.code, 0, `${again.stderr}\n${execFileSync('df', ['-k', fs]).toString()}${execFileSync('du', ['-sk', ...readdirSync(d.root).map((n) => join(d.root, n))]).toString()}${deletedOpenFiles(d.process.pid!).join('\n')}`);
    const check = await berth(d.address, ['images', 'check'], { namespace: 'full' });
    assert.match(check.stdout, /complete \((\d+)\/\1\)/, check.stdout);
    assert.match((await ctr(d.address, ['snapshots', 'ls'], { namespace: 'full' })).stdout, new RegExp(`^${img.chainIDs[0]}\\s+\\S*\\s+Committed`, 'm'));
    assert.deepEqual(mountsUnder(d.dir), []);
  });
});

describe('a killed shim', { timeout: 60_000 }, () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    const r = await ctr(d.address, ['images', 'import', busybox], { namespace: 'shim' });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => {
    for (const pid of shimPids(d.address)) process.kill(pid, 'SIGKILL');
    await d?.dispose();
  });

  for (const runtime of ['io.containerd.runc.v2', 'io.containerd.berth.v2']) {
    it(`${runtime}: the task exits with a status and an event; its mounts, bundle and process are gone`, async (t) => {
      const id = runtime.split('.')[2]!;
      const conn = d.connect('shim');
      const stop = new AbortController();
      const events = conn.service(EventsDefinition).subscribe({ filters: ['topic=="/tasks/exit"'] }, { signal: stop.signal });
      const exits: { id: string; status: number }[] = [];
      const reading = (async () => {
        for await (const e of events) {
          const ev = TaskExit.decode(e.event!.value);
          exits.push({ id: ev.containerId, status: ev.exitStatus });
        }
      })().catch(() => undefined);
      let r = await ctr(d.address, ['run', '-d', '--runtime', runtime, BUSYBOX, id, 'sleep', '300'], { namespace: 'shim' });
      assert.equal(r.code, 0, r.stderr);
      const tasks = conn.service(TasksDefinition);
      const pid = (await tasks.get({ containerId: id })).process!.pid;
      const shim = shimOfTask(d.state, 'shim', id);
      assert.ok(shim, `the shim of ${id}`);
      process.kill(shim, 'SIGKILL');
      const exit = await waitFor('the /tasks/exit event', () => exits.find((x) => x.id === id), 15_000);
      assert.notEqual(exit.status, 0, 'a task whose shim died does not report success');
      t.diagnostic(`${runtime}: /tasks/exit exit_status=${exit.status}`);
      await waitFor('the task to be gone', async () => ((await tasks.list({})).tasks.some((t) => t.id === id) ? undefined : true), 10_000);
      await waitFor('the container process to be gone', () => (existsSync(`/proc/${pid}`) && !/\(Z\)|^\S+ \S+ Z/.test(safeStat(pid)) ? undefined : true), 10_000);
      assert.deepEqual(mountsUnder(d.dir), [], 'the rootfs is unmounted');
      assert.ok(!existsSync(join(d.state, 'io.containerd.runtime.v2.task', 'shim', id)), 'the bundle is removed');
      r = await ctr(d.address, ['containers', 'rm', id], { namespace: 'shim' });
      assert.equal(r.code, 0, r.stderr);
      r = await ctr(d.address, ['run', '--rm', '--runtime', runtime, BUSYBOX, id, 'echo', 'again'], { namespace: 'shim' });
      assert.equal(r.stdout, 'again\n', r.stderr);
      stop.abort();
      await reading;
    });
  }
});

/** Files berthd holds open that were deleted (their space is not free until closed). */
function deletedOpenFiles(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (target.endsWith(' (deleted)')) out.push(`fd ${fd} -> ${target}`);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

function safeStat(pid: number): string {
  try {
    return execFileSync('cat', [`/proc/${pid}/stat`]).toString();
  } catch {
    return '';
  }
}

describe('runc missing', { timeout: 60_000 }, () => {
  let d: TestDaemon;
  let bin: string;
  before(async () => {
    // A PATH with the shims and node, but no runc.
    bin = join(work, 'bin-without-runc');
    mkdirSync(bin);
    for (const tool of ['containerd-shim-runc-v2', 'rm']) symlinkSync(execFileSync('which', [tool]).toString().trim(), join(bin, tool));
    symlinkSync(process.execPath, join(bin, 'node'));
    d = await startDaemon({
      env: { PATH: bin },
      extraConfig: '[plugins."io.containerd.runtime.v2.task".runtime_overrides]\n  "io.containerd.missing.v1" = "/nonexistent/containerd-shim-missing-v1"',
    });
    const r = await ctr(d.address, ['images', 'import', busybox], { namespace: 'norunc' });
    assert.equal(r.code, 0, r.stderr);
  });
  after(async () => d?.dispose());

  it('not on the daemon PATH: the error names runc, for runc v2 and for berth\'s shim', async (t) => {
    for (const runtime of ['io.containerd.runc.v2', 'io.containerd.berth.v2']) {
      const id = `nr-${runtime.split('.')[2]}`;
      const r = await ctr(d.address, ['run', '--rm', '--runtime', runtime, BUSYBOX, id, 'true'], { namespace: 'norunc' });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /runc/, `${runtime}: ${r.stderr}`);
      assert.match(r.stderr, /not found|no such file|ENOENT/i, `${runtime}: ${r.stderr}`);
      t.diagnostic(`${runtime}: ${r.stderr.trim()}`);
      await ctr(d.address, ['containers', 'rm', id], { namespace: 'norunc' });
    }
    assert.deepEqual(shimPids(d.address), [], 'no shim is left running (and no spare of a runtime that cannot run)');
  });

  it('a runtime binary option or override naming a missing binary: the error names it', async (t) => {
    let r = await ctr(d.address, ['run', '--rm', '--runc-binary', '/nonexistent/runc-x', BUSYBOX, 'nr-opt', 'true'], { namespace: 'norunc' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\/nonexistent\/runc-x/, r.stderr);
    t.diagnostic(`--runc-binary: ${r.stderr.trim()}`);
    await ctr(d.address, ['containers', 'rm', 'nr-opt'], { namespace: 'norunc' });
    r = await ctr(d.address, ['run', '--rm', '--runtime', 'io.containerd.missing.v1', BUSYBOX, 'nr-ovr', 'true'], { namespace: 'norunc' });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /\/nonexistent\/containerd-shim-missing-v1/, r.stderr);
    t.diagnostic(`override: ${r.stderr.trim()}`);
    await ctr(d.address, ['containers', 'rm', 'nr-ovr'], { namespace: 'norunc' });
    assert.deepEqual(mountsUnder(d.dir), []);
  });
});

describe('a registry that drops the connection in the middle of a blob', { timeout: 90_000 }, () => {
  let reg: RunningRegistry;
  let proxy: Awaited<ReturnType<typeof startServer>>;
  let d: TestDaemon;
  const seen: { url: string; range?: string; cut: boolean }[] = [];
  let cutDigest = '';
  let cuts = 0;

  before(async () => {
    const rng = prng(99);
    const big = Buffer.alloc(4 << 20);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(Math.floor(rng.next() * 2 ** 32), i);
    const img = buildImage([[...baseLayer(), { path: 'big.bin', data: big }]]);
    cutDigest = img.layers[0]!.desc.digest;
    [reg, d] = await Promise.all([startRegistry(), startDaemon()]);
    await pushFixture(reg.host, 'faults/cut', 'v1', img);
    proxy = await startServer((req, res) => {
      const [hostname, port] = reg.host.split(':');
      const cut = req.method === 'GET' && req.url!.endsWith(`/blobs/${cutDigest}`) && cuts === 0;
      seen.push({ url: req.url!, range: req.headers.range, cut });
      const up = http.request({ hostname, port: Number(port), method: req.method, path: req.url, headers: { ...req.headers, host: reg.host } }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!cut) {
          upRes.pipe(res);
          return;
        }
        cuts++;
        // Forward about a third of the blob, then cut the connection.
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          if (sent > img.layers[0]!.desc.size / 3) return;
          sent += chunk.length;
          res.write(chunk);
          if (sent > img.layers[0]!.desc.size / 3) setTimeout(() => { res.socket?.destroy(); upRes.destroy(); }, 20);
        });
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
  });
  after(async () => {
    await Promise.allSettled([d?.dispose(), reg?.stop(), proxy?.stop()]);
  });

  it('berth pull resumes the blob from where the connection dropped and completes', async (t) => {
    const ref = `${proxy.host}/faults/cut:v1`;
    const r = await berth(d.address, ['images', 'pull', '--plain-http', ref], { namespace: 'cut' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(cuts, 1, 'the blob was cut once');
    const retries = seen.filter((s) => s.url.endsWith(`/blobs/${cutDigest}`) && !s.cut);
    assert.ok(retries.length >= 1, 'the blob was requested again');
    assert.match(retries[0]!.range ?? '', /^bytes=[1-9]\d*-$/, 'the retry asks for the rest only');
    t.diagnostic(`berth pull: blob cut once, retried with Range: ${retries[0]!.range}`);
    const check = await berth(d.address, ['images', 'check'], { namespace: 'cut' });
    assert.match(check.stdout, /complete \((\d+)\/\1\)/, check.stdout);
    assert.deepEqual((await settledConsistency(d)).errors, []);
  });

  it('ctr pull: a cut blob fails the first pull at worst, and the next pull resumes from the ingest and completes', async (t) => {
    cuts = 0;
    seen.length = 0;
    const ref = `${proxy.host}/faults/cut:v1`;
    // Start from an empty content store (blobs are shared between namespaces).
    await d.connect('cut').service(ImagesDefinition).delete({ name: ref, sync: true });
    await forceGc(d);
    const first = await ctr(d.address, ['images', 'pull', '--plain-http', ref], { namespace: 'cutctr' });
    t.diagnostic(`ctr pull with a cut blob: exit ${first.code}${first.code ? ` (${first.stderr.trim().split('\n').pop()})` : ''}; requests for the blob: ${JSON.stringify(seen.filter((x) => x.url.endsWith(`/blobs/${cutDigest}`)).map((x) => x.range ?? 'whole'))}`);
    // containerd's fetcher (ctr's) gives up on a dropped body; berthd keeps the partial ingest.
    if (first.code !== 0) {
      const second = await ctr(d.address, ['images', 'pull', '--plain-http', ref], { namespace: 'cutctr' });
      assert.equal(second.code, 0, second.stderr);
      const retry = seen.filter((s) => s.url.endsWith(`/blobs/${cutDigest}`) && !s.cut)[0];
      assert.ok(retry, 'the blob was requested again');
    }
    const check = await ctr(d.address, ['images', 'check'], { namespace: 'cutctr' });
    assert.match(check.stdout, /complete \((\d+)\/\1\)/, check.stdout);
  });
});

describe('a proxy snapshotter that dies in the middle of an unpack', { timeout: 90_000 }, () => {
  let reg: RunningRegistry;
  let d: TestDaemon;
  let peer: ChildProcess | undefined;
  let dir: string;
  let ref: string;
  const sock = () => join(dir, 'peer.sock');
  const peerSnapshots = () => {
    try {
      return readdirSync(join(dir, 'peer-root', 'io.containerd.snapshotter.v1.overlayfs', 'snapshots')).filter((n) => !n.startsWith('spare-')).length;
    } catch {
      return 0;
    }
  };
  const startPeer = async () => {
    const child = spawn(process.execPath, [BERTH, 'snapshotter', 'serve', '--snapshotter', 'overlayfs', '--address', sock(), '--root', join(dir, 'peer-root')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (b) => (log += b));
    await waitFor('the peer to serve', () => (/serving snapshotter/.test(log) && existsSync(sock()) ? true : undefined), 15_000);
    return child;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'berth-peer-'));
    const many: TarSpec[] = [{ path: 'many/', type: 'Directory' }];
    for (let i = 0; i < 3000; i++) many.push({ path: `many/f${i}`, data: `${i}\n` });
    reg = await startRegistry();
    ref = await pushFixture(reg.host, 'faults/peer', 'v1', buildImage([baseLayer(), many, [{ path: 'last', data: 'x' }]]));
    peer = await startPeer();
    d = await startDaemon({ extraConfig: `[proxy_plugins.peersnap]\n  type = "snapshot"\n  address = "${sock()}"` });
  });
  after(async () => {
    peer?.kill('SIGKILL');
    await Promise.allSettled([d?.dispose(), reg?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('the pull fails naming the proxy, berthd keeps answering and collecting, and the pull completes once the peer is back', async (t) => {
    const pulling = berth(d.address, ['images', 'pull', '--plain-http', '--snapshotter', 'peersnap', ref], { namespace: 'peer' });
    // Kill the peer once the unpack has begun (the second layer has thousands of entries).
    await waitFor('the unpack to start', () => (peerSnapshots() >= 2 ? true : undefined), 15_000, 5);
    peer!.kill('SIGKILL');
    const r = await pulling;
    assert.notEqual(r.code, 0, 'the pull cannot finish without its snapshotter');
    assert.match(r.stderr, /proxy snapshotter "peersnap" at .* is not available/, r.stderr);
    assert.doesNotMatch(r.stderr, /cannot connect to .*berth\.sock/, 'the daemon answered: its socket is not the problem');
    t.diagnostic(`peer killed mid-unpack: ${r.stderr.trim().split('\n').pop()}`);
    await forceGc(d);
    assert.ok((await d.connect().service(VersionDefinition).version({})).version, 'berthd answers');
    assert.match(d.log(), /snapshot garbage collection failed|not available/);
    peer = await startPeer();
    const again = await berth(d.address, ['images', 'pull', '--plain-http', '--snapshotter', 'peersnap', ref], { namespace: 'peer' });
    assert.equal(again.code, 0, again.stderr);
    const check = await ctr(d.address, ['images', 'check', '--snapshotter', 'peersnap'], { namespace: 'peer' });
    assert.match(check.stdout, /complete \((\d+)\/\1\)/, check.stdout);
    await sleep(10);
  });
});
