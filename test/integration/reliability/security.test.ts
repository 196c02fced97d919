/**
 * Security properties of a running berthd:
 *  - its API sockets are 0660 and owned by the configured group, so group members connect and
 *    other users do not;
 *  - identifiers with path tricks (`..`, `/`, NUL, 1000 characters) are refused wherever an id
 *    becomes a path (namespaces, containers, tasks, exec ids); free-form keys (snapshot keys,
 *    ingest refs, lease ids) are accepted but never name anything on disk;
 *  - the daemon does not follow symlinks out of its root: not one planted in an image layer,
 *    not one inside a snapshot (usage, commit, diff, removal), not one in the content ingest
 *    directory; `berth install` writes only under the opt path;
 *  - it listens on the configured gRPC and ttrpc sockets and nothing else, before and after a
 *    workload.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { berth, ctr, runCommand, startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { BUSYBOX, makeBusyboxArchive } from '../../helpers/fixtures.js';
import { listeningSockets, mountsUnder, settledConsistency, shimOfTask, waitFor } from '../../helpers/reliability.js';
import { buildImage, ociArchive, baseLayer, type TarSpec } from '../../unit/client/images/fixtures.js';
import { snapshotTree } from '../../unit/plugins/differ/walking/archive/helpers.js';
import { ContainersDefinition } from '../../../api/gen/services/containers/v1/containers.js';
import { NamespacesDefinition } from '../../../api/gen/services/namespaces/v1/namespace.js';
import { TasksDefinition } from '../../../api/gen/services/tasks/v1/tasks.js';
import { LeasesDefinition } from '../../../api/gen/services/leases/v1/leases.js';
import { SnapshotsDefinition } from '../../../api/gen/services/snapshots/v1/snapshots.js';
import { DiffDefinition } from '../../../api/gen/services/diff/v1/diff.js';
import { EventsDefinition } from '../../../api/gen/services/events/v1/events.js';
import { ContentClient } from '../../../client/images/content.js';
import { Code } from '../../../core/errdefs/errdefs.js';

const GROUP = 'berthreltest';
const MARKER = `berth-sec-${process.pid}`;
const BAD_IDS = ['..', '../x', `../../../../../../tmp/${MARKER}`, 'a/b', '/abs', 'a\0b', '\0', 'x'.repeat(1000), '.hidden', 'a..b', ''];

const codeOf = (err: unknown) => (err as { code?: number }).code;
async function rejectsWith(p: Promise<unknown>, codes: number[], what: string): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(codes.includes(codeOf(err) ?? -1), `${what}: code ${codeOf(err)} (${(err as Error).message.slice(0, 200)}), wanted ${codes.join('|')}`);
    return;
  }
  assert.fail(`${what}: accepted`);
}

/** Every file and directory name below `dir` (relative), without following links. */
function walk(dir: string, prefix = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const rel = prefix ? `${prefix}/${name}` : name;
    out.push(rel);
    const st = lstatSync(join(dir, name));
    if (st.isDirectory()) out.push(...walk(join(dir, name), rel));
  }
  return out;
}

