/**
 * Registry client behaviour against misbehaving servers (loopback fakes): dropped connections,
 * ignored Range headers, bad Content-Range, wrong content, HEAD without digest, HEAD refused,
 * redirects to blob storage, 429 back-off.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type http from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { FailedPreconditionError, UnavailableError } from '../../../../core/errdefs/errdefs.js';
import { Resolver, type Descriptor } from '../../../../client/remotes/index.js';
import { sha256, startServer } from './helpers.js';

type Server = Awaited<ReturnType<typeof startServer>>;

const blob = randomBytes(256 * 1024);
const blobDesc: Descriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(blob), size: blob.length };
const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: blobDesc, layers: [] }));
const manifestDigest = sha256(manifest);

interface Behaviour {
  /** Drop the connection after this many body bytes, for the first `dropTimes` blob requests. */
  dropAfter?: number;
  dropTimes?: number;
  ignoreRange?: boolean;
  badContentRange?: boolean;
  corrupt?: boolean;
  headWithoutDigest?: boolean;
  refuseHead?: boolean;
  redirectTo?: string;
  busyTimes?: number;
}

describe('registry client against misbehaving servers', { timeout: 60_000 }, () => {
  let srv: Server;
  let storage: Server;
  let b: Behaviour = {};
  let drops = 0;
  let busy = 0;
  const log: { method: string; url: string; range?: string; authorization?: string }[] = [];
  const storageLog: { url: string; authorization?: string; range?: string }[] = [];

  const serveBytes = (req: http.IncomingMessage, res: http.ServerResponse, bytes: Buffer, type: string) => {
    let body = b.corrupt ? Buffer.from(bytes).fill(0x41, 0, 16) : bytes;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const headers: http.OutgoingHttpHeaders = { 'content-type': type, 'docker-content-digest': sha256(bytes) };
    let status = 200;
    if (m && !b.ignoreRange) {
      const start = Number(m[1]);
      headers['content-range'] = b.badContentRange ? `bytes 0-${body.length - 1}/${body.length}` : `bytes ${start}-${body.length - 1}/${body.length}`;
      body = body.subarray(start);
      status = 206;
    }
    headers['content-length'] = body.length;
    if (req.method === 'HEAD') {
      res.writeHead(status, headers).end();
      return;
    }
    if (b.dropAfter !== undefined && drops < (b.dropTimes ?? 1) && body.length > b.dropAfter) {
      drops++;
      res.writeHead(status, headers);
      res.write(body.subarray(0, b.dropAfter), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.writeHead(status, headers).end(body);
  };

  before(async () => {
    storage = await startServer((req, res) => {
      storageLog.push({ url: req.url!, authorization: req.headers.authorization, range: req.headers.range });
      serveBytes(req, res, blob, 'application/octet-stream');
    });
    srv = await startServer((req, res) => {
      log.push({ method: req.method!, url: req.url!, range: req.headers.range, authorization: req.headers.authorization });
      if (b.busyTimes && busy < b.busyTimes) {
        busy++;
        res.writeHead(429, { 'retry-after': '0' }).end();
        return;
      }
      if (req.url === '/v2/x/y/manifests/v1' || req.url === `/v2/x/y/manifests/${manifestDigest}`) {
        if (req.method === 'HEAD' && b.refuseHead) {
          res.writeHead(405).end();
          return;
        }
        if (req.method === 'HEAD' && b.headWithoutDigest) {
          res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }).end();
          return;
        }
        serveBytes(req, res, manifest, 'application/vnd.oci.image.manifest.v1+json');
        return;
      }
      if (req.url === `/v2/x/y/blobs/${blobDesc.digest}`) {
        if (b.redirectTo) {
          res.writeHead(307, { location: `${b.redirectTo}/storage/blob?sig=1` }).end();
          return;
        }
        serveBytes(req, res, blob, 'application/octet-stream');
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}');
    });
  });
  after(async () => {
    await srv?.stop();
    await storage?.stop();
  });
  beforeEach(() => {
    b = {};
    drops = 0;
    busy = 0;
    log.length = 0;
    storageLog.length = 0;
  });

  const resolver = () => new Resolver({ plainHttp: true, headers: { authorization: 'Bearer static-test-token' } });
  const fetcher = () => resolver().fetcher(`${srv.host}/x/y:v1`);

  it('resumes a dropped download from the received offset with Range', async () => {
    b = { dropAfter: 100_000, dropTimes: 2 };
    const chunks: Buffer[] = [];
    const res = await (await fetcher()).fetchVerified(blobDesc, (c) => void chunks.push(c));
    assert.equal(res.resumes, 2);
    assert.deepEqual(Buffer.concat(chunks), blob);
    const blobReqs = log.filter((l) => l.url.includes('/blobs/'));
    assert.deepEqual(blobReqs.map((l) => l.range), [undefined, 'bytes=100000-', 'bytes=200000-']);
  });

  it('gives up after the bounded number of resumes', async () => {
    b = { dropAfter: 1000, dropTimes: 100 };
    await assert.rejects((await fetcher()).fetchVerified(blobDesc, () => undefined, { retries: 2 }), (err: Error) => {
      assert.ok(err instanceof UnavailableError, String(err));
      assert.match(err.message, /after 2 resumes/);
      return true;
    });
    assert.equal(log.filter((l) => l.url.includes('/blobs/')).length, 3);
  });

  it('skips to the offset when the server ignores Range and sends everything', async () => {
    b = { ignoreRange: true };
    const s = await (await fetcher()).fetchBlob(blobDesc, { offset: 12345 });
    assert.deepEqual(Buffer.concat(await s.toArray()), blob.subarray(12345));
    assert.equal(log[0].range, 'bytes=12345-');
  });

  it('rejects a Content-Range that does not start at the offset', async () => {
    b = { badContentRange: true };
    await assert.rejects((await fetcher()).fetchBlob(blobDesc, { offset: 10 }), UnavailableError);
  });

  it('fails with FailedPreconditionError on content that does not match the digest, sink left open', async () => {
    b = { corrupt: true };
    let ended = false;
    const { Writable } = await import('node:stream');
    const sink = new Writable({
      write(_c, _e, cb) {
        cb();
      },
      final(cb) {
        ended = true;
        cb();
      },
    });
    await assert.rejects((await fetcher()).fetchVerified(blobDesc, sink, { end: true }), (err: Error) => {
      assert.ok(err instanceof FailedPreconditionError);
      assert.match(err.message, /digest mismatch/);
      return true;
    });
    assert.equal(ended, false);
    assert.equal(log.filter((l) => l.url.includes('/blobs/')).length, 1, 'a digest mismatch is not retried');
  });

  it('falls back to GET and hashes the body when HEAD has no Docker-Content-Digest', async () => {
    b = { headWithoutDigest: true };
    const { descriptor } = await resolver().resolve(`${srv.host}/x/y:v1`);
    assert.deepEqual(descriptor, { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: manifestDigest, size: manifest.length });
    assert.deepEqual(log.map((l) => l.method), ['HEAD', 'GET']);
  });

  it('uses GET when HEAD is refused with 405', async () => {
    b = { refuseHead: true };
    const { descriptor } = await resolver().resolve(`${srv.host}/x/y:v1`);
    assert.equal(descriptor.digest, manifestDigest);
    assert.deepEqual(log.map((l) => l.method), ['HEAD', 'GET']);
  });

  it('follows a redirect to blob storage without leaking the registry Authorization header', async () => {
    b = { redirectTo: `http://${storage.host}` };
    const f = await fetcher();
    const chunks: Buffer[] = [];
    await f.fetchVerified(blobDesc, (c) => void chunks.push(c));
    assert.deepEqual(Buffer.concat(chunks), blob);
    assert.equal(log[0].authorization, 'Bearer static-test-token');
    assert.deepEqual(storageLog.map((l) => [l.url, l.authorization]), [['/storage/blob?sig=1', undefined]]);
    const tail = await f.fetchBlob(blobDesc, { offset: 1000 });
    assert.deepEqual(Buffer.concat(await tail.toArray()), blob.subarray(1000));
    assert.equal(storageLog[1].range, 'bytes=1000-', 'Range survives the redirect');
  });

  it('backs off and retries on 429', async () => {
    b = { busyTimes: 2 };
    const { descriptor } = await resolver().resolve(`${srv.host}/x/y:v1`);
    assert.equal(descriptor.digest, manifestDigest);
    assert.equal(log.length, 3);
  });
});
