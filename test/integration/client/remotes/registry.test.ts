/**
 * The registry client against a real distribution registry (Debian's docker-registry) on a
 * loopback port: push, resolve, fetch with verification, re-push skips, cross-repo mounts,
 * Range resume, wrong size/digest detection, hosts.toml mirrors.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { FailedPreconditionError, NotFoundError } from '../../../../core/errdefs/errdefs.js';
import { Resolver, pushImage, distributionSourceKey, type Descriptor } from '../../../../client/remotes/index.js';
import { buildImage, freePort, sha256, startRegistry, type RunningRegistry, type TestImage } from './helpers.js';

describe('registry client against docker-registry', { timeout: 120_000 }, () => {
  let reg: RunningRegistry;
  let img: TestImage;
  let resolver: Resolver;
  const ref = () => `${reg.host}/test/app:v1`;

  before(async () => {
    reg = await startRegistry();
    img = buildImage();
    resolver = new Resolver({ plainHttp: true });
  });
  after(async () => {
    await reg?.stop();
  });

  it('pushes an image (config, gzip layer, manifest, index) under a tag', async () => {
    const pusher = await resolver.pusher(ref());
    const results = await pushImage(pusher, img.index.desc, (d) => img.blobs.get(d.digest)!, { concurrency: 2 });
    assert.equal(results.get(img.config.desc.digest), 'uploaded');
    assert.equal(results.get(img.layer.desc.digest), 'uploaded');
    assert.equal(results.get(img.manifest.desc.digest), 'uploaded');
    assert.equal(results.get(img.index.desc.digest), 'uploaded');
  });

  it('resolves the tag to the index descriptor', async () => {
    const { name, descriptor } = await resolver.resolve(ref());
    assert.equal(name, ref());
    assert.deepEqual(descriptor, img.index.desc);
  });

  it('resolves by digest and by name:tag@digest', async () => {
    const byDigest = await resolver.resolve(`${reg.host}/test/app@${img.manifest.desc.digest}`);
    assert.equal(byDigest.descriptor.digest, img.manifest.desc.digest);
    assert.equal(byDigest.descriptor.size, img.manifest.desc.size);
    assert.equal(byDigest.descriptor.mediaType, img.manifest.desc.mediaType);
    const both = await resolver.resolve(`${reg.host}/test/app:nonexistent@${img.index.desc.digest}`);
    assert.deepEqual(both.descriptor, img.index.desc);
  });

  it('reports an unknown tag or repository as NotFoundError', async () => {
    await assert.rejects(resolver.resolve(`${reg.host}/test/app:missing`), NotFoundError);
    await assert.rejects(resolver.resolve(`${reg.host}/nope/nothing:v1`), NotFoundError);
  });

  it('fetches manifest and blobs back with digest verification', async () => {
    const fetcher = await resolver.fetcher(ref());
    const index = await fetcher.fetchBytes(img.index.desc);
    assert.deepEqual(index, img.index.bytes);
    const child = (JSON.parse(index.toString()) as { manifests: Descriptor[] }).manifests[0];
    const manifest = await fetcher.fetchBytes(child);
    assert.deepEqual(manifest, img.manifest.bytes);
    const m = JSON.parse(manifest.toString()) as { config: Descriptor; layers: Descriptor[] };
    assert.deepEqual(await fetcher.fetchBytes(m.config), img.config.bytes);

    const chunks: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        chunks.push(chunk);
        cb();
      },
    });
    const result = await fetcher.fetchVerified(m.layers[0], sink, { end: true });
    assert.equal(result.digest, img.layer.desc.digest);
    assert.equal(result.size, img.layer.desc.size);
    assert.equal(result.resumes, 0);
    assert.ok(sink.writableFinished);
    assert.deepEqual(Buffer.concat(chunks), img.layer.bytes);
  });

  it('skips everything when pushing the same image again', async () => {
    const pusher = await resolver.pusher(ref());
    const results = await pushImage(pusher, img.index.desc, (d) => img.blobs.get(d.digest)!);
    assert.deepEqual([...new Set(results.values())], ['exists']);
    assert.equal(results.size, 4);
  });

  it('mounts a blob from another repository on the same registry', async () => {
    const pusher = await resolver.pusher(`${reg.host}/other/app:v1`);
    const desc: Descriptor = { ...img.layer.desc, annotations: { [distributionSourceKey(reg.host)]: 'test/app' } };
    let opened = false;
    const status = await pusher.pushBlob(desc, () => {
      opened = true;
      return Readable.from([img.layer.bytes]);
    });
    assert.equal(status, 'mounted');
    assert.equal(opened, false, 'a mounted blob is never read');
    const fetched = await (await resolver.fetcher(`${reg.host}/other/app:v1`)).fetchBytes(img.layer.desc, { maxSize: 1 << 24 });
    assert.deepEqual(fetched, img.layer.bytes);

    // The same works through labels given by the caller (the content store's labels).
    const third = await resolver.pusher(`${reg.host}/third/app:v1`);
    assert.equal(await third.pushBlob(img.config.desc, img.config.bytes, { labels: { [distributionSourceKey(reg.host)]: 'nope/x,test/app' } }), 'mounted');
  });

  it('falls back to a normal upload when the mount source lacks the blob', async () => {
    const bytes = Buffer.from('a blob only pushed here');
    const desc: Descriptor = {
      mediaType: 'application/octet-stream',
      digest: sha256(bytes),
      size: bytes.length,
      annotations: { [distributionSourceKey(reg.host)]: 'test/app' },
    };
    const pusher = await resolver.pusher(`${reg.host}/fourth/app:v1`);
    assert.equal(await pusher.pushBlob(desc, Readable.from([bytes])), 'uploaded');
    assert.equal(await pusher.pushBlob(desc, bytes), 'exists');
  });

  it('streams a large blob through a factory source', async () => {
    const big = buildImage(3 * 1024 * 1024).layer;
    const pusher = await resolver.pusher(`${reg.host}/big/app:v1`);
    // Feed it in 64 KiB pieces so the upload is really streamed.
    const status = await pusher.pushBlob(big.desc, () =>
      Readable.from((function* () {
        for (let i = 0; i < big.bytes.length; i += 65536) yield big.bytes.subarray(i, i + 65536);
      })()),
    );
    assert.equal(status, 'uploaded');
    const fetcher = await resolver.fetcher(`${reg.host}/big/app:v1`);
    let n = 0;
    await fetcher.fetchVerified(big.desc, (c) => {
      n += c.length;
    });
    assert.equal(n, big.desc.size);
  });

  it('refuses to upload content that does not match its descriptor, leaving nothing behind', async () => {
    const pusher = await resolver.pusher(`${reg.host}/bad/app:v1`);
    const bytes = Buffer.from('these bytes are not what the descriptor says');
    const desc: Descriptor = { mediaType: 'application/octet-stream', digest: sha256('something else entirely....................'), size: bytes.length };
    await assert.rejects(pusher.pushBlob(desc, Readable.from([bytes.subarray(0, 10), bytes.subarray(10)])), FailedPreconditionError);
    await assert.rejects(pusher.pushBlob(desc, bytes), FailedPreconditionError);
    assert.equal(await pusher.exists(desc), false);
  });

  it('fetches from an offset with Range and resumes a verified download', async () => {
    const fetcher = await resolver.fetcher(ref());
    const N = 100_000;
    const stream = await fetcher.fetchBlob(img.layer.desc, { offset: N });
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    assert.deepEqual(Buffer.concat(chunks), img.layer.bytes.subarray(N));

    const rest: Buffer[] = [];
    const res = await fetcher.fetchVerified(img.layer.desc, (c) => void rest.push(c), {
      offset: N,
      existing: img.layer.bytes.subarray(0, N),
    });
    assert.equal(res.digest, img.layer.desc.digest);
    assert.deepEqual(Buffer.concat(rest), img.layer.bytes.subarray(N));

    // A corrupted local prefix is caught when resuming: the digest over prefix + tail differs.
    const corrupted = Buffer.from(img.layer.bytes.subarray(0, N));
    corrupted[0] ^= 0xff;
    await assert.rejects(
      fetcher.fetchVerified(img.layer.desc, () => undefined, { offset: N, existing: corrupted }),
      (err: Error) => err instanceof FailedPreconditionError && /digest mismatch/.test(err.message),
    );

    const end = await fetcher.fetchBlob(img.layer.desc, { offset: img.layer.desc.size });
    assert.equal((await end.toArray()).length, 0);
  });

  it('fails with FailedPreconditionError when the size is wrong, without ending the sink', async () => {
    const fetcher = await resolver.fetcher(ref());
    for (const size of [img.layer.desc.size - 1, img.layer.desc.size + 1]) {
      let ended = false;
      const sink = new Writable({
        write(_c, _e, cb) {
          cb();
        },
        final(cb) {
          ended = true;
          cb();
        },
      });
      await assert.rejects(fetcher.fetchVerified({ ...img.layer.desc, size }, sink, { end: true }), FailedPreconditionError);
      assert.equal(ended, false);
    }
    // A wrong digest for the config's bytes: the registry has no such blob.
    await assert.rejects(fetcher.fetchBytes({ ...img.config.desc, digest: sha256('x') }), NotFoundError);
  });

  it('uses hosts.toml: a dead mirror first, then the server, with ?ns= for the namespace', async () => {
    const configPath = await mkdtemp(join(tmpdir(), 'berth-hosts-'));
    try {
      const deadPort = await freePort();
      await mkdir(join(configPath, 'registry.example.invalid'));
      await writeFile(
        join(configPath, 'registry.example.invalid', 'hosts.toml'),
        [
          `server = "http://${reg.host}"`,
          `[host."http://127.0.0.1:${deadPort}"]`,
          '  capabilities = ["pull", "resolve"]',
          `[host."http://${reg.host}"]`,
          '  capabilities = ["pull", "resolve"]',
          '  header = { x-berth-test = "1" }',
          '',
        ].join('\n'),
      );
      const r = new Resolver({ configPath });
      const hosts = await r.hosts('registry.example.invalid');
      assert.deepEqual(hosts.map((h) => `${h.scheme}://${h.host}${h.path} ${h.capabilities.join(',')}`), [
        `http://127.0.0.1:${deadPort}/v2 pull,resolve`,
        `http://${reg.host}/v2 pull,resolve`,
        `http://${reg.host}/v2 pull,resolve,push`,
      ]);
      const { descriptor } = await r.resolve('registry.example.invalid/test/app:v1');
      assert.deepEqual(descriptor, img.index.desc);
      const f = await r.fetcher('registry.example.invalid/test/app:v1');
      assert.deepEqual(await f.fetchBytes(img.config.desc), img.config.bytes);
      // Pushes go to the first push-capable host: the server.
      const p = await r.pusher('registry.example.invalid/via/hosts:v2');
      const results = await pushImage(p, img.index.desc, (d) => img.blobs.get(d.digest)!);
      assert.equal(results.get(img.index.desc.digest), 'uploaded');
      assert.deepEqual((await resolver.resolve(`${reg.host}/via/hosts:v2`)).descriptor, img.index.desc);
    } finally {
      await rm(configPath, { recursive: true, force: true });
    }
  });

  it('parallel verified layer fetches under limit(n)', async () => {
    const { limit } = await import('../../../../client/remotes/limit.js');
    const fetcher = await resolver.fetcher(ref());
    const run = limit(2);
    const descs = [img.config.desc, img.layer.desc, img.config.desc, img.layer.desc, img.manifest.desc];
    const out = await run.map(descs, (d) => fetcher.fetchBytes(d, { maxSize: 1 << 24 }));
    out.forEach((b, i) => assert.equal(sha256(b), descs[i].digest));
  });
});
