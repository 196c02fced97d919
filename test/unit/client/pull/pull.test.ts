// Pure parts of pull/import/export/push, and the pipelined content writer against a fake
// Write stream that answers each request like containerd's content server.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { AlreadyExistsError, FailedPreconditionError } from '../../../../core/errdefs/errdefs.js';
import { ContentClient, WRITE_CHUNK } from '../../../../client/images/content.js';
import { appendDistributionSource, distributionSource, pullPlatforms } from '../../../../client/pull/pull.js';
import { normalizeReference, ociReferenceName, refTranslator } from '../../../../client/pull/import.js';
import { descriptorJSON } from '../../../../client/images/image.js';
import { mountLabels } from '../../../../client/pull/push.js';
import { bar, formatBytes, formatDuration, ProgressTracker, renderTable, tabulate } from '../../../../client/pull/progress.js';
import { rfc3339, uniquePart } from '../../../../client/pull/lease.js';

describe('labels and names', () => {
  it('derives the distribution source like containerd (hostname without port)', () => {
    assert.deepEqual(distributionSource('127.0.0.1:5000/library/busybox:latest'), { key: 'containerd.io/distribution.source.127.0.0.1', repo: 'library/busybox' });
    assert.deepEqual(distributionSource('docker.io/library/busybox@sha256:' + 'a'.repeat(64)), { key: 'containerd.io/distribution.source.docker.io', repo: 'library/busybox' });
    assert.deepEqual(distributionSource('[::1]:5000/x/y:1'), { key: 'containerd.io/distribution.source.::1', repo: 'x/y' });
    assert.equal(appendDistributionSource(undefined, 'b'), 'b');
    assert.equal(appendDistributionSource('c,a', 'b'), 'a,b,c');
    assert.equal(appendDistributionSource('a,b', 'b'), 'a,b');
  });

  it('adds the port-qualified key push mounts look up', () => {
    assert.deepEqual(mountLabels({ 'containerd.io/distribution.source.127.0.0.1': 'lib/x', other: 'y' }, '127.0.0.1:5000'), {
      'containerd.io/distribution.source.127.0.0.1': 'lib/x',
      'containerd.io/distribution.source.127.0.0.1:5000': 'lib/x',
    });
  });

  it('translates archive ref names like ctr import', () => {
    const add = refTranslator('import-2024-01-01', false);
    assert.equal(add('latest'), 'import-2024-01-01:latest');
    assert.equal(add('docker.io/x/y:1'), 'docker.io/x/y:1');
    const filter = refTranslator('foo/bar', true);
    assert.equal(filter('v1'), 'foo/bar:v1');
    assert.equal(filter('foo/bar:v2'), 'foo/bar:v2');
    assert.equal(filter('foo/barbaz:v2'), '');
    assert.equal(filter('other/x:1'), '');
    assert.equal(ociReferenceName('docker.io/library/busybox:latest'), 'latest');
    assert.equal(normalizeReference('busybox:1.36'), 'docker.io/library/busybox:1.36');
    assert.equal(normalizeReference('busybox'), 'docker.io/library/busybox:latest');
    assert.deepEqual(Object.keys(descriptorJSON({ size: 1, digest: 'sha256:x', mediaType: 'm', platform: { os: 'linux', architecture: 'amd64' }, annotations: { a: 'b' } })),
      ['mediaType', 'digest', 'size', 'annotations', 'platform']);
  });

  it('fetches exact platforms and unpacks with fallbacks', () => {
    const p = pullPlatforms({ platforms: ['linux/arm64'] });
    assert.ok(p.fetch.match({ os: 'linux', architecture: 'arm64' }));
    assert.ok(!p.fetch.match({ os: 'linux', architecture: 'arm', variant: 'v7' }));
    assert.equal(pullPlatforms({ allPlatforms: true }).unpack, 'all');
  });

  it('makes containerd-style lease ids and expiry times', () => {
    assert.match(uniquePart(), /^\d+-[A-Za-z0-9_-]{4}$/);
    assert.equal(rfc3339(new Date('2024-05-06T07:08:09.123Z')), '2024-05-06T07:08:09Z');
  });
});

