/**
 * Image-based runs: the busybox image (built from the host's busybox-static by
 * scripts/make-image.mjs) imported with ctr, then run with `ctr run` and `berth run`. berth
 * builds the same spec ctr does, mounts the snapshot, and cleans up snapshot and container
 * with --rm.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { BUSYBOX, makeBusyboxArchive } from '../helpers/fixtures.js';
import { TasksDefinition } from '../../api/gen/services/tasks/v1/tasks.js';

describe('image-based tasks', () => {
  let d: TestDaemon;
  let image: string;
  const NS = `timg-${process.pid}`;
  const C = (...args: string[]) => ctr(d.address, args, { namespace: NS });
  const B = (...args: string[]) => berth(d.address, args, { namespace: NS });

  before(async () => {
    d = await startDaemon();
    image = BUSYBOX;
    const r = await C('images', 'import', makeBusyboxArchive(join(d.dir, 'busybox.tar')));
    assert.equal(r.code, 0, `import: ${r.stderr}`);
  });
  after(async () => {
    for (const id of ['ci1', 'bi1', 'gr1']) {
      await C('tasks', 'kill', '-s', 'SIGKILL', id);
      await C('tasks', 'rm', '-f', id);
      await C('containers', 'rm', id);
    }
    await d?.dispose();
  });

  test('ctr run --rm and berth run --rm: output, exit status, nothing left behind', async () => {
    let r = await C('run', '--rm', image, 'c1', 'echo', 'hello-image');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello-image\n');
    r = await B('run', '--rm', image, 'b1', 'sh', '-c', 'echo $PATH; exit 7');
    assert.equal(r.code, 7, r.stderr);
    assert.equal(r.stdout, '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n', 'PATH from the image config');
    assert.equal((await C('containers', 'ls', '-q')).stdout, '');
    const snaps = (await C('snapshots', 'ls')).stdout;
    assert.doesNotMatch(snaps, /^(c1|b1) /m);
  });

  test('run --log-uri file://: the task\'s stdout and stderr go to the file, the exit status comes back', async () => {
    for (const [tool, run] of [['ctr', C], ['berth', B]] as const) {
      const file = join(d.dir, `${tool}.log`);
      // stderr first, and a pause before stdout: containerd 1.6's runc shim closes the shared
      // file once stdout ends, so a stderr line still being copied then is lost (2 runs in 40
      // with `echo out; echo err >&2` against real containerd as well).
      const r = await run('run', '--rm', '--log-uri', `file://${file}`, image, `log-${tool}`, 'sh', '-c', 'echo err >&2; sleep 0.2; echo out; exit 3');
      assert.equal(r.code, 3, `${tool}: ${r.stderr}`);
      assert.equal(r.stdout, '', `${tool} prints nothing itself`);
      assert.deepEqual((await readFile(file, 'utf8')).split('\n').sort(), ['', 'err', 'out'], tool);
    }
    const bad = await B('run', '--rm', '--log-uri', '/no/scheme', image, 'log-bad', 'true');
    assert.deepEqual([bad.code, bad.stderr], [1, 'berth: invalid log uri "/no/scheme": expected scheme://path (file:// or binary://)\n']);
  });

  test('berth run stores the same container record and spec as ctr run', async () => {
    assert.equal((await C('run', '-d', image, 'ci1', 'sleep', '300')).code, 0);
    const r = await B('run', '-d', image, 'bi1', 'sleep', '300');
    assert.equal(r.code, 0, r.stderr);
    const info = async (id: string) => {
      const j = JSON.parse((await C('containers', 'info', id)).stdout);
      delete j.CreatedAt;
      delete j.UpdatedAt;
      return j;
    };
    const a = await info('ci1');
    const b = await info('bi1');
    assert.equal(a.SnapshotKey, 'ci1');
    assert.equal(b.SnapshotKey, 'bi1');
    a.ID = b.ID = a.SnapshotKey = b.SnapshotKey = 'x';
    a.Spec.linux.cgroupsPath = b.Spec.linux.cgroupsPath = 'x';
    assert.deepEqual(b, a);
    assert.equal(JSON.stringify(b.Spec), JSON.stringify(a.Spec), 'same key order too');
    assert.match((await B('tasks', 'ls')).stdout, /^bi1\s+\d+\s+RUNNING$/m);
    const ex = await B('tasks', 'exec', '--exec-id', 'e1', 'bi1', 'sh', '-c', 'echo in-image-exec');
    assert.equal(ex.stdout, 'in-image-exec\n');
    // The image's stop signal label decides the default kill signal; busybox sleep as pid 1 ignores SIGTERM.
    assert.equal((await B('tasks', 'kill', '-s', 'KILL', 'bi1')).code, 0);
  });

  test('Tasks.Create without rootfs mounts the container snapshot', async () => {
    // (ctr containers create reorders flags, so the command takes none.)
    const r = await C('containers', 'create', image, 'gr1', 'false');
    assert.equal(r.code, 0, r.stderr);
    const tasks = d.connect(NS).service(TasksDefinition);
    const created = await tasks.create({ containerId: 'gr1' });
    assert.ok(created.pid > 0);
    const waited = tasks.wait({ containerId: 'gr1' });
    await tasks.start({ containerId: 'gr1' });
    assert.equal((await waited).exitStatus, 1);
    assert.equal((await tasks.delete({ containerId: 'gr1' })).exitStatus, 1);
    assert.equal((await C('containers', 'rm', 'gr1')).code, 0);
  });
});
