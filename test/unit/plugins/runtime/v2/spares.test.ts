/**
 * Which tasks may take a spare shim: only those whose runtime options and spec `start` would
 * not act on (plugins/runtime/v2/spares.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { optionsAllowSpare, specAllowsSpare } from '../../../../../plugins/runtime/v2/spares.js';
import { Options } from '../../../../../api/gen/runc/options/oci.js';

const runcOptions = (o: Partial<Options>, typeUrl = 'containerd.runc.v1.Options') => ({ typeUrl, value: Options.encode(Options.fromPartial(o)).finish() });
const spec = (o: unknown) => Buffer.from(JSON.stringify(o));

test('runtime options: none, or runc options without a shim cgroup', async () => {
  assert.equal(await optionsAllowSpare(undefined), true);
  assert.equal(await optionsAllowSpare(runcOptions({})), true, 'ctr run sends empty runc options');
  assert.equal(await optionsAllowSpare(runcOptions({ binaryName: 'crun', systemdCgroup: true })), true, 'read by Create, not by start');
  assert.equal(await optionsAllowSpare(runcOptions({}, 'type.googleapis.com/containerd.runc.v1.Options')), true);
  assert.equal(await optionsAllowSpare(runcOptions({ shimCgroup: '/shims' })), false, 'start moves the shim into it');
  assert.equal(await optionsAllowSpare({ typeUrl: 'example.com/other.Options', value: new Uint8Array() }), false, 'another shim\'s options');
  assert.equal(await optionsAllowSpare({ typeUrl: 'containerd.runc.v1.Options', value: Uint8Array.of(0xff, 0xff) }), false, 'undecodable');
});

test('spec: no shim group annotation', () => {
  assert.equal(specAllowsSpare(spec({ ociVersion: '1.0.2' })), true);
  assert.equal(specAllowsSpare(spec({ annotations: { other: 'x' } })), true);
  assert.equal(specAllowsSpare(spec({ annotations: { 'io.containerd.runc.v2.group': 'g1' } })), false);
  assert.equal(specAllowsSpare(spec({ annotations: { 'io.kubernetes.cri.sandbox-id': 'pod' } })), false);
  assert.equal(specAllowsSpare(Buffer.from('not json')), false);
});
