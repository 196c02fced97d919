/**
 * The client-side OCI spec against what `ctr run` (containerd 1.6.20) stored in real
 * containers (fixtures captured with `ctr containers info --spec` from the reference daemon):
 * - ctr-run-rootfs.json: `ctr run -d --env FOO=bar --cwd /tmp --rootfs /tmp/bbroot sx /bin/sleep 100`
 * - ctr-run-image.json:  `ctr run -d <busybox image> sy sleep 100` (config: Env PATH=/bin, Cmd /bin/sh)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as oci from '../../../../client/oci/spec.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = (name: string) => readFileSync(join(here, 'fixtures', name), 'utf8');

/** ctr run's option sequence up to the image/rootfs specific part. */
function ctrBase(ns: string, id: string, env: string[] = []): oci.Spec {
  const s = oci.defaultSpec(ns, id);
  oci.withDefaultUnixDevices(s);
  oci.withEnv(s, env);
  oci.withMounts(s, []);
  return s;
}

test('rootfs run: byte-identical JSON to the spec ctr stores', () => {
  const s = ctrBase('default', 'sx', ['FOO=bar']);
  oci.withRootFSPath(s, '/tmp/bbroot');
  oci.withProcessArgs(s, ['/bin/sleep', '100']);
  oci.withProcessCwd(s, '/tmp');
  oci.withCPUShares(s, 1024);
  oci.withAnnotations(s, {});
  assert.equal(JSON.stringify(oci.finalizeSpec(s)), JSON.stringify(JSON.parse(fixture('ctr-run-rootfs.json'))));
});

test('image run: env, args, cwd and user from the image config match ctr', async () => {
  const root = mkdtempSync(join(tmpdir(), 'oci-spec-'));
  try {
    const s = ctrBase('default', 'sy');
    await oci.withImageConfig(s, { Env: ['PATH=/bin'], Cmd: ['/bin/sh'], WorkingDir: '/' }, root);
    oci.withProcessArgs(s, ['sleep', '100']);
    oci.withCPUShares(s, 1024);
    assert.equal(JSON.stringify(oci.finalizeSpec(s)), JSON.stringify(JSON.parse(fixture('ctr-run-image.json'))));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('defaults: namespaces, mounts, masked and readonly paths, rlimits, capabilities', () => {
  const s = oci.defaultSpec('ns1', 'c1');
  assert.equal(s.ociVersion, '1.0.2-dev');
  assert.equal(s.root?.path, 'rootfs');
  assert.deepEqual(s.linux?.namespaces?.map((n) => n.type), ['pid', 'ipc', 'uts', 'mount', 'network']);
  assert.deepEqual(s.mounts?.map((m) => m.destination), ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/run']);
  assert.equal(s.linux?.cgroupsPath, '/ns1/c1');
  assert.deepEqual(s.process?.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
  assert.equal(s.process?.capabilities?.bounding?.length, 14);
  assert.ok(s.linux?.maskedPaths?.includes('/proc/kcore'));
  assert.ok(s.linux?.readonlyPaths?.includes('/proc/sysrq-trigger'));
  assert.equal(s.process?.env, undefined, 'no env without an image (ctr --rootfs sets no PATH)');
});

test('env: image defaults, overrides by name, bare names unset', () => {
  assert.deepEqual(oci.replaceOrAppendEnv(['PATH=/bin', 'A=1', 'B=2'], ['A=9', 'C=3', 'B']), ['PATH=/bin', 'A=9', 'C=3']);
  const s = ctrBase('default', 'x', ['PATH=/custom', 'X=1']);
  return oci.withImageConfig(s, { Env: ['PATH=/bin', 'HOME=/root'] }, '/nonexistent').then(() => {
    assert.deepEqual(s.process?.env, ['PATH=/custom', 'HOME=/root', 'X=1']);
  });
});

test('image config without env gets the default PATH; entrypoint + cmd; empty cwd is /', async () => {
  const s = ctrBase('default', 'x');
  await oci.withImageConfig(s, { Entrypoint: ['/entry'], Cmd: ['a', 'b'], WorkingDir: '' }, '/nonexistent');
  assert.deepEqual(s.process?.env, [oci.DEFAULT_PATH_ENV]);
  assert.deepEqual(s.process?.args, ['/entry', 'a', 'b']);
  assert.equal(s.process?.cwd, '/');
  const t = ctrBase('default', 'x');
  await oci.withImageConfig(t, { Entrypoint: ['/entry'], Cmd: ['a'] }, '/nonexistent', ['override']);
  assert.deepEqual(t.process?.args, ['/entry', 'override']);
});

test('tty adds TERM; hostname, readonly root, caps, namespaces', () => {
  const s = ctrBase('default', 'x');
  oci.withTTY(s);
  assert.equal(s.process?.terminal, true);
  assert.deepEqual(s.process?.env, ['TERM=xterm']);
  oci.withRootFSReadonly(s);
  assert.equal(s.root?.readonly, true);
  oci.withAddedCapabilities(s, ['CAP_SYS_ADMIN']);
  assert.ok(s.process?.capabilities?.effective?.includes('CAP_SYS_ADMIN'));
  oci.withDroppedCapabilities(s, ['CAP_KILL']);
  assert.ok(!s.process?.capabilities?.bounding?.includes('CAP_KILL'));
  oci.withHostNamespace(s, 'network');
  assert.ok(!s.linux?.namespaces?.some((n) => n.type === 'network'));
  oci.withLinuxNamespace(s, { type: 'pid', path: '/proc/1/ns/pid' });
  assert.deepEqual(s.linux?.namespaces?.find((n) => n.type === 'pid'), { type: 'pid', path: '/proc/1/ns/pid' });
  const json = JSON.stringify(oci.finalizeSpec(s));
  assert.ok(json.startsWith('{"ociVersion":"1.0.2-dev","process":{"terminal":true,"user"'), json.slice(0, 80));
});

function fakeRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'oci-users-'));
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'passwd'), [
    'root:x:0:0:root:/root:/bin/sh',
    '# comment',
    'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
    'app:x:1000:1001:App:/home/app:/bin/sh',
    '',
  ].join('\n'));
  writeFileSync(join(root, 'etc', 'group'), [
    'root:x:0:',
    'wheel:x:10:root,app',
    'staff:x:50:app',
    'appgrp:x:1001:',
    'audio:x:63:',
  ].join('\n'));
  return root;
}

