// `berth install` and the real `ctr install` against berthd: a "tool" image built here (a gzip
// layer with bin/hello-tool, lib/libhello.so.1, etc/ignored.conf and usr/bin/nested, an
// uncompressed layer adding bin/second-tool and a symlink, a zstd layer adding bin/zstd-tool)
// is imported with ctr, then
// installed into the opt directory berthd exports (and into --path). Only bin/ (and lib/ with
// --libs) lands there; an existing file needs --replace; ctr behaves the same against berthd.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';
import { BERTHD, berth, ctr, startDaemon, type TestDaemon } from '../helpers/daemon.js';

const IMAGE = 'docker.io/berthtest/tool:1';

/** Writes an OCI archive of the tool image to `file`. */
async function buildToolImage(work: string, file: string): Promise<void> {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const tarOf = async (root: string, entries: string[]) => {
    const out = join(work, `layer-${sha(Buffer.from(root))}.tar`);
    await tar.c({ file: out, cwd: root, portable: true, mtime: new Date('2024-01-01T00:00:00Z') }, entries);
    return readFileSync(out);
  };

  const l1 = join(work, 'l1');
  for (const d of ['bin', 'etc', 'lib', 'usr/bin']) mkdirSync(join(l1, d), { recursive: true });
  writeFileSync(join(l1, 'bin', 'hello-tool'), '#!/bin/sh\necho hello from the tool\n');
  chmodSync(join(l1, 'bin', 'hello-tool'), 0o755);
  writeFileSync(join(l1, 'etc', 'ignored.conf'), 'not installed\n');
  writeFileSync(join(l1, 'lib', 'libhello.so.1'), 'not really a library\n');
  writeFileSync(join(l1, 'usr', 'bin', 'nested'), 'not installed either\n');
  const raw1 = await tarOf(l1, ['bin', 'etc', 'lib', 'usr']);
  const layer1 = gzipSync(raw1);

  const l2 = join(work, 'l2');
  mkdirSync(join(l2, 'bin'), { recursive: true });
  writeFileSync(join(l2, 'bin', 'second-tool'), '#!/bin/sh\necho second\n');
  chmodSync(join(l2, 'bin', 'second-tool'), 0o750);
  symlinkSync('hello-tool', join(l2, 'bin', 'ht'));
  const raw2 = await tarOf(l2, ['bin']);

  const l3 = join(work, 'l3');
  mkdirSync(join(l3, 'bin'), { recursive: true });
  writeFileSync(join(l3, 'bin', 'zstd-tool'), '#!/bin/sh\necho from a zstd layer\n');
  chmodSync(join(l3, 'bin', 'zstd-tool'), 0o755);
  const raw3 = await tarOf(l3, ['bin']);
  const layer3 = execFileSync('zstd', ['-q', '-c'], { input: raw3 });

  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', config: {},
    rootfs: { type: 'layers', diff_ids: [`sha256:${sha(raw1)}`, `sha256:${sha(raw2)}`, `sha256:${sha(raw3)}`] },
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
    layers: [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha(layer1)}`, size: layer1.length },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: `sha256:${sha(raw2)}`, size: raw2.length },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', digest: `sha256:${sha(layer3)}`, size: layer3.length },
    ],
  }));
  const oci = join(work, 'oci');
  mkdirSync(join(oci, 'blobs', 'sha256'), { recursive: true });
  for (const b of [layer1, raw2, layer3, config, manifest]) writeFileSync(join(oci, 'blobs', 'sha256', sha(b)), b);
  writeFileSync(join(oci, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(join(oci, 'index.json'), JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [{
      mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length,
      annotations: { 'io.containerd.image.name': IMAGE, 'org.opencontainers.image.ref.name': '1' },
    }],
  }));
  await tar.c({ file, cwd: oci, portable: true }, ['.']);
}

let d: TestDaemon;
let work: string;
let opt: string;

const must = async (p: Promise<{ code: number; stdout: string; stderr: string }>, what: string) => {
  const r = await p;
  assert.equal(r.code, 0, `${what}: ${r.stderr}`);
  return r;
};

before(async () => {
  d = await startDaemon();
  opt = join(d.dir, 'opt');
  work = mkdtempSync(join(tmpdir(), 'berth-install-'));
  const archive = join(work, 'tool.oci.tar');
  await buildToolImage(work, archive);
  await must(ctr(d.address, ['images', 'import', archive]), 'ctr images import');
});

after(async () => {
  await d?.dispose();
  if (work) rmSync(work, { recursive: true, force: true });
});

const clearOpt = () => {
  rmSync(opt, { recursive: true, force: true });
  mkdirSync(join(opt, 'bin'), { recursive: true });
};

describe('opt directory in introspection', () => {
  it('ctr and berth show the exported path', async () => {
    for (const run of [ctr, berth]) {
      const r = await must(run(d.address, ['plugins', 'ls', '-d', 'id==opt']), 'plugins ls -d id==opt');
      assert.match(r.stdout, /Exports:/);
      assert.match(r.stdout, new RegExp(`path\\s+${opt.replace(/[/.-]/g, '\\$&')}`));
    }
    assert.ok(statSync(join(opt, 'bin')).isDirectory());
    assert.ok(statSync(join(opt, 'lib')).isDirectory());
  });
});

describe('berth install', () => {
  it('installs bin/ entries only, executable, from every layer', async () => {
    clearOpt();
    await must(berth(d.address, ['install', IMAGE]), 'berth install');
    const tool = join(opt, 'bin', 'hello-tool');
    assert.equal(statSync(tool).mode & 0o777, 0o755);
    assert.equal(execFileSync(tool).toString(), 'hello from the tool\n');
    assert.equal(statSync(join(opt, 'bin', 'second-tool')).mode & 0o777, 0o750, 'uncompressed layer too');
    assert.equal(readlinkSync(join(opt, 'bin', 'ht')), 'hello-tool');
    assert.equal(execFileSync(join(opt, 'bin', 'zstd-tool')).toString(), 'from a zstd layer\n', 'zstd layer too');
    assert.ok(!existsSync(join(opt, 'etc')), 'etc/ is not installed');
    assert.ok(!existsSync(join(opt, 'usr')), 'usr/bin/ is not bin/');
    assert.ok(!existsSync(join(opt, 'lib', 'libhello.so.1')), 'lib/ only with --libs');
  });

  it('refuses to replace an existing file without --replace, replaces with it', async () => {
    const tool = join(opt, 'bin', 'hello-tool');
    writeFileSync(tool, 'local version\n');
    const r = await berth(d.address, ['install', IMAGE]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), `berth: cannot replace bin/hello-tool in ${opt}`);
    assert.equal(readFileSync(tool, 'utf8'), 'local version\n', 'left alone');
    await must(berth(d.address, ['install', '--replace', IMAGE]), 'berth install --replace');
    assert.equal(readFileSync(tool, 'utf8'), '#!/bin/sh\necho hello from the tool\n');
  });

  it('installs lib/ with --libs, into --path when given', async () => {
    const dest = join(work, 'elsewhere');
    await must(berth(d.address, ['install', '-l', '--path', dest, IMAGE]), 'berth install -l --path');
    assert.ok(existsSync(join(dest, 'bin', 'hello-tool')));
    assert.equal(readFileSync(join(dest, 'lib', 'libhello.so.1'), 'utf8'), 'not really a library\n');
    assert.ok(!existsSync(join(dest, 'etc')));
  });

  it('replaces a symlink at the target instead of writing through it', async () => {
    const dest = join(work, 'symlinked');
    const victim = join(work, 'victim');
    writeFileSync(victim, 'precious\n');
    mkdirSync(join(dest, 'bin'), { recursive: true });
    symlinkSync(victim, join(dest, 'bin', 'hello-tool'));
    await must(berth(d.address, ['install', '-r', '--path', dest, IMAGE]), 'berth install -r over a symlink');
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
    assert.ok(lstatSync(join(dest, 'bin', 'hello-tool')).isFile());
  });

  it('will not install through a bin/ that is a symlink', async () => {
    const dest = join(work, 'binlink');
    const outside = join(work, 'outside');
    mkdirSync(outside, { recursive: true });
    mkdirSync(dest, { recursive: true });
    symlinkSync(outside, join(dest, 'bin'));
    const r = await berth(d.address, ['install', '--path', dest, IMAGE]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /bin is not a directory; refusing to install through it/);
    assert.ok(!existsSync(join(outside, 'hello-tool')));
  });

  it('names a missing image', async () => {
    const r = await berth(d.address, ['install', 'docker.io/berthtest/none:1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /image "docker.io\/berthtest\/none:1": not found/);
  });
});

describe('ctr install against berthd', () => {
  it('installs into the exported opt path with the same rules', async () => {
    clearOpt();
    await must(ctr(d.address, ['install', IMAGE]), 'ctr install');
    const tool = join(opt, 'bin', 'hello-tool');
    assert.equal(execFileSync(tool).toString(), 'hello from the tool\n');
    assert.ok(statSync(tool).mode & 0o111);
    assert.ok(existsSync(join(opt, 'bin', 'second-tool')));
    assert.ok(existsSync(join(opt, 'bin', 'zstd-tool')));
    assert.ok(!existsSync(join(opt, 'etc')));
    assert.ok(!existsSync(join(opt, 'lib', 'libhello.so.1')));

    const again = await ctr(d.address, ['install', IMAGE]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, new RegExp(`cannot replace bin/hello-tool in ${opt.replace(/[/.-]/g, '\\$&')}`));
    writeFileSync(tool, 'local\n');
    await must(ctr(d.address, ['install', '-r', '-l', IMAGE]), 'ctr install -r -l');
    assert.equal(execFileSync(tool).toString(), 'hello from the tool\n');
    assert.ok(existsSync(join(opt, 'lib', 'libhello.so.1')));
  });

  it('installs into --path', async () => {
    const dest = join(work, 'ctr-path');
    mkdirSync(dest); // ctr creates bin/ but not the path itself
    await must(ctr(d.address, ['install', '--path', dest, IMAGE]), 'ctr install --path');
    assert.ok(existsSync(join(dest, 'bin', 'hello-tool')));
    assert.ok(!existsSync(join(dest, 'etc')));
  });
});

describe('install without a usable opt plugin', () => {
  it('says "opt service not enabled" when the plugin is disabled (berth and ctr)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-noopt-'));
    const address = join(dir, 'berth.sock');
    writeFileSync(join(dir, 'config.toml'), [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.internal.v1.opt"]',
      '[grpc]',
      `  address = "${address}"`,
    ].join('\n'));
    const child = spawn(process.execPath, [BERTHD, '--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (b) => (log += b));
    try {
      const deadline = Date.now() + 15_000;
      while (!/successfully booted/.test(log)) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `berthd did not boot:\n${log}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      await must(ctr(address, ['images', 'import', join(work, 'tool.oci.tar')]), 'import');
      const r = await berth(address, ['install', IMAGE]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.trim(), 'berth: opt service not enabled');
      const c = await ctr(address, ['install', IMAGE]);
      assert.notEqual(c.code, 0);
      assert.match(c.stderr, /opt service not enabled/);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says "opt path not exported" when the plugin failed (berth and ctr)', async () => {
    const broken = await startDaemon({ extraConfig: '[plugins."io.containerd.internal.v1.opt"]\n  path = "/dev/null/opt"' });
    try {
      const listed = await must(ctr(broken.address, ['plugins', 'ls', 'id==opt']), 'plugins ls');
      assert.match(listed.stdout, /opt\s+-\s+error/);
      await must(ctr(broken.address, ['images', 'import', join(work, 'tool.oci.tar')]), 'import');
      const r = await berth(broken.address, ['install', IMAGE]);
      assert.equal(r.code, 1);
      assert.equal(r.stderr.trim(), 'berth: opt path not exported');
      const c = await ctr(broken.address, ['install', IMAGE]);
      assert.notEqual(c.code, 0);
      assert.match(c.stderr, /opt path not exported/);
    } finally {
      await broken.dispose();
    }
  });
});
