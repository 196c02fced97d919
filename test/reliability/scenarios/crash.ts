/**
 * Crash consistency: berthd is killed with SIGKILL at a random point (seeded, so a failure
 * replays with BERTH_SEED) while it pulls and unpacks an image, commits a snapshot, writes a
 * diff, creates a container, or starts and runs a task. After each restart the on-disk state
 * is checked against the metadata (test/helpers/reliability.ts: every content record has its
 * blob with the right size and digest, every committed snapshot its backend record and
 * directory, nothing unaccounted for once boot cleanup and one collection ran, nothing left
 * mounted), and the interrupted operation is shown to be recoverable: the pull completes and
 * `berth images check` says complete, the commit can be redone or was done, the container id
 * can be used again, a live task is reattached and reports its real exit status.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { berth, ctr, startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { BUSYBOX, makeBusyboxArchive } from '../../helpers/fixtures.js';
import {
  checkConsistency, forceGc, prng, describeProcess, settledConsistency, shimPids, spareShimPids, sleep, taskShimPids, waitFor, type ConsistencyReport,
} from '../../helpers/reliability.js';
import { startRegistry, type RunningRegistry } from '../../integration/client/remotes/helpers.js';
import { baseLayer, buildImage, pushFixture, type TarSpec } from '../../unit/client/images/fixtures.js';
import { ContainersDefinition } from '../../../api/gen/services/containers/v1/containers.js';
import { DiffDefinition } from '../../../api/gen/services/diff/v1/diff.js';
import { ImagesDefinition } from '../../../api/gen/services/images/v1/images.js';
import { LeasesDefinition } from '../../../api/gen/services/leases/v1/leases.js';
import { SnapshotsDefinition } from '../../../api/gen/services/snapshots/v1/snapshots.js';
import { TasksDefinition } from '../../../api/gen/services/tasks/v1/tasks.js';
import { Status } from '../../../api/gen/types/task/task.js';

export interface CrashOptions {
  /** Kills per kill point. */
  iterations: number;
  seed: number;
}


/** What one kill did, for the report in docs/RELIABILITY.md. */
interface KillRecord {
  point: string;
  delayMs: number;
  /** How the interrupted client call ended (first line). */
  client: string;
  /** What was found after the restart. */
  found: string;
}

/** Deterministic pseudo-random bytes (incompressible layer data without crypto randomness). */
function bytes(rng: ReturnType<typeof prng>, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE(Math.floor(rng.next() * 0x100000000), Math.min(i, n - 4));
  return b;
}

/** Three layers, ~8 MiB compressed, one of them with many small files (a slow unpack). */
function crashImage(rng: ReturnType<typeof prng>) {
  const many: TarSpec[] = [{ path: 'many/', type: 'Directory' }];
  for (let i = 0; i < 400; i++) many.push({ path: `many/f${i}`, data: `file ${i}\n`.repeat(20) });
  return buildImage([
    [...baseLayer(), { path: 'data/', type: 'Directory' }, { path: 'data/one.bin', data: bytes(rng, 3 << 20) }],
    [...many, { path: 'data/', type: 'Directory' }, { path: 'data/two.bin', data: bytes(rng, 3 << 20) }],
    [{ path: 'data/', type: 'Directory' }, { path: 'data/three.bin', data: bytes(rng, 2 << 20) }],
  ]);
}

const firstLine = (s: string) => s.trim().split('\n').filter(Boolean).pop()?.slice(0, 160) ?? '';

/** Asserts a settled report is clean, naming the kill that led to it. */
function assertClean(report: ConsistencyReport, what: string, allowGarbage: (g: string) => boolean = () => false): void {
  assert.deepEqual(report.errors, [], `${what}: metadata and disk disagree`);
  assert.deepEqual(report.garbage.filter((g) => !allowGarbage(g)), [], `${what}: debris left after boot cleanup and a collection`);
}

/** Deletes every lease of a namespace (what their expiry would do) and collects. */
async function dropLeases(d: TestDaemon, ns: string): Promise<void> {
  const leases = d.connect(ns).service(LeasesDefinition);
  for (const l of (await leases.list({})).leases) await leases.delete({ id: l.id });
  await forceGc(d);
}