test('user: numeric, names via passwd/group, uid:gid mixes, additional gids', async () => {
  const root = fakeRoot();
  try {
    const user = async (u: string) => {
      const s = ctrBase('default', 'x');
      oci.withRootFSPath(s, root);
      await oci.withUser(s, u);
      return s.process!.user;
    };
    assert.deepEqual(await user('app'), { uid: 1000, gid: 1001, additionalGids: [1001] });
    assert.deepEqual(await user('1000'), { uid: 1000, gid: 1001, additionalGids: [1001] });
    assert.deepEqual(await user('4242'), { uid: 4242, gid: 0, additionalGids: [0] });
    assert.deepEqual(await user('app:staff'), { uid: 1000, gid: 50, additionalGids: [50] });
    assert.deepEqual(await user('7:8'), { uid: 7, gid: 8, additionalGids: [8] });
    assert.deepEqual(await user('1000:audio'), { uid: 1000, gid: 63, additionalGids: [63] });
    await assert.rejects(user('nobody'), /no users found/);
    await assert.rejects(user('app:nogroup'), /no groups found/);
    await assert.rejects(user('a:b:c'), /invalid USER value/);

    const s = ctrBase('default', 'x');
    await oci.withImageConfig(s, { User: 'app' }, root);
    assert.deepEqual(s.process!.user, { uid: 1000, gid: 1001, additionalGids: [1001, 10, 50] });
    const r = ctrBase('default', 'x');
    await oci.withImageConfig(r, {}, root);
    assert.deepEqual(r.process!.user, { uid: 0, gid: 0, additionalGids: [0, 10] });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('user lookups resolve /etc symlinks inside the rootfs, never outside it', async () => {
  const root = fakeRoot();
  try {
    mkdirSync(join(root, 'real'));
    writeFileSync(join(root, 'real', 'passwd'), 'svc:x:77:88::/:/bin/sh\n');
    rmSync(join(root, 'etc', 'passwd'));
    symlinkSync('/real/passwd', join(root, 'etc', 'passwd'));
    const s = ctrBase('default', 'x');
    await oci.withUser(s, 'svc', root);
    assert.deepEqual(s.process!.user, { uid: 77, gid: 88, additionalGids: [88] });
    assert.equal(await oci.rootPath(root, '/etc/../../../etc/passwd'), join(root, 'real', 'passwd'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('relative rootfs cannot resolve users', async () => {
  const s = ctrBase('default', 'x');
  await assert.rejects(oci.withUser(s, 'app'), /rootfs absolute path is required/);
});
