/**
 * Token and Basic authorization end to end: small loopback servers that demand credentials and
 * forward authorized requests to a real docker-registry.
 */
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, beforeEach, describe, it } from 'node:test';
import { PermissionDeniedError } from '../../../../core/errdefs/errdefs.js';
import { Resolver, pushImage, distributionSourceKey, type Credentials } from '../../../../client/remotes/index.js';
import { buildImage, proxyTo, startRegistry, startServer, type RunningRegistry, type TestImage } from './helpers.js';

type Server = Awaited<ReturnType<typeof startServer>>;

/** What a request needs: "repository:<repo>:pull" or ":pull,push". */
function neededScope(req: http.IncomingMessage): { repo: string; actions: string[] } | undefined {
  const m = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(req.url ?? '');
  if (!m) return undefined;
  const read = req.method === 'GET' || req.method === 'HEAD';
  return { repo: m[1], actions: read ? ['pull'] : ['pull', 'push'] };
}

describe('bearer token and basic authorization', { timeout: 120_000 }, () => {
  let reg: RunningRegistry;
  let img: TestImage;

  before(async () => {
    reg = await startRegistry();
    img = buildImage(64 * 1024);
    const pusher = await new Resolver({ plainHttp: true }).pusher(`${reg.host}/a/b:v1`);
    await pushImage(pusher, img.index.desc, (d) => img.blobs.get(d.digest)!);
  });
  after(async () => {
    await reg?.stop();
  });

  describe('Bearer', () => {
    let srv: Server;
    const tokenRequests: { url: URL; method: string; authorization?: string; form?: URLSearchParams }[] = [];
    const registryAuth: (string | undefined)[] = [];
    /** token → granted "repo" → actions */
    const tokens = new Map<string, Map<string, Set<string>>>();
    let requireCreds: Credentials | undefined;
    let getRefused = false;
    let pullOnly = false;
    let n = 0;

    const grant = (scopes: string[]) => {
      const t = `tok-${++n}`;
      const g = new Map<string, Set<string>>();
      for (const s of scopes) {
        const [kind, repo, actions] = s.split(':');
        if (kind !== 'repository') continue;
        const allowed = actions.split(',').filter((a) => a === 'pull' || (a === 'push' && !pullOnly));
        g.set(repo, new Set([...(g.get(repo) ?? []), ...allowed]));
      }
      tokens.set(t, g);
      return t;
    };

    before(async () => {
      srv = await startServer((req, res) => {
        const url = new URL(req.url ?? '/', `http://${srv.host}`);
        if (url.pathname === '/token') {
          const body: Buffer[] = [];
          req.on('data', (c: Buffer) => body.push(c));
          req.on('end', () => {
            const form = req.method === 'POST' ? new URLSearchParams(Buffer.concat(body).toString()) : undefined;
            tokenRequests.push({ url, method: req.method!, authorization: req.headers.authorization, form });
            if (req.method === 'GET' && getRefused) {
              res.writeHead(405).end();
              return;
            }
            if (requireCreds) {
              const basic = `Basic ${Buffer.from(`${requireCreds.username}:${requireCreds.secret}`).toString('base64')}`;
              const ok = form
                ? form.get('username') === requireCreds.username && form.get('password') === requireCreds.secret
                : req.headers.authorization === basic;
              if (!ok) {
                res.writeHead(401, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
                return;
              }
            }
            if ((form?.get('service') ?? url.searchParams.get('service')) !== 'test') {
              res.writeHead(400).end();
              return;
            }
            const scopes = form ? (form.get('scope') ?? '').split(' ').filter(Boolean) : url.searchParams.getAll('scope');
            const t = grant(scopes);
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(form ? { access_token: t, expires_in: 300 } : { token: t, expires_in: 300, issued_at: new Date().toISOString() }));
          });
          return;
        }
        registryAuth.push(req.headers.authorization);
        const need = neededScope(req);
        const challenge = (error?: string) => {
          const scope = need ? `repository:${need.repo}:${need.actions.join(',')}` : '';
          let h = `Bearer realm="http://${srv.host}/token",service="test"`;
          if (scope) h += `,scope="${scope}"`;
          if (error) h += `,error="${error}"`;
          req.resume();
          res.writeHead(401, { 'www-authenticate': h, 'content-type': 'application/json' });
          res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}');
        };
        const auth = req.headers.authorization;
        if (!auth?.startsWith('Bearer ')) return challenge();
        const granted = tokens.get(auth.slice(7));
        if (!granted) return challenge('invalid_token');
        if (need && !need.actions.every((a) => granted.get(need.repo)?.has(a))) return challenge('insufficient_scope');
        proxyTo(reg.host, req, res);
      });
    });
    after(async () => {
      await srv?.stop();
    });
    beforeEach(() => {
      tokenRequests.length = 0;
      registryAuth.length = 0;
      requireCreds = undefined;
      getRefused = false;
      pullOnly = false;
    });

    it('fetches an anonymous token for the challenged scope, then caches it', async () => {
      const r = new Resolver({ plainHttp: true });
      const { descriptor } = await r.resolve(`${srv.host}/a/b:v1`);
      assert.deepEqual(descriptor, img.index.desc);
      assert.equal(tokenRequests.length, 1);
      assert.equal(tokenRequests[0].method, 'GET');
      assert.equal(tokenRequests[0].url.searchParams.get('service'), 'test');
      assert.deepEqual(tokenRequests[0].url.searchParams.getAll('scope'), ['repository:a/b:pull']);
      assert.equal(tokenRequests[0].authorization, undefined);
      assert.equal(registryAuth[0], undefined, 'first request is anonymous');
      assert.match(registryAuth[1] ?? '', /^Bearer tok-/);

      const f = await r.fetcher(`${srv.host}/a/b:v1`);
      assert.deepEqual(await f.fetchBytes(img.index.desc), img.index.bytes);
      assert.deepEqual(await f.fetchBytes(img.layer.desc, { maxSize: 1 << 24 }), img.layer.bytes);
      assert.equal(tokenRequests.length, 1, 'the cached token is reused for the same scope');
      assert.ok(registryAuth.slice(2).every((a) => a?.startsWith('Bearer ')), 'later requests carry the token up front');
    });

    it('sends credentials to the token endpoint with Basic auth', async () => {
      requireCreds = { username: 'alice', secret: 's3cret' };
      const seenHosts: string[] = [];
      const r = new Resolver({
        plainHttp: true,
        credentials: (host) => {
          seenHosts.push(host);
          return { username: 'alice', secret: 's3cret' };
        },
      });
      assert.deepEqual((await r.resolve(`${srv.host}/a/b:v1`)).descriptor, img.index.desc);
      assert.deepEqual(seenHosts, [srv.host]);
      assert.equal(tokenRequests[0].authorization, `Basic ${Buffer.from('alice:s3cret').toString('base64')}`);
    });

    it('falls back to an OAuth form POST when the token endpoint refuses GET', async () => {
      requireCreds = { username: 'alice', secret: 's3cret' };
      getRefused = true;
      const r = new Resolver({ plainHttp: true, credentials: () => ({ username: 'alice', secret: 's3cret' }) });
      assert.deepEqual((await r.resolve(`${srv.host}/a/b:v1`)).descriptor, img.index.desc);
      assert.deepEqual(tokenRequests.map((t) => t.method), ['GET', 'POST']);
      const form = tokenRequests[1].form!;
      assert.equal(form.get('grant_type'), 'password');
      assert.equal(form.get('scope'), 'repository:a/b:pull');
      assert.equal(form.get('service'), 'test');
    });

    it('fails with PermissionDeniedError when the token endpoint rejects the credentials', async () => {
      requireCreds = { username: 'alice', secret: 's3cret' };
      const noCreds = new Resolver({ plainHttp: true });
      await assert.rejects(noCreds.resolve(`${srv.host}/a/b:v1`), PermissionDeniedError);
      const wrong = new Resolver({ plainHttp: true, credentials: () => ({ username: 'alice', secret: 'wrong' }) });
      await assert.rejects(wrong.resolve(`${srv.host}/a/b:v1`), PermissionDeniedError);
    });

    it('gets a new token when the registry stops accepting the cached one', async () => {
      const r = new Resolver({ plainHttp: true });
      await r.resolve(`${srv.host}/a/b:v1`);
      assert.equal(tokenRequests.length, 1);
      tokens.clear(); // every issued token is now unknown: the registry answers error="invalid_token"
      const f = await r.fetcher(`${srv.host}/a/b:v1`);
      assert.deepEqual(await f.fetchBytes(img.config.desc), img.config.bytes);
      assert.equal(tokenRequests.length, 2);
    });

    it('pushes with a pull,push token and mounts with the source repository added to the scope', async () => {
      const r = new Resolver({ plainHttp: true });
      const pusher = await r.pusher(`${srv.host}/a/c:v1`);
      const desc = { ...img.layer.desc, annotations: { [distributionSourceKey(srv.host)]: 'a/b' } };
      assert.equal(await pusher.pushBlob(desc, img.layer.bytes), 'mounted');
      const scopes = tokenRequests.map((t) => t.url.searchParams.getAll('scope').sort().join(' '));
      assert.ok(scopes.includes('repository:a/b:pull repository:a/c:pull,push'), `token scopes: ${JSON.stringify(scopes)}`);
      const results = await pushImage(pusher, img.index.desc, (d) => img.blobs.get(d.digest)!);
      assert.equal(results.get(img.index.desc.digest), 'uploaded');
      assert.equal(results.get(img.layer.desc.digest), 'exists');
      assert.deepEqual((await r.resolve(`${srv.host}/a/c:v1`)).descriptor, img.index.desc);
    });

    it('stops with PermissionDeniedError when the token never grants push', async () => {
      pullOnly = true;
      const r = new Resolver({ plainHttp: true });
      const pusher = await r.pusher(`${srv.host}/a/d:v1`);
      const bytes = Buffer.from('denied');
      const { sha256 } = await import('./helpers.js');
      await assert.rejects(pusher.pushBlob({ mediaType: 'application/octet-stream', digest: sha256(bytes), size: bytes.length }, bytes), PermissionDeniedError);
      assert.ok(tokenRequests.length <= 4, `bounded token requests, got ${tokenRequests.length}`);
    });
  });

  describe('Basic', () => {
    let srv: Server;
    const seen: (string | undefined)[] = [];
    const good = `Basic ${Buffer.from('bob:hunter2').toString('base64')}`;

    before(async () => {
      srv = await startServer((req, res) => {
        seen.push(req.headers.authorization);
        if (req.headers.authorization !== good) {
          req.resume();
          res.writeHead(401, { 'www-authenticate': 'Basic realm="berth test"' }).end();
          return;
        }
        proxyTo(reg.host, req, res);
      });
    });
    after(async () => {
      await srv?.stop();
    });

    it('retries with Basic credentials after the challenge and keeps sending them', async () => {
      seen.length = 0;
      const r = new Resolver({ plainHttp: true, credentials: (host) => (host === srv.host ? { username: 'bob', secret: 'hunter2' } : undefined) });
      assert.deepEqual((await r.resolve(`${srv.host}/a/b:v1`)).descriptor, img.index.desc);
      const f = await r.fetcher(`${srv.host}/a/b:v1`);
      assert.deepEqual(await f.fetchBytes(img.manifest.desc), img.manifest.bytes);
      assert.deepEqual(seen, [undefined, good, good]);
    });

    it('fails with PermissionDeniedError without or with wrong credentials', async () => {
      await assert.rejects(new Resolver({ plainHttp: true }).resolve(`${srv.host}/a/b:v1`), PermissionDeniedError);
      seen.length = 0;
      const wrong = new Resolver({ plainHttp: true, credentials: () => ({ username: 'bob', secret: 'nope' }) });
      await assert.rejects(wrong.resolve(`${srv.host}/a/b:v1`), PermissionDeniedError);
      assert.ok(seen.length <= 3, `bounded retries, got ${seen.length}`);
    });
  });
});