export function crashSuite(o: CrashOptions): { records: KillRecord[] } {
  const records: KillRecord[] = [];
  const rng = prng(o.seed);

  describe(`crash consistency: kill -9 at random points (seed ${o.seed}, ${o.iterations} kills per point)`, { timeout: 1_800_000 }, () => {
    let reg: RunningRegistry;
    let work: string;
    let ref: string;
    let archive: string;

    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'berth-crash-'));
      archive = join(work, 'busybox.oci.tar');
      makeBusyboxArchive(archive);
      reg = await startRegistry();
      ref = await pushFixture(reg.host, 'crash/pull', 'v1', crashImage(prng(o.seed ^ 0x5eed)));
    });
    after(async () => {
      await reg?.stop();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it('pull and unpack: metadata matches disk after every crash, the pull resumes, images check is complete', async () => {
      const d = await startDaemon();
      try {
        // ctr 1.6 can hang for good when the daemon dies under its pull (its progress loop
        // waits on a fetch that never reports): the interrupted pull gets a time limit.
        const pull = (tool: 'berth' | 'ctr', ns: string, timeoutMs?: number) =>
          (tool === 'berth' ? berth : ctr)(d.address, ['images', 'pull', '--plain-http', ref], { namespace: ns, timeoutMs });
        // A clean pull sets the window the kills are spread over.
        const t0 = performance.now();
        const probe = await pull('berth', 'probe');
        assert.equal(probe.code, 0, probe.stderr);
        const windowMs = performance.now() - t0;
        await d.connect('probe').service(ImagesDefinition).delete({ name: ref, sync: true });
        await dropLeases(d, 'probe');
        for (let i = 0; i < o.iterations; i++) {
          const ns = `pull${i}`;
          const tool = rng.pick(['berth', 'ctr'] as const);
          const delayMs = rng.next() * windowMs;
          const pulling = pull(tool, ns, 20_000);
          await sleep(delayMs);
          await d.kill9();
          const first = await pulling;
          await d.restart();
          const what = `pull #${i} (${tool}) killed after ${delayMs.toFixed(0)} ms`;
          const report = await settledConsistency(d, { timeoutMs: 30_000 });
          assertClean(report, what);
          records.push({ point: `pull(${tool})`, delayMs, client: first.code === 0 ? 'completed' : firstLine(first.stderr), found: JSON.stringify(report.counts) });
          const again = await pull(tool, ns);
          assert.equal(again.code, 0, `${what}: pulling again failed: ${again.stderr}`);
          const check = await berth(d.address, ['images', 'check'], { namespace: ns });
          assert.equal(check.code, 0, check.stderr);
          assert.match(check.stdout, /complete \((\d+)\/\1\)/, `${what}: images check:\n${check.stdout}`);
          assertClean(await settledConsistency(d, { timeoutMs: 30_000 }), `${what}, pulled again`);
          // Everything the namespace holds is collectable: remove the image and the
          // interrupted pull's lease, and the daemon's stores are empty again.
          await d.connect(ns).service(ImagesDefinition).delete({ name: ref, sync: true });
          await dropLeases(d, ns);
          const empty = await waitFor('empty stores', async () => {
            const r = await checkConsistency(d);
            return r.counts.blobs === 0 && r.counts.backendSnapshots === 0 && r.counts.ingests === 0 && r.garbage.length === 0 ? r : undefined;
          }, 30_000);
          assertClean(empty, `${what}, removed`);
        }
      } finally {
        await d.dispose();
      }
    });

    it('snapshot commit and diff: committed or still active, never half; no temporary mount survives', async () => {
      const d = await startDaemon();
      const NS = 'commit';
      try {
        const conn = () => {
          const c = d.connect(NS);
          c.lease = 'work';
          return c;
        };
        await d.connect(NS).service(LeasesDefinition).create({ id: 'work', labels: {} });
        const fill = (dir: string, n: number) => {
          for (let k = 0; k < n; k++) {
            mkdirSync(join(dir, `d${k % 40}`), { recursive: true });
            writeFileSync(join(dir, `d${k % 40}`, `f${k}`), `content ${k}\n`);
          }
        };
        // The base every work snapshot sits on (so a diff has both sides mounted).
        const base = await conn().service(SnapshotsDefinition).prepare({ snapshotter: 'overlayfs', key: 'base-active', parent: '' });
        fill(base.mounts[0]!.source, 200);
        await conn().service(SnapshotsDefinition).commit({ snapshotter: 'overlayfs', name: 'base', key: 'base-active' });
        const timed = async (fn: () => Promise<unknown>) => {
          const t = performance.now();
          await fn();
          return performance.now() - t;
        };
        const probeWork = await conn().service(SnapshotsDefinition).prepare({ snapshotter: 'overlayfs', key: 'probe', parent: 'base' });
        fill(overlayUpper(probeWork.mounts), 3000);
        const view = await conn().service(SnapshotsDefinition).view({ snapshotter: 'overlayfs', key: 'base-view', parent: 'base' });
        const diffMs = await timed(() => conn().service(DiffDefinition).diff({ left: view.mounts, right: probeWork.mounts, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }));
        const commitMs = await timed(() => conn().service(SnapshotsDefinition).commit({ snapshotter: 'overlayfs', name: 'probe-c', key: 'probe' }));
        await conn().service(SnapshotsDefinition).remove({ snapshotter: 'overlayfs', key: 'probe-c' });

        for (let i = 0; i < o.iterations; i++) {
          const kind = i % 2 === 0 ? 'commit' : 'diff';
          const key = `work${i}`;
          const work = await conn().service(SnapshotsDefinition).prepare({ snapshotter: 'overlayfs', key, parent: 'base' });
          fill(overlayUpper(work.mounts), 3000);
          const delayMs = rng.next() * (kind === 'commit' ? commitMs : diffMs) * 1.2;
          const v = kind === 'diff' ? await conn().service(SnapshotsDefinition).mounts({ snapshotter: 'overlayfs', key: 'base-view' }) : undefined;
          const op = kind === 'commit'
            ? conn().service(SnapshotsDefinition).commit({ snapshotter: 'overlayfs', name: `done${i}`, key })
            : conn().service(DiffDefinition).diff({ left: v!.mounts, right: work.mounts, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' });
          const settled = op.then(() => 'completed', (err: Error) => firstLine(err.message));
          await sleep(delayMs);
          await d.kill9();
          const client = await settled;
          await d.restart();
          const what = `${kind} #${i} killed after ${delayMs.toFixed(0)} ms`;
          // A crash between the backend's commit and the metadata's leaves the active record
          // without its backend snapshot (containerd has the same window); it is leased, so it
          // is reported and removed below, never mistaken for data.
          const report = await settledConsistency(d, { timeoutMs: 30_000 });
          assertClean(report, what, (g) => kind === 'commit' && g.includes(`/overlayfs/${key}: leased record without backend`));
          const sn = conn().service(SnapshotsDefinition);
          const has = async (k: string) => sn.stat({ snapshotter: 'overlayfs', key: k }).then(() => true, () => false);
          let found: string;
          if (kind === 'commit') {
            const committed = await has(`done${i}`);
            const active = await has(key);
            assert.ok(!(committed && active), `${what}: both the active and the committed snapshot exist`);
            if (committed) {
              found = 'committed';
              const child = await sn.prepare({ snapshotter: 'overlayfs', key: `check${i}`, parent: `done${i}` });
              assert.ok(child.mounts.length === 1);
              await sn.remove({ snapshotter: 'overlayfs', key: `check${i}` });
              await sn.remove({ snapshotter: 'overlayfs', key: `done${i}` });
            } else if (active) {
              found = 'still active; committed on retry';
              await sn.commit({ snapshotter: 'overlayfs', name: `done${i}`, key });
              await sn.remove({ snapshotter: 'overlayfs', key: `done${i}` });
            } else {
              found = 'active record without backend (commit window)';
              await sn.remove({ snapshotter: 'overlayfs', key });
            }
          } else {
            found = 'diff interrupted; snapshot intact';
            assert.ok(await has(key), `${what}: the diffed snapshot is gone`);
            await sn.remove({ snapshotter: 'overlayfs', key });
          }
          records.push({ point: kind, delayMs, client, found });
          assertClean(await settledConsistency(d, { timeoutMs: 30_000 }), `${what}, cleaned up`);
        }
      } finally {
        await d.dispose();
      }
    });

    it('container create and task start: records consistent, ids reusable, live tasks reattached with their exit status, no stray shims', async () => {
      const d = await startDaemon();
      const NS = 'crashtasks';
      try {
        let r = await ctr(d.address, ['images', 'import', archive], { namespace: NS });
        assert.equal(r.code, 0, r.stderr);
        const timed = async (args: string[]) => {
          const t = performance.now();
          const res = await ctr(d.address, args, { namespace: NS });
          assert.equal(res.code, 0, res.stderr);
          return performance.now() - t;
        };
        const createMs = await timed(['containers', 'create', BUSYBOX, 'probe', 'true']);
        await timed(['containers', 'rm', 'probe']);
        const runMs = await timed(['run', '-d', BUSYBOX, 'probe', 'sh', '-c', 'exit 7']);
        await ctr(d.address, ['tasks', 'rm', '-f', 'probe'], { namespace: NS });
        await timed(['containers', 'rm', 'probe']);
        const baseline = (await settledConsistency(d)).counts.backendSnapshots;

        for (let i = 0; i < o.iterations; i++) {
          const kind = (['create', 'run', 'running'] as const)[i % 3]!;
          const id = `c${i}`;
          let delayMs: number;
          let client: string;
          if (kind === 'running') {
            // A task that lives across the crash and exits while the daemon is down or back.
            r = await ctr(d.address, ['run', '-d', BUSYBOX, id, 'sh', '-c', 'sleep 2; exit 7'], { namespace: NS });
            assert.equal(r.code, 0, r.stderr);
            delayMs = rng.next() * 3000;
            await sleep(delayMs);
            await d.kill9();
            client = 'task running';
            await sleep(rng.next() * 1500);
          } else {
            const args = kind === 'create' ? ['containers', 'create', BUSYBOX, id, 'true'] : ['run', '-d', BUSYBOX, id, 'sh', '-c', 'sleep 1; exit 7'];
            delayMs = rng.next() * (kind === 'create' ? createMs : runMs) * 1.1;
            const running = ctr(d.address, args, { namespace: NS });
            await sleep(delayMs);
            await d.kill9();
            const res = await running;
            client = res.code === 0 ? 'completed' : firstLine(res.stderr);
          }
          await d.restart();
          const what = `${kind} #${i} killed after ${delayMs.toFixed(0)} ms`;
          const conn = d.connect(NS);
          const tasks = conn.service(TasksDefinition);
          const live = (await tasks.list({})).tasks.map((t) => `${NS}/${t.id}`);
          assertClean(await settledConsistency(d, { liveTasks: live, timeoutMs: 30_000 }), what);
          const container = await conn.service(ContainersDefinition).get({ id }).then((x) => x.container, () => undefined);
          let found = container ? 'container' : 'no container';
          if (container) {
            // The container's snapshot exists whenever the container does.
            await conn.service(SnapshotsDefinition).stat({ snapshotter: container.snapshotter, key: container.snapshotKey });
            const task = (await tasks.list({})).tasks.find((t) => t.id === id);
            if (task) {
              found += `, task ${Status[task.status]}`;
              let startable = true;
              if (task.status === Status.CREATED) {
                // Killed while runc create ran: the shim cancels the request with its
                // connection, runc init dies with runc, and the shim still records the task as
                // created (containerd behaves alike; docs/RELIABILITY.md). It must be removable.
                startable = await tasks.start({ containerId: id }).then(() => true, (err: Error) => {
                  if (!/container process is already dead/.test(err.message)) throw err;
                  found += ' (runc init gone with the cancelled create)';
                  return false;
                });
              }
              if (kind !== 'create' && startable) {
                const exit = await tasks.wait({ containerId: id }, { timeoutMs: 15_000 });
                assert.equal(exit.exitStatus, 7, `${what}: exit status after reattaching`);
                found += ' → exit 7';
              }
              await tasks.delete({ containerId: id });
            } else if (kind === 'running') {
              assert.fail(`${what}: the running task was not reattached`);
            }
            r = await ctr(d.address, ['containers', 'rm', id], { namespace: NS });
            assert.equal(r.code, 0, r.stderr);
          }
          // A snapshot prepared for a container that was never recorded stays under the killed
          // client's lease (as in containerd) until the lease expires: expire it now.
          await dropLeases(d, NS);
          records.push({ point: kind, delayMs, client, found });
          // The id is free again and runs to its exit status.
          r = await ctr(d.address, ['run', '--rm', BUSYBOX, id, 'sh', '-c', 'exit 7'], { namespace: NS });
          assert.equal(r.code, 7, `${what}: running ${id} again: ${r.stderr}`);
          await forceGc(d);
          const settled = await waitFor('the interrupted snapshots to be collected', async () => {
            const rep = await settledConsistency(d);
            return rep.counts.backendSnapshots === baseline ? rep : undefined;
          }, 15_000).catch(async () => settledConsistency(d));
          assertClean(settled, `${what}, cleaned up`);
          assert.equal(settled.counts.backendSnapshots, baseline, `${what}: snapshots left behind`);
          await waitFor('no task shims of this daemon', () => (taskShimPids(d.address).length === 0 ? true : undefined), 10_000).catch((err: Error) => {
            throw new Error(`${err.message} (${what}): ${taskShimPids(d.address).map(describeProcess).join('; ')}`);
          });
          // The one shim left may be the spare for the next task (spares.ts), and only one.
          assert.ok(spareShimPids(d.address).length <= 1, `${what}: spare shims ${spareShimPids(d.address).join(', ')}`);
        }
      } finally {
        for (const pid of shimPids(d.address)) process.kill(pid, 'SIGKILL');
        await d.dispose();
      }
    });
    it('kill points exercised', (t) => {
      for (const r of records) t.diagnostic(`kill ${r.point} after ${r.delayMs.toFixed(0)} ms: client "${r.client}"; after restart: ${r.found}`);
      assert.ok(records.length > 0);
    });
  });
  return { records };
}

/** The upper directory of an overlay mount (the active snapshot's own files). */
function overlayUpper(mounts: { type: string; source: string; options: string[] }[]): string {
  const m = mounts[0]!;
  if (m.type === 'bind') return m.source;
  const upper = m.options.find((x) => x.startsWith('upperdir='));
  assert.ok(upper, 'an active overlay snapshot has an upper dir');
  return upper.slice('upperdir='.length);
}
