/**
 * The v2 runtime's host-side pieces without a real shim: binary name resolution, bundle
 * layout and removal, and the exact argv/env/cwd/stdin of the shim `start` and `delete`
 * actions (checked with a fake shim script that records what it was given).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lookPath, RuntimeResolver, shimBinaryName } from '../../../../../plugins/runtime/v2/resolve.js';
import { bundleFor, deleteBundle, newBundle, remappedGid } from '../../../../../plugins/runtime/v2/bundle.js';
import { deleteShim, startShim, type ShimBinaryConfig } from '../../../../../plugins/runtime/v2/binary.js';
import { hostPlatform, parsePlatform } from '../../../../../plugins/runtime/v2/plugin.js';
import { Any } from '../../../../../api/gen/google/protobuf/any.js';
import { DeleteResponse } from '../../../../../api/gen/runtime/v2/task/shim.js';
import { silentLogger } from '../../../../../core/log/logger.js';
import { isAlreadyExists, isInvalidArgument, isNotFound } from '../../../../../core/errdefs/errdefs.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'rt-v2-'));

test('runtime names map to shim binaries like containerd', () => {
  assert.equal(shimBinaryName('io.containerd.runc.v2'), 'containerd-shim-runc-v2');
  assert.equal(shimBinaryName('io.containerd.berth.v2'), 'containerd-shim-berth-v2');
  assert.equal(shimBinaryName('runc.v1'), 'containerd-shim-runc-v1');
  assert.equal(shimBinaryName('runc'), '');
});

test('resolver: absolute paths, $PATH, the daemon executable dir, caching, errors', async () => {
  const dir = tmp();
  try {
    const onPath = join(dir, 'path');
    const selfDir = join(dir, 'self');
    mkdirSync(onPath);
    mkdirSync(selfDir);
    writeFileSync(join(onPath, 'containerd-shim-foo-v1'), '#!/bin/sh\n', { mode: 0o755 });
    writeFileSync(join(onPath, 'containerd-shim-noexec-v1'), '#!/bin/sh\n', { mode: 0o644 });
    writeFileSync(join(selfDir, 'containerd-shim-bar-v2.js'), '#!/usr/bin/env node\n', { mode: 0o755 });
    let pathEnv = onPath;
    const r = new RuntimeResolver(join(selfDir, 'berthd.js'), () => pathEnv);
    assert.equal(await r.resolve('io.containerd.foo.v1'), join(onPath, 'containerd-shim-foo-v1'));
    assert.equal(await r.resolve('io.containerd.bar.v2'), join(selfDir, 'containerd-shim-bar-v2.js'));
    assert.equal(await r.resolve(join(onPath, 'containerd-shim-noexec-v1')), join(onPath, 'containerd-shim-noexec-v1'), 'absolute: used as is');
    pathEnv = '';
    assert.equal(await r.resolve('io.containerd.foo.v1'), join(onPath, 'containerd-shim-foo-v1'), 'cached');
    await assert.rejects(r.resolve('io.containerd.noexec.v1'), (e) => isNotFound(e) && /binary not installed "containerd-shim-noexec-v1"/.test((e as Error).message));
    await assert.rejects(r.resolve('runc'), (e) => isInvalidArgument(e) && /invalid runtime name runc/.test((e as Error).message));
    await assert.rejects(r.resolve(''), isInvalidArgument);
    await assert.rejects(r.resolve('/no/such/shim'), (e) => /invalid custom binary path/.test((e as Error).message));
    assert.equal(await lookPath('sh', '/nonexistent:/bin'), '/bin/sh');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('platforms config: host default and parsing', () => {
  assert.match(hostPlatform(), /^linux\/[a-z0-9]+$/);
  assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  assert.throws(() => parsePlatform('linux'), isInvalidArgument);
});

test('bundle: layout, modes, config.json bytes, work symlink; removal takes both dirs', async () => {
  const dir = tmp();
  try {
    const root = join(dir, 'root');
    const state = join(dir, 'state');
    const spec = Buffer.from('{"ociVersion":"1.0.2-dev","process":{"args":["x"]}}');
    const b = await newBundle(root, state, 'ns1', 'c1', spec);
    assert.equal(b.path, join(state, 'ns1', 'c1'));
    assert.equal(statSync(b.path).mode & 0o777, 0o700);
    assert.equal(statSync(join(state, 'ns1')).mode & 0o777, 0o711);
    assert.equal(statSync(join(b.path, 'rootfs')).mode & 0o777, 0o711);
    assert.equal(statSync(join(root, 'ns1', 'c1')).mode & 0o777, 0o711);
    assert.ok(lstatSync(join(b.path, 'work')).isSymbolicLink());
    assert.equal(readlinkSync(join(b.path, 'work')), join(root, 'ns1', 'c1'));
    assert.deepEqual(readFileSync(join(b.path, 'config.json')), spec);
    await assert.rejects(newBundle(root, state, 'ns1', 'c1', spec), isAlreadyExists);
    await assert.rejects(newBundle(root, state, 'ns1', 'bad/id', spec), (e) => isInvalidArgument(e) && /invalid task id bad\/id/.test((e as Error).message));
    writeFileSync(join(root, 'ns1', 'c1', 'leftover'), 'x');
    await deleteBundle(b);
    assert.ok(!existsSync(b.path));
    assert.ok(!existsSync(join(root, 'ns1', 'c1')));
    assert.ok(!existsSync(join(state, 'ns1', '.c1')));
    await deleteBundle(bundleFor(state, 'ns1', 'c1'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bundle: a stale work dir is replaced; user-namespace specs chown the bundle to the mapped gid', async () => {
  const dir = tmp();
  try {
    mkdirSync(join(dir, 'root', 'ns', 'c2'), { recursive: true });
    writeFileSync(join(dir, 'root', 'ns', 'c2', 'stale'), 'x');
    const spec = Buffer.from(JSON.stringify({ linux: { gidMappings: [{ containerID: 0, hostID: 2000, size: 65536 }] } }));
    assert.equal(remappedGid(spec), 2000);
    assert.equal(remappedGid(Buffer.from('{}')), 0);
    const b = await newBundle(join(dir, 'root'), join(dir, 'state'), 'ns', 'c2', spec);
    assert.ok(!existsSync(join(dir, 'root', 'ns', 'c2', 'stale')));
    assert.equal(statSync(b.path).gid, 2000);
    assert.equal(statSync(b.path).mode & 0o777, 0o710);
    await deleteBundle(b);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A fake shim: records argv, cwd, selected env and stdin; `start` prints an address, `delete` a DeleteResponse. */