describe('security', { timeout: 180_000 }, () => {
  let parent: string;
  let d: TestDaemon;
  let gid: number;
  let outside: string;
  let archive: string;

  before(async () => {
    spawnSync('groupadd', ['-f', GROUP]);
    gid = Number(execFileSync('getent', ['group', GROUP]).toString().split(':')[2]);
    assert.ok(gid > 0, 'test group created');
    parent = mkdtempSync(join(tmpdir(), 'berth-sec-'));
    chmodSync(parent, 0o711);
    d = await startDaemon({ parentDir: parent, grpcConfig: `  gid = ${gid}` });
    outside = mkdtempSync(join(tmpdir(), 'berth-sec-outside-'));
    writeFileSync(join(outside, 'keep'), 'outside the root\n');
    mkdirSync(join(outside, 'dir'));
    writeFileSync(join(outside, 'dir', 'big'), Buffer.alloc(1 << 20, 1));
    archive = join(parent, 'busybox.oci.tar');
    makeBusyboxArchive(archive);
  });
  after(async () => {
    await ctr(d.address, ['tasks', 'kill', '-s', 'SIGKILL', 'sec1'], { namespace: 'sec' }).catch(() => undefined);
    await ctr(d.address, ['tasks', 'rm', '-f', 'sec1'], { namespace: 'sec' }).catch(() => undefined);
    await d?.dispose();
    rmSync(parent, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
    spawnSync('groupdel', [GROUP]);
  });

  it('sockets are 0660, group-owned as configured; group members connect, others are refused', async () => {
    // The config above put gid in [grpc]; the ttrpc socket follows it when [ttrpc] has no address.
    for (const sock of [d.address, `${d.address}.ttrpc`]) {
      const st = statSync(sock);
      assert.ok(st.isSocket(), sock);
      assert.equal(st.mode & 0o777, 0o660, `${sock} mode ${(st.mode & 0o777).toString(8)}`);
      assert.equal(st.gid, gid, `${sock} group`);
    }
    chmodSync(d.dir, 0o711);
    const as = (groups: string) => runCommand('setpriv', ['--reuid=65534', '--regid=65534', groups, 'ctr', '-a', d.address, '--connect-timeout', '2s', 'version']);
    const stranger = await as('--clear-groups');
    assert.notEqual(stranger.code, 0, 'a user outside the group is refused');
    assert.match(stranger.stderr, /permission denied/i);
    const member = await as(`--groups=${gid}`);
    assert.equal(member.code, 0, `a group member connects: ${member.stderr}`);
    assert.match(member.stdout, /Server:/);
  });

  it('identifiers with path tricks are INVALID_ARGUMENT for namespaces, containers, tasks and exec ids', async () => {
    const conn = d.connect('sec');
    const before = walk(d.dir).length;
    for (const id of BAD_IDS) {
      await rejectsWith(conn.service(NamespacesDefinition).create({ namespace: { name: id, labels: {} } }), [Code.INVALID_ARGUMENT], `namespace ${JSON.stringify(id)}`);
      await rejectsWith(conn.service(ContainersDefinition).create({ container: { id, runtime: { name: 'io.containerd.runc.v2' }, spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: Buffer.from('{}') } } }),
        [Code.INVALID_ARGUMENT], `container ${JSON.stringify(id)}`);
      await rejectsWith(conn.service(TasksDefinition).create({ containerId: id }), [Code.INVALID_ARGUMENT, Code.NOT_FOUND], `task ${JSON.stringify(id)}`);
      if (id && !id.includes('\0')) {
        // ctr refuses these itself or the daemon does; either way nothing may be listed.
        const r = await ctr(d.address, ['containers', 'ls'], { namespace: id });
        assert.notEqual(r.code, 0, `ctr accepted namespace ${JSON.stringify(id)}`);
      }
    }
    // Exec ids on a live task.
    let r = await ctr(d.address, ['images', 'import', archive], { namespace: 'sec' });
    assert.equal(r.code, 0, r.stderr);
    r = await ctr(d.address, ['run', '-d', BUSYBOX, 'sec1', 'sleep', '300'], { namespace: 'sec' });
    assert.equal(r.code, 0, r.stderr);
    const state = join(d.state, 'io.containerd.runtime.v2.task', 'sec', 'sec1');
    const stateBefore = readdirSync(state).sort();
    for (const id of BAD_IDS.filter(Boolean)) {
      await rejectsWith(conn.service(TasksDefinition).exec({ containerId: 'sec1', execId: id, spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from('{"args":["true"],"cwd":"/"}') } }),
        [Code.INVALID_ARGUMENT], `exec id ${JSON.stringify(id)}`);
    }
    assert.deepEqual(readdirSync(state).sort(), stateBefore, 'no exec state appeared');
    // Events: topics are checked like containerd's exchange does.
    await rejectsWith(conn.service(EventsDefinition).publish({ topic: '/tasks/../../x', event: { typeUrl: 'x', value: Buffer.alloc(0) } }), [Code.INVALID_ARGUMENT], 'topic with ..');
    assert.ok(walk(d.dir).length >= before);
    assert.ok(!existsSync(`/tmp/${MARKER}`));
  });

  /** A connection whose calls run under a fresh lease (so gc keeps what they create). */
  const leased = async (id: string) => {
    const conn = d.connect('sec');
    await conn.service(LeasesDefinition).create({ id, labels: {} });
    conn.lease = id;
    return conn;
  };

  it('free-form keys (snapshot keys, ingest refs, lease ids) never name anything on disk', async () => {
    const conn = await leased('keys');
    const sn = conn.service(SnapshotsDefinition);
    const keys = ['../../x', `../../../../../../../../tmp/${MARKER}`, '/abs/key', 'a\0b', 'x'.repeat(1000)];
    for (const snapshotter of ['overlayfs', 'native']) {
      const sroot = join(d.root, `io.containerd.snapshotter.v1.${snapshotter}`);
      for (const key of keys) {
        const { mounts } = await sn.prepare({ snapshotter, key, parent: '' });
        for (const m of mounts) for (const p of [m.source, ...m.options.filter((o) => o.includes('/')).map((o) => o.split('=')[1]!)]) {
          if (p.startsWith('/')) assert.ok(p.startsWith(`${sroot}/snapshots/`), `${snapshotter} mount path ${p} for key ${JSON.stringify(key).slice(0, 40)}`);
        }
      }
      // Numbered by id; overlayfs also keeps a few spare-* directories ready for the next ones.
      assert.ok(readdirSync(join(sroot, 'snapshots')).every((n) => /^(\d+|spare-\w+)$/.test(n)), `${snapshotter}: snapshot directories are numbered`);
      for (const key of keys) await sn.remove({ snapshotter, key });
    }
    const cs = new ContentClient(conn);
    for (const ref of ['../../x', `../../../../tmp/${MARKER}`, 'a/b/../../c', 'x'.repeat(1000)]) {
      const data = Buffer.from(`ref ${ref.length}`);
      await cs.writeBlob(ref, data, { digest: `sha256:${createHash('sha256').update(data).digest('hex')}`, size: data.length });
    }
    const ingest = join(d.root, 'io.containerd.content.v1.content', 'ingest');
    assert.ok(readdirSync(ingest).every((n) => /^[0-9a-f]{64}$/.test(n)), 'ingest directories are digests of refs');
    const leases = conn.service(LeasesDefinition);
    await leases.delete({ id: 'keys' });
    for (const id of ['../../x', `/tmp/${MARKER}`, 'a/b']) {
      await leases.create({ id, labels: {} });
      await leases.delete({ id });
    }
    assert.ok(!existsSync(`/tmp/${MARKER}`) && !existsSync(join(d.dir, '..', 'x')) && !existsSync(join(d.root, '..', 'x')));
    assert.deepEqual(readdirSync(parent).sort(), ['busybox.oci.tar', d.dir.slice(parent.length + 1)].sort());
  });

  it('a symlink planted in an image layer does not lead the unpack (or berth install) outside', async () => {
    const passwd = statSync('/etc/passwd');
    const outsideBefore = await snapshotTree(outside, { dirMtimes: true, nlink: true });
    const evil: TarSpec[] = [
      ...baseLayer(),
      { path: 'bin/escape', type: 'SymbolicLink', linkpath: outside },
      { path: 'bin/escape/planted', data: 'through an absolute link\n' },
      { path: 'bin/up', type: 'SymbolicLink', linkpath: '../../../../../../../..' + outside },
      { path: 'bin/up/planted2', data: 'through a relative link\n' },
      { path: 'bin/root', type: 'SymbolicLink', linkpath: '/' },
      { path: `bin/root/tmp/${MARKER}`, data: 'through / \n' },
      { path: 'bin/hard', type: 'Link', linkpath: '../../../../../../etc/passwd' },
      { path: `../../../../../tmp/${MARKER}-dotdot`, data: 'dotdot\n' },
      { path: 'bin/tool', data: '#!/bin/sh\n', mode: 0o755 },
    ];
    const img = buildImage([evil, [{ path: 'bin/escape/second', data: 'second layer\n' }, { path: 'bin/keep', data: 'ok\n', mode: 0o755 }]]);
    const file = join(parent, 'evil.oci.tar');
    writeFileSync(file, ociArchive(img, 'docker.io/berthtest/evil:1'));
    const r = await ctr(d.address, ['images', 'import', file], { namespace: 'sec' });
    rmSync(file);
    // Whether the importer refuses the layer or contains it, nothing outside may change.
    assert.ok(r.code === 0 || /invalid|not permitted|outside/i.test(r.stderr), r.stderr);
    const opt = join(d.dir, 'opt');
    const optBefore = existsSync(opt) ? walk(opt) : [];
    const inst = await berth(d.address, ['install', '--replace', 'docker.io/berthtest/evil:1'], { namespace: 'sec' });
    const optAfter = existsSync(opt) ? walk(opt) : [];
    for (const p of optAfter.filter((x) => !optBefore.includes(x))) assert.ok(!p.includes('..'), `install wrote ${p}`);
    assert.deepEqual(await snapshotTree(outside, { dirMtimes: true, nlink: true }), outsideBefore, `outside changed (install: ${inst.code} ${inst.stderr})`);
    for (const p of [`/tmp/${MARKER}`, `/tmp/${MARKER}-dotdot`, `/${MARKER}`]) assert.ok(!existsSync(p), `${p} was written`);
    const after = statSync('/etc/passwd');
    assert.deepEqual([after.ino, after.nlink, after.mtimeMs], [passwd.ino, passwd.nlink, passwd.mtimeMs]);
  });

  it('symlinks inside a snapshot are not followed by usage, commit, diff, copy-on-prepare or removal', async () => {
    const conn = await leased('links');
    const sn = conn.service(SnapshotsDefinition);
    const outsideBefore = await snapshotTree(outside, { dirMtimes: true, nlink: true });
    for (const snapshotter of ['overlayfs', 'native']) {
      const { mounts } = await sn.prepare({ snapshotter, key: `links-${snapshotter}`, parent: '' });
      const dir = mounts[0]!.source;
      symlinkSync(outside, join(dir, 'out'));
      symlinkSync(join(outside, 'dir', 'big'), join(dir, 'bigfile'));
      symlinkSync(join(outside, 'dir'), join(dir, 'dirlink'));
      const usage = await sn.usage({ snapshotter, key: `links-${snapshotter}` });
      assert.ok(usage.size < 256 * 1024, `${snapshotter}: usage counted the link targets (${usage.size} bytes)`);
      await sn.commit({ snapshotter, name: `links-c-${snapshotter}`, key: `links-${snapshotter}` });
      // The child copies (native) or overlays (overlayfs) the parent: links stay links.
      const child = await sn.prepare({ snapshotter, key: `links-child-${snapshotter}`, parent: `links-c-${snapshotter}` });
      const view = await sn.view({ snapshotter, key: `links-view-${snapshotter}`, parent: `links-c-${snapshotter}` });
      if (snapshotter === 'native') {
        assert.ok(lstatSync(join(child.mounts[0]!.source, 'out')).isSymbolicLink());
        writeFileSync(join(child.mounts[0]!.source, 'new'), 'x');
      }
      const diff = await conn.service(DiffDefinition).diff({ left: view.mounts, right: child.mounts, mediaType: 'application/vnd.oci.image.layer.v1.tar' });
      assert.ok(diff.diff?.digest?.startsWith('sha256:'));
      for (const key of [`links-view-${snapshotter}`, `links-child-${snapshotter}`, `links-c-${snapshotter}`]) await sn.remove({ snapshotter, key });
    }
    await conn.service(LeasesDefinition).delete({ id: 'links' });
    const report = await settledConsistency(d, { liveTasks: ['sec/sec1'] });
    assert.deepEqual(report.errors, []);
    assert.deepEqual(await snapshotTree(outside, { dirMtimes: true, nlink: true }), outsideBefore, 'the link targets are untouched');
    assert.deepEqual(mountsUnder(d.dir).filter((m) => !m.endsWith('/sec1/rootfs')), []);
  });

  it('a symlink planted in the content ingest directory is not written through', async () => {
    const conn = d.connect('sec');
    const cs = new ContentClient(conn);
    const ingest = join(d.root, 'io.containerd.content.v1.content', 'ingest');
    const plant = (ref: string) => join(ingest, createHash('sha256').update(`sec/1/${ref}`).digest('hex'));
    const keepBefore = readFileSync(join(outside, 'keep'));
    // 1. The ingest's data file is a link to a file outside.
    const p1 = plant('planted-data');
    mkdirSync(p1, { recursive: true });
    writeFileSync(join(p1, 'ref'), 'sec/1/planted-data');
    writeFileSync(join(p1, 'startedat'), new Date().toISOString());
    writeFileSync(join(p1, 'updatedat'), new Date().toISOString());
    symlinkSync(join(outside, 'keep'), join(p1, 'data'));
    // 2. The ingest directory itself is a link to a directory outside.
    const p2 = plant('planted-dir');
    mkdirSync(join(outside, 'ingestdir'));
    writeFileSync(join(outside, 'ingestdir', 'ref'), 'sec/1/planted-dir');
    writeFileSync(join(outside, 'ingestdir', 'data'), 'outside data\n');
    writeFileSync(join(outside, 'ingestdir', 'startedat'), new Date().toISOString());
    writeFileSync(join(outside, 'ingestdir', 'updatedat'), new Date().toISOString());
    symlinkSync(join(outside, 'ingestdir'), p2);
    // 3. The temporary file of the ref file is a link.
    const p3 = plant('planted-tmp');
    mkdirSync(p3, { recursive: true });
    symlinkSync(join(outside, 'keep'), join(p3, 'ref.tmp'));
    const ingestDirBefore = await snapshotTree(join(outside, 'ingestdir'));
    // 4. A "blob" that is a link to a file outside with the same bytes: not content.
    const blobDir = join(d.root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
    mkdirSync(blobDir, { recursive: true });
    symlinkSync(join(outside, 'keep'), join(blobDir, createHash('sha256').update(keepBefore).digest('hex')));
    const keepDigest = `sha256:${createHash('sha256').update(keepBefore).digest('hex')}`;
    await cs.writeBlob('planted-blob', keepBefore, { digest: keepDigest, size: keepBefore.length });
    assert.ok(lstatSync(join(blobDir, keepDigest.slice(7))).isFile(), 'the committed blob replaced the link');

    for (const ref of ['planted-data', 'planted-dir', 'planted-tmp']) {
      const data = Buffer.from(`written through ${ref}\n`);
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      try {
        await cs.writeBlob(ref, data, { digest, size: data.length });
        const chunks: Buffer[] = [];
        for await (const c of cs.read(digest)) chunks.push(c);
        assert.equal(Buffer.concat(chunks).toString(), data.toString(), `${ref}: the blob is what was written`);
      } catch (err) {
        // Refusing is fine too; writing outside is not.
        assert.ok(codeOf(err) !== undefined, String(err));
      }
      await cs.abort(ref).catch(() => undefined);
    }
    assert.deepEqual(readFileSync(join(outside, 'keep')), keepBefore, 'the linked file outside is unchanged');
    assert.deepEqual(await snapshotTree(join(outside, 'ingestdir')), ingestDirBefore, 'the linked directory outside is unchanged');
    const blobs = join(d.root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
    for (const name of readdirSync(blobs)) assert.ok(lstatSync(join(blobs, name)).isFile(), `blob ${name} is a regular file`);
    rmSync(p1, { recursive: true, force: true });
    rmSync(p2, { force: true });
    rmSync(p3, { recursive: true, force: true });
  });

  it('listens on the gRPC and ttrpc sockets only, before and after a workload', async () => {
    const pid = d.process.pid!;
    const expected = [`unix:${d.address}`, `unix:${d.address}.ttrpc`].sort();
    assert.deepEqual(listeningSockets(pid), expected);
    // A workload touching every subsystem: image, container, task, exec, events, content, gc.
    const events = spawn('ctr', ['-a', d.address, 'events'], { stdio: 'ignore' });
    let r = await ctr(d.address, ['run', '--rm', BUSYBOX, 'sec-net', 'sh', '-c', 'echo hi'], { namespace: 'sec' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
    r = await ctr(d.address, ['tasks', 'exec', '--exec-id', 'x1', 'sec1', 'true'], { namespace: 'sec' });
    assert.equal(r.code, 0, r.stderr);
    r = await berth(d.address, ['images', 'check'], { namespace: 'sec' });
    assert.equal(r.code, 0, r.stderr);
    await waitFor('listening sockets after the workload', () => (JSON.stringify(listeningSockets(pid)) === JSON.stringify(expected) ? true : undefined), 5000);
    events.kill('SIGTERM');
  });

  it('SIGUSR1 (containerd\'s stack-dump signal) opens no inspector in the daemon or in berth\'s shim', async () => {
    // Node answers SIGUSR1 with a debugger on 127.0.0.1:9229 that runs any code sent to it:
    // for these root processes, code execution as root for every local user.
    const pid = d.process.pid!;
    const from = d.log().length;
    process.kill(pid, 'SIGUSR1');
    await waitFor('the dump SIGUSR1 asks for', () => (d.log().slice(from).includes('msg="resource dump" signal=SIGUSR1') ? true : undefined), 5000);
    assert.deepEqual(listeningSockets(pid), [`unix:${d.address}`, `unix:${d.address}.ttrpc`].sort());

    let r = await ctr(d.address, ['run', '-d', '--runtime', 'io.containerd.berth.v2', BUSYBOX, 'sec-usr1', 'sleep', '300'], { namespace: 'sec' });
    assert.equal(r.code, 0, r.stderr);
    try {
      const args = (p: number) => readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      const shim = shimOfTask(d.state, 'sec', 'sec-usr1');
      assert.ok(shim, 'the task\'s shim');
      assert.ok(args(shim).some((a) => a.includes('containerd-shim-berth-v2')), 'a shim of berth\'s');
      const before = listeningSockets(shim);
      process.kill(shim, 'SIGUSR1');
      await new Promise((res) => setTimeout(res, 300));
      assert.deepEqual(listeningSockets(shim), before, 'no new listener');
      assert.ok(!before.some((s) => s.startsWith('tcp')), `no TCP listener: ${before.join(', ')}`);
      r = await ctr(d.address, ['tasks', 'exec', '--exec-id', 'after-usr1', 'sec-usr1', 'true'], { namespace: 'sec' });
      assert.equal(r.code, 0, `the shim still serves: ${r.stderr}`);
    } finally {
      await ctr(d.address, ['tasks', 'kill', '-s', 'SIGKILL', 'sec-usr1'], { namespace: 'sec' });
      await waitFor('the task to stop', async () => ((await ctr(d.address, ['tasks', 'rm', 'sec-usr1'], { namespace: 'sec' })).code === 0 ? true : undefined), 10_000);
      await ctr(d.address, ['containers', 'rm', 'sec-usr1'], { namespace: 'sec' });
    }
  });
});
