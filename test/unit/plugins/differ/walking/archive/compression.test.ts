// Layer compression: media types, magic sniffing, gzip and zstd streams feeding applyLayer.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import {
  compressionOfMediaType,
  decompress,
  decompressLayer,
  detectCompression,
  MediaTypes,
} from '../../../../../../plugins/differ/walking/archive/compression.js';
import { applyLayer } from '../../../../../../plugins/differ/walking/archive/apply.js';
import { isInvalidArgument } from '../../../../../../core/errdefs/errdefs.js';
import { buildTar, collect, makeSandbox, snapshotTree, streamOf, isRoot, type Sandbox } from './helpers.js';

/** zstd CLI; installed on demand. Fails loudly when it cannot be had. */
function ensureZstd(): string {
  const which = () => {
    try {
      return execFileSync('sh', ['-c', 'command -v zstd'], { encoding: 'utf8' }).trim();
    } catch {
      return '';
    }
  };
  let bin = which();
  if (!bin) {
    try {
      execFileSync('sh', ['-c', 'apt-get install -y zstd || (apt-get update && apt-get install -y zstd)'], { stdio: 'ignore' });
    } catch {
      // reported below
    }
    bin = which();
  }
  if (!bin) throw new Error('the zstd CLI is required for these tests and could not be installed (apt-get install -y zstd)');
  return bin;
}

