#!/usr/bin/env node
// Builds a small busybox image archive from the host's busybox-static, with no registry or
// image tooling: one gzip layer (busybox + applet links + /etc/passwd), an OCI config,
// manifest and index, written as an OCI archive (default) or a docker archive.
//   node scripts/make-image.mjs --out FILE [--format oci|docker] [--name REF] [--extra-mb N --extra-files N]
// --extra-* add a second directory of generated files (half random, half text) for
// benchmarks that need a big image.
// The quickstart imports it; tests build their fixtures with it too.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar';

const { values } = parseArgs({ options: {
  out: { type: 'string' }, format: { type: 'string', default: 'oci' }, name: { type: 'string', default: 'docker.io/library/busybox:latest' },
  'extra-mb': { type: 'string', default: '0' }, 'extra-files': { type: 'string', default: '0' },
} });
if (!values.out) { console.error('usage: make-image.mjs --out FILE [--format oci|docker] [--name REF]'); process.exit(2); }
const busybox = ['/usr/bin/busybox', '/bin/busybox'].find(existsSync);
if (!busybox) { console.error('make-image: busybox not found (apt-get install busybox-static)'); process.exit(1); }

const APPLETS = ['sh', 'ls', 'echo', 'cat', 'sleep', 'true', 'false', 'id', 'hostname', 'ps', 'env', 'pwd', 'mkdir', 'rm', 'touch',
  'wc', 'head', 'tail', 'grep', 'sed', 'sha256sum', 'uname', 'mount', 'df', 'printf', 'test', 'kill', 'tty', 'cp', 'mv', 'ln', 'chmod', 'stat', 'top'];

const work = mkdtempSync(join(tmpdir(), 'berth-image-'));
try {
  const root = join(work, 'rootfs');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root']) mkdirSync(join(root, d), { recursive: true });
  chmodSync(join(root, 'tmp'), 0o1777);
  copyFileSync(busybox, join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  for (const a of APPLETS) symlinkSync('busybox', join(root, 'bin', a));
  writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');

  const extraFiles = Number(values['extra-files']);
  const extraBytes = Number(values['extra-mb']) * 1024 * 1024;
  if (extraFiles > 0) {
    // Deterministic content: a seeded xorshift for the random half, repeated words for the rest.
    let x = 0x9e3779b9;
    const rand = (n) => { const b = Buffer.allocUnsafe(n); for (let i = 0; i < n; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; b[i] = x & 0xff; } return b; };
    const text = (n) => Buffer.from('berth benchmark payload line\n'.repeat(Math.ceil(n / 29))).subarray(0, n);
    const per = Math.max(1, Math.floor(extraBytes / extraFiles));
    for (let i = 0; i < extraFiles; i++) {
      const dirPath = join(root, 'usr', 'share', 'bench', `d${i % 300}`);
      mkdirSync(dirPath, { recursive: true });
      writeFileSync(join(dirPath, `f${i}`), i % 2 ? rand(per) : text(per));
    }
  }
  const layerTar = join(work, 'layer.tar');
  await tar.c({ file: layerTar, cwd: root, portable: true, mtime: new Date('2024-01-01T00:00:00Z') }, ['.']);
  const raw = readFileSync(layerTar);
  const diffId = `sha256:${createHash('sha256').update(raw).digest('hex')}`;
  const layer = gzipSync(raw);
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux',
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: [diffId] },
    history: [{ created: '2024-01-01T00:00:00Z', created_by: 'berth scripts/make-image.mjs' }],
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha(layer)}`, size: layer.length }],
  }));

  const out = join(work, 'out');
  mkdirSync(out);
  if (values.format === 'docker') {
    const l = `${sha(layer)}/layer.tar`;
    mkdirSync(join(out, sha(layer)));
    writeFileSync(join(out, l), raw);
    writeFileSync(join(out, `${sha(config)}.json`), config);
    writeFileSync(join(out, 'manifest.json'), JSON.stringify([{ Config: `${sha(config)}.json`, RepoTags: [values.name.replace(/^docker\.io\/library\//, '')], Layers: [l] }]));
  } else {
    const blobs = join(out, 'blobs', 'sha256');
    mkdirSync(blobs, { recursive: true });
    for (const b of [layer, config, manifest]) writeFileSync(join(blobs, sha(b)), b);
    writeFileSync(join(out, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(join(out, 'index.json'), JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{
        mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length,
        annotations: { 'io.containerd.image.name': values.name, 'org.opencontainers.image.ref.name': values.name.split(':').pop() },
        platform: { architecture: 'amd64', os: 'linux' },
      }],
    }));
  }
  await tar.c({ file: values.out, cwd: out, portable: true }, ['.']);
  console.log(values.out);
} finally {
  rmSync(work, { recursive: true, force: true });
}
