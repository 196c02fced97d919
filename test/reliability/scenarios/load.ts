/**
 * Load: concurrent `ctr run --rm` loops (each run checks its output and exit status) and
 * pull/remove loops against a local registry, for a configurable time. berthd's open
 * descriptors, resident memory, event-loop handles and timers (its SIGUSR2 resource dump),
 * mounts below its directories and shim processes are measured after a warm-up and again
 * after the load has stopped and the daemon has settled: none may have grown beyond a small
 * tolerance, and the metadata must still match the disk.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { berth, ctr, startDaemon, type TestDaemon } from '../../helpers/daemon.js';
import { BUSYBOX, makeBusyboxArchive } from '../../helpers/fixtures.js';
import {
  forceGc, listeningSockets, mountsUnder, procStats, resourceDump, settledConsistency, shimPids, sleep, taskShimPids, waitFor, type ResourceDump,
} from '../../helpers/reliability.js';
import { startRegistry, type RunningRegistry } from '../../integration/client/remotes/helpers.js';
import { baseLayer, buildImage, pushFixture } from '../../unit/client/images/fixtures.js';
import { ImagesDefinition } from '../../../api/gen/services/images/v1/images.js';

export interface LoadOptions {
  /** How long the load runs. */
  durationMs: number;
  /** Concurrent `ctr run --rm` loops. */
  runners: number;
  /** Concurrent pull/remove loops. */
  pullers: number;
}


interface Sample {
  at: string;
  fds: number;
  rssMiB: number;
  heapMiB: number;
  handles: number;
  timers: number;
  mounts: number;
  shims: number;
}

