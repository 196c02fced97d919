import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { FailedPreconditionError, InvalidArgumentError } from '../../../../core/errdefs/errdefs.js';
import { limit } from '../../../../client/remotes/limit.js';
import { selectMountCandidate, VerifyingStream } from '../../../../client/remotes/pusher.js';
import { distributionSourceKey, isManifestMediaType, MediaTypes } from '../../../../client/remotes/types.js';
import { parseRegistryErrors, errorForStatus } from '../../../../client/remotes/http.js';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('selectMountCandidate', () => {
  const key = distributionSourceKey('reg.example');
  it('uses the label of the target host only', () => {
    assert.equal(selectMountCandidate('reg.example', 'a/b', { [distributionSourceKey('other')]: 'x/y' }), undefined);
    assert.equal(selectMountCandidate('reg.example', 'a/b', undefined), undefined);
    assert.equal(selectMountCandidate('reg.example', 'a/b', { [key]: '' }), undefined);
  });
  it('never mounts from the target itself', () => {
    assert.equal(selectMountCandidate('reg.example', 'a/b', { [key]: 'a/b' }), undefined);
  });
  it('prefers the longest common leading path', () => {
    assert.equal(selectMountCandidate('reg.example', 'team/app/web', { [key]: 'other/x,team/app/api,team/lib' }), 'team/app/api');
    assert.equal(selectMountCandidate('reg.example', 'a/b', { [key]: 'x/y' }), 'x/y');
  });
  it('key format', () => {
    assert.equal(distributionSourceKey('docker.io'), 'containerd.io/distribution.source.docker.io');
  });
});

describe('VerifyingStream', () => {
  const data = Buffer.from('hello, registry world');
  const run = async (chunks: Buffer[], desc: { digest: string; size: number }) => {
    const out: Buffer[] = [];
    const v = new VerifyingStream(desc);
    v.on('data', (c: Buffer) => out.push(c));
    await pipeline(Readable.from(chunks), v);
    return Buffer.concat(out);
  };
  it('passes matching content through', async () => {
    assert.deepEqual(await run([data.subarray(0, 5), data.subarray(5)], { digest: sha(data), size: data.length }), data);
  });
  it('holds back the last chunk until verified', async () => {
    const seen: Buffer[] = [];
    const v = new VerifyingStream({ digest: sha(Buffer.from('xx')), size: data.length });
    v.on('data', (c: Buffer) => seen.push(c));
    await assert.rejects(pipeline(Readable.from([data.subarray(0, 5), data.subarray(5)]), v), FailedPreconditionError);
    assert.equal(Buffer.concat(seen).length, 5, 'the final chunk never left');
  });
  it('fails early on too much data and on short data', async () => {
    await assert.rejects(run([data, data], { digest: sha(data), size: data.length }), /larger than/);
    await assert.rejects(run([data.subarray(0, 3)], { digest: sha(data), size: data.length }), /3 bytes, expected/);
  });
});

describe('limit', () => {
  it('runs at most n at once, in order, and propagates results and errors', async () => {
    const run = limit(2);
    let active = 0;
    let peak = 0;
    const started: number[] = [];
    const task = (i: number) => async () => {
      started.push(i);
      active++;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 5));
      active--;
      if (i === 3) throw new Error('boom');
      return i * 10;
    };
    const results = await Promise.allSettled([0, 1, 2, 3, 4, 5].map((i) => run(task(i))));
    assert.equal(peak, 2);
    assert.deepEqual(started, [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)), [0, 10, 20, 'boom', 40, 50]);
    assert.equal(run.activeCount, 0);
    assert.equal(run.pendingCount, 0);
  });
  it('map keeps input order and handles sync throws', async () => {
    const run = limit(3);
    assert.deepEqual(await run.map([3, 1, 2], async (x) => x * 2), [6, 2, 4]);
    await assert.rejects(run(() => {
      throw new Error('sync');
    }), /sync/);
  });
  it('rejects bad limits', () => {
    assert.throws(() => limit(0), InvalidArgumentError);
    assert.throws(() => limit(1.5), InvalidArgumentError);
  });
});

describe('registry errors and media types', () => {
  it('parses distribution error bodies', () => {
    assert.deepEqual(parseRegistryErrors('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}'), [
      { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: 'x' } },
    ]);
    assert.deepEqual(parseRegistryErrors('<html>'), []);
    assert.deepEqual(parseRegistryErrors('{"errors":"nope"}'), []);
  });
  it('maps statuses to error classes', () => {
    assert.equal(errorForStatus(404, 'x').name, 'NotFoundError');
    assert.equal(errorForStatus(401, 'x').name, 'PermissionDeniedError');
    assert.equal(errorForStatus(403, 'x').name, 'PermissionDeniedError');
    assert.equal(errorForStatus(400, 'x').name, 'InvalidArgumentError');
    assert.equal(errorForStatus(503, 'x').name, 'UnavailableError');
    assert.equal(errorForStatus(429, 'x').name, 'UnavailableError');
    assert.equal(errorForStatus(416, 'x').name, 'FailedPreconditionError');
  });
  it('knows which media types are manifests', () => {
    assert.ok(isManifestMediaType(MediaTypes.OCI_INDEX));
    assert.ok(isManifestMediaType(MediaTypes.DOCKER_MANIFEST));
    assert.ok(!isManifestMediaType(MediaTypes.OCI_LAYER_GZIP));
    assert.ok(!isManifestMediaType(MediaTypes.OCI_CONFIG));
  });
});
