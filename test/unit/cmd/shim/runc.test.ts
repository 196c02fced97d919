import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Runc, RuncError } from '../../../../cmd/containerd-shim-berth-v2/runc.js';
import { fakeRunc } from './fake-runc.js';
import { tempDir } from '../../../helpers/tmp.js';

const fake = fakeRunc();
const bundle = tempDir('runc-bundle-');

test('global flags: root/<namespace>, log.json in JSON format, systemd cgroups', async () => {
  const runc = new Runc({ command: fake.path, root: '/run/x', namespace: 'ns', bundle, systemdCgroup: true });
  assert.deepEqual(runc.globalArgs(), ['--root', '/run/x/ns', '--log', join(bundle, 'log.json'), '--log-format', 'json', '--systemd-cgroup']);
  assert.deepEqual(new Runc({ namespace: 'default', bundle }).globalArgs().slice(0, 2), ['--root', '/run/containerd/runc/default']);
  assert.equal(new Runc({ namespace: 'default', bundle }).command, 'runc');
});

test('subcommand argv as go-runc builds it', async () => {
  const runc = new Runc({ command: fake.path, namespace: 'ns', bundle });
  fake.setCommand('c1', 'sleep 5');
  await runc.create('c1', bundle, { pidFile: join(bundle, 'init.pid'), noPivot: true, consoleSocket: '/tmp/pty.sock' });
  await runc.start('c1');
  await runc.kill('c1', 15, true);
  await runc.update('c1', Buffer.from('{"pids":{"limit":5}}'));
  assert.deepEqual(await runc.ps('c1'), [Number(readFileSync(join(bundle, 'init.pid'), 'utf8'))]);
  await runc.delete('c1', true);
  const calls = fake.calls().map((argv) => argv.slice(6));
  assert.deepEqual(calls, [
    ['create', '--bundle', bundle, '--pid-file', join(bundle, 'init.pid'), '--console-socket', '/tmp/pty.sock', '--no-pivot', 'c1'],
    ['start', 'c1'],
    ['kill', '--all', 'c1', '15'],
    ['update', '--resources', '-', 'c1'],
    ['ps', '--format', 'json', 'c1'],
    ['delete', '--force', 'c1'],
  ]);
  assert.equal(readFileSync(join(fake.dir, 'update-c1'), 'utf8'), '{"pids":{"limit":5}}');
});

test('failures carry the output; the last error in log.json is the runtime error', async () => {
  const runc = new Runc({ command: fake.path, namespace: 'ns', bundle });
  await assert.rejects(runc.start('missing'), (err: unknown) => err instanceof RuncError && /exit status 1: container missing does not exist/.test(err.message));
  await assert.rejects(runc.create('fail', bundle, { pidFile: join(bundle, 'x.pid') }), RuncError);
  assert.equal(await runc.lastError(), 'fake runc: cannot create container');
  writeFileSync(join(bundle, 'log.json'), '{"level":"error","msg":"first"}\n{torn\n{"level":"warning","msg":"w"}\n{"level":"error","msg":"second"}\n');
  assert.equal(await runc.lastError(), 'second');
  await assert.rejects(new Runc({ command: join(bundle, 'no-such-runc'), namespace: 'ns', bundle }).start('x'), /ENOENT/);
});
