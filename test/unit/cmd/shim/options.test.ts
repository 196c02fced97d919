import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Options } from '../../../../api/gen/runc/options/oci.js';
import {
  decodeOptions, emptyOptions, optionsFromJson, optionsToJson, readBundleOptions, writeBundleOptions,
} from '../../../../cmd/containerd-shim-berth-v2/options.js';
import { tempDir } from '../../../helpers/tmp.js';

test('options.json is Go encoding/json: snake_case, zero values omitted', () => {
  assert.equal(optionsToJson(emptyOptions()), '{}');
  const options = Options.fromPartial({ binaryName: 'crun', root: '/r', systemdCgroup: true, ioUid: 5 });
  assert.deepEqual(JSON.parse(optionsToJson(options)), { binary_name: 'crun', root: '/r', systemd_cgroup: true, io_uid: 5 });
  assert.deepEqual(optionsFromJson(optionsToJson(options)), options);
});

test('decodeOptions reads containerd.runc.v1.Options and ignores other types', () => {
  const value = Buffer.from(Options.encode(Options.fromPartial({ root: '/x', noPivotRoot: true })).finish());
  assert.equal(decodeOptions({ typeUrl: 'containerd.runc.v1.Options', value }).root, '/x');
  assert.equal(decodeOptions({ typeUrl: 'type.googleapis.com/containerd.runc.v1.Options', value }).noPivotRoot, true);
  assert.deepEqual(decodeOptions({ typeUrl: 'runtimeoptions.v1.Options', value: Buffer.from([0x0a, 0x01, 0x41]) }), emptyOptions());
  assert.deepEqual(decodeOptions(undefined), emptyOptions());
});

test('bundle files: options.json and runtime, read back by the delete action', () => {
  const bundle = tempDir('shim-opts-');
  assert.deepEqual(readBundleOptions(bundle), emptyOptions());
  writeBundleOptions(bundle, Options.fromPartial({ binaryName: 'runc-custom', root: '/run/x' }));
  assert.equal(readFileSync(join(bundle, 'runtime'), 'utf8'), 'runc-custom');
  const back = readBundleOptions(bundle);
  assert.equal(back.binaryName, 'runc-custom');
  assert.equal(back.root, '/run/x');
  writeFileSync(join(bundle, 'options.json'), '{}');
  writeFileSync(join(bundle, 'runtime'), '');
  assert.deepEqual(readBundleOptions(bundle), emptyOptions());
});