export function loadSuite(o: LoadOptions): void {
  describe(`load: ${o.runners} ctr run --rm loops and ${o.pullers} pull/rm loops for ${(o.durationMs / 1000).toFixed(0)} s`, { timeout: o.durationMs + 300_000 }, () => {
    let d: TestDaemon;
    let reg: RunningRegistry;
    let work: string;
    let ref: string;

    before(async () => {
      work = mkdtempSync(join(tmpdir(), 'berth-load-'));
      const archive = join(work, 'busybox.oci.tar');
      makeBusyboxArchive(archive);
      [d, reg] = await Promise.all([startDaemon(), startRegistry()]);
      ref = await pushFixture(reg.host, 'load/img', 'v1', buildImage([baseLayer(), [{ path: 'payload', data: Buffer.alloc(512 << 10, 7) }]]));
      const r = await ctr(d.address, ['images', 'import', archive], { namespace: 'load' });
      assert.equal(r.code, 0, r.stderr);
    });
    after(async () => {
      for (const pid of d ? shimPids(d.address) : []) process.kill(pid, 'SIGKILL');
      await Promise.allSettled([d?.dispose(), reg?.stop()]);
      if (work) rmSync(work, { recursive: true, force: true });
    });

    const sample = async (at: string): Promise<Sample & { dump: ResourceDump }> => {
      const pid = d.process.pid!;
      const st = procStats(pid);
      const dump = await resourceDump(d);
      return {
        at, fds: st.fds, rssMiB: +(st.rss / 2 ** 20).toFixed(1), heapMiB: +(dump.heapUsed / 2 ** 20).toFixed(1), handles: dump.handles,
        timers: dump.timers, mounts: mountsUnder(d.dir).length, shims: taskShimPids(d.address).length, dump,
      };
    };

    /** Waits until no shim of the daemon is left and a collection ran, then a quiet moment. */
    const settle = async () => {
      await waitFor('every task shim to exit', () => (taskShimPids(d.address).length === 0 ? true : undefined), 30_000, 100);
      await forceGc(d);
      await sleep(3000);
    };

    it('resources after the load are what they were before it', async (t) => {
      // ctr 1.6 itself sometimes misses a short-lived container's output under this load (the
      // same loops against containerd 1.6 lost 3 of 1,395): output lost with the right exit
      // status is counted apart and bounded, everything else is a failure.
      let lostOutput = 0;
      const runOnce = async (id: string, n: number) => {
        const r = await ctr(d.address, ['run', '--rm', BUSYBOX, id, 'sh', '-c', `echo out-${n}; exit ${n % 3}`], { namespace: 'load' });
        const detail = `${id}: exit ${r.code} (want ${n % 3}), stdout ${JSON.stringify(r.stdout)}, stderr ${r.stderr.trim().slice(0, 300)}`;
        if (r.code === n % 3 && r.stdout === '' && r.stderr === '') {
          lostOutput++;
          return { ok: true, detail };
        }
        return { ok: r.code === n % 3 && r.stdout === `out-${n}\n`, detail };
      };
      const pullOnce = async (ns: string, n: number) => {
        const tool = n % 2 ? berth : ctr;
        const p = await tool(d.address, ['images', 'pull', '--plain-http', ref], { namespace: ns });
        if (p.code !== 0) return { ok: false, detail: `pull in ${ns}: ${p.stderr.trim().slice(0, 300)}` };
        await d.connect(ns).service(ImagesDefinition).delete({ name: ref, sync: n % 4 === 0 });
        return { ok: true, detail: '' };
      };
      // Warm-up: every code path loaded, caches filled, then the baseline.
      for (let i = 0; i < 3; i++) assert.ok((await runOnce(`warm${i}`, i)).ok);
      assert.ok((await pullOnce('warm', 0)).ok);
      await settle();
      const start = await sample('start');
      const listening = listeningSockets(d.process.pid!);
      const samples: Sample[] = [start];

      const deadline = Date.now() + o.durationMs;
      const failures: string[] = [];
      let runs = 0;
      let pulls = 0;
      const runner = async (w: number) => {
        for (let i = 0; Date.now() < deadline; i++) {
          const r = await runOnce(`w${w}-${i}`, w + i);
          runs++;
          if (!r.ok) failures.push(r.detail);
        }
      };
      const puller = async (w: number) => {
        for (let i = 0; Date.now() < deadline; i++) {
          const r = await pullOnce(`pull${w}`, i).catch((err: Error) => ({ ok: false, detail: err.message }));
          pulls++;
          if (!r.ok) failures.push(r.detail);
        }
      };
      const sampler = (async () => {
        while (Date.now() < deadline) {
          await sleep(Math.min(30_000, Math.max(5000, o.durationMs / 10)));
          if (Date.now() < deadline) samples.push(await sample(`${Math.round((Date.now() - deadline + o.durationMs) / 1000)} s`));
        }
      })();
      await Promise.all([
        ...Array.from({ length: o.runners }, (_, w) => runner(w)),
        ...Array.from({ length: o.pullers }, (_, w) => puller(w)),
        sampler,
      ]);
      await settle();
      const end = await sample('end');
      samples.push(end);

      for (const s of samples) {
        t.diagnostic(`${s.at}: fds=${s.fds} rss=${s.rssMiB}MiB heap=${s.heapMiB}MiB handles=${s.handles} timers=${s.timers} mounts=${s.mounts} shims=${s.shims}`);
      }
      t.diagnostic(`${runs} runs (${lostOutput} with output lost by ctr), ${pulls} pull/rm cycles, ${failures.length} failures; resources at start ${JSON.stringify(start.dump.resources)}, at end ${JSON.stringify(end.dump.resources)}`);
      assert.deepEqual(failures.slice(0, 5), [], `${failures.length} of ${runs + pulls} operations failed`);
      assert.ok(lostOutput <= Math.max(2, runs * 0.01), `ctr lost the output of ${lostOutput} of ${runs} runs`);
      assert.ok(runs >= o.runners, 'every runner ran');
      assert.ok(end.fds <= start.fds + 4, `descriptors grew from ${start.fds} to ${end.fds}`);
      assert.ok(end.handles <= start.handles + 4, `event-loop handles grew from ${start.handles} to ${end.handles}`);
      assert.ok(end.timers <= start.timers + 2, `timers grew from ${start.timers} to ${end.timers}`);
      assert.equal(end.mounts, start.mounts, 'mounts below the daemon directories');
      assert.equal(end.shims, 0, 'shims left running');
      // The heap is measured after a quiet period; garbage not yet collected makes it noisy.
      assert.ok(end.rssMiB <= start.rssMiB * 1.5 + 48, `resident memory grew from ${start.rssMiB} to ${end.rssMiB} MiB`);
      assert.deepEqual(listeningSockets(d.process.pid!), listening, 'listening sockets');
      const report = await settledConsistency(d, { timeoutMs: 30_000 });
      assert.deepEqual(report.errors, []);
      assert.deepEqual(report.garbage, []);
    });
  });
}