async function zstdCompress(data: Buffer, args: string[] = []): Promise<Buffer> {
  const r = await execa(ensureZstd(), ['-q', '-c', ...args], { input: data, encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(r.stdout);
}

describe('compressionOfMediaType', () => {
  it('maps every layer media type', () => {
    assert.equal(compressionOfMediaType(MediaTypes.ociLayer), 'none');
    assert.equal(compressionOfMediaType(MediaTypes.ociLayerGzip), 'gzip');
    assert.equal(compressionOfMediaType(MediaTypes.ociLayerZstd), 'zstd');
    assert.equal(compressionOfMediaType(MediaTypes.ociLayerNonDistributable), 'none');
    assert.equal(compressionOfMediaType(MediaTypes.ociLayerNonDistributableGzip), 'gzip');
    assert.equal(compressionOfMediaType(MediaTypes.ociLayerNonDistributableZstd), 'zstd');
    assert.equal(compressionOfMediaType(MediaTypes.dockerLayerGzip), 'gzip');
    assert.equal(compressionOfMediaType(MediaTypes.dockerForeignLayerGzip), 'gzip');
    assert.equal(compressionOfMediaType(MediaTypes.dockerLayer), 'none');
  });

  it('rejects unknown media types naming them', () => {
    for (const mt of ['application/vnd.oci.image.layer.v1.tar+gzip+encrypted', 'application/json', 'application/vnd.oci.image.layer.v1.tar+bzip2', '']) {
      assert.throws(() => compressionOfMediaType(mt), (e: Error) => isInvalidArgument(e) && e.message.includes(JSON.stringify(mt)), mt);
    }
  });
});

describe('detectCompression', () => {
  it('sniffs gzip, zstd (incl. skippable frames) and plain data', async () => {
    assert.equal(detectCompression(gzipSync(Buffer.from('x'))), 'gzip');
    assert.equal(detectCompression(await zstdCompress(Buffer.from('x'))), 'zstd');
    assert.equal(detectCompression(Buffer.from([0x5e, 0x2a, 0x4d, 0x18, 4, 0, 0, 0])), 'zstd');
    assert.equal(detectCompression(buildTar([{ path: 'a', data: 'b' }])), 'none');
    assert.equal(detectCompression(Buffer.alloc(0)), 'none');
    assert.equal(detectCompression(Buffer.from([0x1f])), 'none');
  });
});

describe('decompress', () => {
  const payload = Buffer.concat(Array.from({ length: 200 }, (_, i) => Buffer.from(`line ${i} ${'x'.repeat(i)}\n`)));
  const big = Buffer.alloc(5 * 1024 * 1024 + 3);
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;

  it('gzip, including concatenated members', async () => {
    assert.deepEqual(await collect(decompress(streamOf(gzipSync(payload), 7), 'gzip')), payload);
    const two = Buffer.concat([gzipSync(payload), gzipSync(payload)]);
    assert.deepEqual(await collect(decompress(streamOf(two), 'gzip')), Buffer.concat([payload, payload]));
  });

  it('zstd, streamed in small and large chunks, multi-frame, with checksums', async () => {
    const z = await zstdCompress(payload);
    assert.deepEqual(await collect(decompress(streamOf(z, 5), 'zstd')), payload);
    const zb = await zstdCompress(big, ['--check', '-3']);
    assert.deepEqual(await collect(decompress(streamOf(zb, 100_000), 'zstd')), big);
    const multi = Buffer.concat([z, await zstdCompress(Buffer.from('tail'))]);
    assert.deepEqual(await collect(decompress(streamOf(multi, 13), 'zstd')), Buffer.concat([payload, Buffer.from('tail')]));
  });

  it('reports corrupt or truncated input', async () => {
    const z = await zstdCompress(big);
    await assert.rejects(collect(decompress(streamOf(z.subarray(0, z.length - 100)), 'zstd')), (e) => isInvalidArgument(e));
    const g = gzipSync(payload);
    await assert.rejects(collect(decompress(streamOf(g.subarray(0, g.length - 10)), 'gzip')));
  });

  it('decompressLayer sniffs the codec for compressed and Docker plain types', async () => {
    const z = await zstdCompress(payload);
    assert.deepEqual(await collect(await decompressLayer(streamOf(z, 3), MediaTypes.ociLayerZstd)), payload);
    // Mislabelled: declared gzip, actually zstd (containerd sniffs too).
    assert.deepEqual(await collect(await decompressLayer(streamOf(z, 3), MediaTypes.ociLayerGzip)), payload);
    assert.deepEqual(await collect(await decompressLayer(streamOf(gzipSync(payload)), MediaTypes.dockerLayer)), payload);
    assert.deepEqual(await collect(await decompressLayer(streamOf(payload, 2), MediaTypes.ociLayerGzip)), payload);
    // Declared uncompressed OCI: passed through untouched.
    const g = gzipSync(payload);
    assert.deepEqual(await collect(await decompressLayer(streamOf(g), MediaTypes.ociLayer)), g);
    assert.deepEqual(await collect(await decompressLayer(streamOf(Buffer.alloc(0)), MediaTypes.ociLayerGzip)), Buffer.alloc(0));
    await assert.rejects(decompressLayer(streamOf(payload), 'text/plain'), (e) => isInvalidArgument(e));
  });
});

describe('compressed layers applied', { skip: !isRoot && 'needs root' }, () => {
  let sb: Sandbox;
  before(async () => {
    sb = await makeSandbox();
  });
  after(async () => {
    await sb.cleanup();
  });

  const specs = [
    { path: 'bin/', type: 'Directory' as const },
    { path: 'bin/tool', data: Buffer.alloc(300_000, 7), mode: 0o755 },
    { path: 'etc/conf', data: 'k=v\n' },
    { path: 'bin/alias', type: 'SymbolicLink' as const, linkpath: 'tool' },
  ];

  for (const kind of ['gzip', 'zstd'] as const) {
    it(`applies a ${kind} layer`, async () => {
      const tar = buildTar(specs);
      const blob = kind === 'gzip' ? gzipSync(tar) : await zstdCompress(tar);
      const plainRoot = path.join(sb.dir, `plain-${kind}`);
      const root = path.join(sb.dir, kind);
      await fsp.mkdir(plainRoot);
      await fsp.mkdir(root);
      await applyLayer(streamOf(tar), plainRoot, { mode: 'overlay' });
      const mt = kind === 'gzip' ? MediaTypes.ociLayerGzip : MediaTypes.ociLayerZstd;
      const res = await applyLayer(await decompressLayer(streamOf(blob, 4096), mt), root, { mode: 'overlay' });
      assert.equal(res.entries, 4);
      assert.deepEqual(await snapshotTree(root), await snapshotTree(plainRoot));
    });
  }
});