describe('progress output', () => {
  it('formats bytes, durations and bars like ctr', () => {
    assert.equal(formatBytes(0), '0.0 B');
    assert.equal(formatBytes(512), '512.0 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(3.4 * 1024 * 1024), '3.4 MiB');
    assert.equal(formatDuration(71.282341), '71.282341ms');
    assert.equal(formatDuration(1234.5), '1.2345s');
    assert.equal(formatDuration(125_000), '2m5s');
    assert.equal(bar(0.5, 12, false), '|+++++-----|');
    assert.equal(bar(1, 6, true), '|\x1b[32m++++\x1b[0m|');
    assert.equal(tabulate([['a', 'bb'], ['ccc', 'd']]), 'a   bb \nccc d  \n');
    assert.equal(tabulate([['a', 'bb'], ['ccc', 'd']], false), 'a   bb\nccc d\n');
  });

  it('renders the job table', () => {
    const t = new ProgressTracker('example.com/x:1');
    t.set('example.com/x:1', { status: 'resolved' });
    const job = t.add({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: 'sha256:' + 'a'.repeat(64), size: 2048 });
    Object.assign(job, { status: 'downloading', offset: 1024 });
    const text = renderTable(t, false, t.start + 2000);
    assert.match(text, /^example\.com\/x:1: +resolved +\|\++\|/m);
    assert.match(text, /^layer-sha256:a{64}: +downloading +\|\+{19}-{19}\| +1\.0 KiB\/2\.0 KiB/m);
    assert.match(text, /^elapsed: 2\.0 s +total: +1\.0 Ki +\(512\.0 B\/s\)/m);
  });
});

/** A fake Write stream: answers every request in order, like containerd's content server. */
function fakeContent(opts: { existing?: Set<string>; failAt?: number } = {}) {
  const data: Buffer[] = [];
  let offset = 0;
  let committed: { digest: string; labels: Record<string, string> } | undefined;
  let maxInFlight = 0;
  const conn = {};
  class Fake extends ContentClient {
    override async openWrite() {
      const queue: any[] = [];
      let wake: (() => void) | undefined;
      let ended = false;
      let error: unknown;
      let inflight = 0;
      const push = (r: any) => {
        queue.push(r);
        wake?.();
      };
      const responses = (async function* () {
        for (;;) {
          if (queue.length) {
            const r = queue.shift();
            inflight--;
            if (r instanceof Error) throw r;
            yield r;
            continue;
          }
          if (ended || error) return;
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
      })();
      return {
        write: async (req: any) => {
          inflight++;
          maxInFlight = Math.max(maxInFlight, inflight);
          setImmediate(() => {
            if (req.action === 0) {
              if (req.expected && opts.existing?.has(req.expected)) return push(new AlreadyExistsError(`content ${req.expected}`));
              return push({ action: 0, offset, total: req.total });
            }
            if (req.action === 1 || req.action === 2) {
              if (req.offset === 0 && offset > 0) { data.length = 0; offset = 0; }
              if (req.offset !== offset) return push(new Error(`write @${req.offset} must occur at current offset ${offset}`));
              if (req.data?.length) { data.push(Buffer.from(req.data)); offset += req.data.length; }
              if (opts.failAt !== undefined && offset >= opts.failAt) return push(new Error('disk full'));
              if (req.action === 2) {
                const digest = `sha256:${createHash('sha256').update(Buffer.concat(data)).digest('hex')}`;
                if (req.expected && req.expected !== digest) return push(new FailedPreconditionError(`unexpected commit digest ${digest}, expected ${req.expected}`));
                committed = { digest, labels: req.labels };
                return push({ action: 2, offset, digest });
              }
              return push({ action: 1, offset });
            }
          });
        },
        end: () => { ended = true; wake?.(); },
        cancel: () => { ended = true; wake?.(); },
        responses,
      } as any;
    }
  }
  return { cs: new Fake(conn as any), state: () => ({ data: Buffer.concat(data), committed, maxInFlight }) };
}

describe('content writer', () => {
  it('pipelines coalesced WRITEs and commits with labels', async () => {
    const { cs, state } = fakeContent();
    const blob = Buffer.alloc(5 * WRITE_CHUNK + 123, 7);
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
    const w = await cs.writer({ ref: 'layer-x', total: blob.length, expected: digest });
    for (let i = 0; i < blob.length; i += 16 * 1024) await w.write(blob.subarray(i, i + 16 * 1024));
    await w.commit(blob.length, digest, { a: 'b' });
    w.close();
    const s = state();
    assert.ok(s.data.equals(blob));
    assert.deepEqual(s.committed, { digest, labels: { a: 'b' } });
    assert.ok(s.maxInFlight > 1, `writes were pipelined (max in flight ${s.maxInFlight})`);
  });

  it('reports ALREADY_EXISTS at open, and writeBlob counts it as done', async () => {
    const { cs } = fakeContent({ existing: new Set(['sha256:abc']) });
    await assert.rejects(cs.writer({ ref: 'r', expected: 'sha256:abc' }), /already exists/);
    assert.equal(await cs.writeBlob('r', Buffer.from('x'), { digest: 'sha256:abc', size: 1 }), false);
  });

  it('surfaces a digest mismatch and server errors', async () => {
    const { cs } = fakeContent();
    const w = await cs.writer({ ref: 'r', total: 3, expected: 'sha256:' + '0'.repeat(64) });
    await w.write(Buffer.from('abc'));
    await assert.rejects(w.commit(3, 'sha256:' + '0'.repeat(64)), /unexpected commit digest/);
    const f = fakeContent({ failAt: 2 * WRITE_CHUNK });
    const w2 = await f.cs.writer({ ref: 'r2' });
    await assert.rejects((async () => {
      for (let i = 0; i < 20; i++) await w2.write(Buffer.alloc(WRITE_CHUNK));
      await w2.commit(0, '');
    })(), /disk full/);
  });
});