function fakeShim(dir: string): { path: string; record: string } {
  const record = join(dir, 'record');
  const reply = join(dir, 'delete-reply');
  writeFileSync(reply, DeleteResponse.encode({ pid: 42, exitStatus: 137, exitedAt: new Date('2024-01-02T03:04:05.000Z') }).finish());
  const path = join(dir, 'containerd-shim-fake-v2');
  writeFileSync(path, [
    '#!/bin/sh',
    `{ printf 'argv=%s\\n' "$*"; printf 'cwd=%s\\n' "$(pwd)"; printf 'GOMAXPROCS=%s\\n' "$GOMAXPROCS"; printf 'TTRPC_ADDRESS=%s\\n' "$TTRPC_ADDRESS"; printf 'SCHED_CORE=%s\\n' "$SCHED_CORE"; printf 'stdin=%s\\n' "$(base64 -w0)"; } >> ${record}`,
    'for last; do :; done',
    'if [ "$last" = start ]; then echo "  unix:///run/fake/socket  "; exit 0; fi',
    `if [ "$last" = delete ]; then echo 'some warning' >&2; cat ${reply}; exit 0; fi`,
    'exit 3',
  ].join('\n'));
  chmodSync(path, 0o755);
  return { path, record };
}

test('shim start: containerd argv, cwd = bundle, env, stdin = marshalled options; shim-binary-path written', async () => {
  const dir = tmp();
  try {
    const shim = fakeShim(dir);
    const bundle = await newBundle(join(dir, 'root'), join(dir, 'state'), 'default', 'c1', Buffer.from('{}'));
    const cfg: ShimBinaryConfig = {
      runtime: shim.path, address: '/run/berth/berth.sock', ttrpcAddress: '/run/berth/berth.sock.ttrpc',
      executable: '/usr/bin/berthd', schedCore: false, debug: true,
    };
    const options = { typeUrl: 'containerd.runc.v1.Options', value: Buffer.from([0x08, 0x01]) };
    const address = await startShim(cfg, bundle, options);
    assert.equal(address, 'unix:///run/fake/socket');
    const rec = readFileSync(shim.record, 'utf8');
    assert.match(rec, /^argv=-namespace default -address \/run\/berth\/berth\.sock -publish-binary \/usr\/bin\/berthd -id c1 -debug start$/m);
    assert.match(rec, new RegExp(`^cwd=${bundle.path}$`, 'm'));
    assert.match(rec, /^GOMAXPROCS=2$/m);
    assert.match(rec, /^TTRPC_ADDRESS=\/run\/berth\/berth\.sock\.ttrpc$/m);
    assert.match(rec, /^SCHED_CORE=$/m);
    assert.match(rec, new RegExp(`^stdin=${Buffer.from(Any.encode(options).finish()).toString('base64')}$`, 'm'));
    assert.equal(readFileSync(join(bundle.path, 'shim-binary-path'), 'utf8'), shim.path);
    assert.equal(statSync(join(bundle.path, 'shim-binary-path')).mode & 0o777, 0o600);

    // No options: empty stdin; sched_core adds SCHED_CORE=1; no -debug.
    writeFileSync(shim.record, '');
    await startShim({ ...cfg, schedCore: true, debug: false }, bundle, undefined);
    const rec2 = readFileSync(shim.record, 'utf8');
    assert.match(rec2, /^argv=-namespace default -address \/run\/berth\/berth\.sock -publish-binary \/usr\/bin\/berthd -id c1 start$/m);
    assert.match(rec2, /^SCHED_CORE=1$/m);
    assert.match(rec2, /^stdin=$/m);

    // A failing start reports the combined output and the exit status.
    await assert.rejects(startShim({ ...cfg, runtime: '/bin/false' }, bundle, undefined), /exit status 1/);

    // delete: argv with -bundle, cwd = bundle, DeleteResponse from stdout.
    writeFileSync(shim.record, '');
    const res = await deleteShim(cfg, bundle, silentLogger, 5000);
    assert.deepEqual(res, { pid: 42, exitStatus: 137, exitedAt: new Date('2024-01-02T03:04:05.000Z') });
    const rec3 = readFileSync(shim.record, 'utf8');
    assert.match(rec3, new RegExp(`^argv=-namespace default -address /run/berth/berth\\.sock -publish-binary /usr/bin/berthd -id c1 -bundle ${bundle.path} delete$`, 'm'));
    assert.match(rec3, new RegExp(`^cwd=${bundle.path}$`, 'm'));
    await deleteBundle(bundle);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
