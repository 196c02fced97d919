import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { canConnect, shimGroup, socketAddress } from '../../../../cmd/containerd-shim-berth-v2/address.js';
import { tempDir } from '../../../helpers/tmp.js';

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

test('socket address: sha256 of "<grpc address>/<ns>/<group>" under /run/containerd/s', () => {
  // The value observed from containerd 1.6 for this input (CONTAINERD-FACTS §4).
  assert.equal(socketAddress('/tmp/ctd/ctd.sock', 'default', 'c3'), `unix:///run/containerd/s/${hex('/tmp/ctd/ctd.sock/default/c3')}`);
  // filepath.Join cleaning.
  assert.equal(socketAddress('/tmp//ctd/ctd.sock', 'default', 'c3'), socketAddress('/tmp/ctd/ctd.sock', 'default', 'c3'));
});

test('group annotations choose the shim, in containerd order', () => {
  const dir = tempDir('shim-group-');
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ annotations: { 'io.kubernetes.cri.sandbox-id': 'sb', 'io.containerd.runc.v2.group': 'g' } }));
  assert.equal(shimGroup('c1', config), 'g');
  writeFileSync(config, JSON.stringify({ annotations: { 'io.kubernetes.cri.sandbox-id': 'sb' } }));
  assert.equal(shimGroup('c1', config), 'sb');
  writeFileSync(config, JSON.stringify({ ociVersion: '1.0.2' }));
  assert.equal(shimGroup('c1', config), 'c1');
});

test('canConnect tells a live socket from a dead one', async () => {
  const dir = tempDir('shim-conn-');
  const path = join(dir, 's.sock');
  assert.equal(await canConnect(path), false);
  const server = createServer((s) => s.destroy());
  await new Promise<void>((resolve) => server.listen(path, resolve));
  assert.equal(await canConnect(path), true);
  await new Promise((resolve) => server.close(resolve));
});
