import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PermissionDeniedError } from '../../../../core/errdefs/errdefs.js';
import { Authorizer, basicHeader, challengeScopes, parseWWWAuthenticate, repositoryScope } from '../../../../client/remotes/auth.js';

const res = (...values: string[]) => ({ status: 401, rawHeaders: values.flatMap((v) => ['WWW-Authenticate', v]) });

describe('parseWWWAuthenticate', () => {
  it('parses a registry Bearer challenge', () => {
    const [c] = parseWWWAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"');
    assert.deepEqual(c, {
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
    });
  });
  it('parses Basic', () => {
    assert.deepEqual(parseWWWAuthenticate('Basic realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
  });
  it('lowercases scheme and parameter names, keeps values', () => {
    assert.deepEqual(parseWWWAuthenticate('BEARER Realm="X",SERVICE=Svc'), [{ scheme: 'bearer', params: { realm: 'X', service: 'Svc' } }]);
  });
  it('handles spaces around = and commas, and escapes in quoted strings', () => {
    const [c] = parseWWWAuthenticate('Bearer  realm = "a\\"b\\\\c" ,  service="s" , error="insufficient_scope"');
    assert.deepEqual(c.params, { realm: 'a"b\\c', service: 's', error: 'insufficient_scope' });
  });
  it('reads several challenges in one header and orders Bearer first', () => {
    const cs = parseWWWAuthenticate('Basic realm="b", Bearer realm="t",service="s"');
    assert.deepEqual(cs.map((c) => c.scheme), ['bearer', 'basic']);
    assert.equal(cs[0].params.realm, 't');
    assert.equal(cs[1].params.realm, 'b');
  });
  it('reads several headers', () => {
    const cs = parseWWWAuthenticate(['Basic realm="b"', 'Bearer realm="t"', 'Digest realm="d", nonce="n"']);
    assert.deepEqual(cs.map((c) => c.scheme), ['bearer', 'digest', 'basic']);
    assert.equal(cs[1].params.nonce, 'n');
  });
  it('accepts an unquoted URL realm', () => {
    assert.equal(parseWWWAuthenticate('Bearer realm=https://x/token,service=y')[0].params.realm, 'https://x/token');
  });
  it('skips token68 data and bare schemes', () => {
    assert.deepEqual(parseWWWAuthenticate('Negotiate abc==, Basic realm="r"').map((c) => [c.scheme, c.params]), [
      ['basic', { realm: 'r' }],
      ['negotiate', {}],
    ]);
    assert.deepEqual(parseWWWAuthenticate('Bearer').map((c) => c.scheme), ['bearer']);
  });
  it('tolerates garbage', () => {
    assert.deepEqual(parseWWWAuthenticate(''), []);
    assert.deepEqual(parseWWWAuthenticate(' , ,"" '), []);
    assert.deepEqual(parseWWWAuthenticate('a=b, Basic realm="r"'), [{ scheme: 'basic', params: { realm: 'r' } }]);
    assert.deepEqual(parseWWWAuthenticate('Bearer realm="unterminated')[0].params, { realm: 'unterminated' });
  });
  it('splits scopes', () => {
    const [c] = parseWWWAuthenticate('Bearer realm="r",scope="repository:a:pull repository:b:pull,push"');
    assert.deepEqual(challengeScopes(c), ['repository:a:pull', 'repository:b:pull,push']);
  });
});

describe('scopes and headers', () => {
  it('repositoryScope', () => {
    assert.equal(repositoryScope('library/busybox'), 'repository:library/busybox:pull');
    assert.equal(repositoryScope('a/b', true), 'repository:a/b:pull,push');
  });
  it('basicHeader', () => {
    assert.equal(basicHeader({ username: 'u', secret: 'p' }), `Basic ${Buffer.from('u:p').toString('base64')}`);
  });
});

describe('Authorizer challenge handling (no network)', () => {
  it('is anonymous until challenged', async () => {
    const a = new Authorizer();
    assert.equal(await a.authorize('h', ['repository:x:pull']), undefined);
  });
  it('learns Basic only when credentials exist, and rejects credentials that fail twice', async () => {
    const none = new Authorizer();
    assert.deepEqual(await none.handleChallenge('h', res('Basic realm="r"'), { scopes: [] }), { retry: false });
    const asked: string[] = [];
    const a = new Authorizer({
      credentials: (host) => {
        asked.push(host);
        return { username: 'u', secret: 'p' };
      },
    });
    assert.deepEqual(await a.handleChallenge('h:1', res('Basic realm="r"'), { scopes: [] }), { retry: true });
    assert.deepEqual(asked, ['h:1']);
    assert.equal(a.schemeFor('h:1'), 'basic');
    const header = await a.authorize('h:1', []);
    assert.equal(header, basicHeader({ username: 'u', secret: 'p' }));
    await assert.rejects(a.handleChallenge('h:1', res('Basic realm="r"'), { scopes: [], sentAuthorization: header }), PermissionDeniedError);
  });
  it('learns Bearer and passes the challenge scopes for the retry', async () => {
    const a = new Authorizer();
    const out = await a.handleChallenge('h', res('Bearer realm="http://127.0.0.1:9/token",service="s",scope="repository:a/b:pull"'), { scopes: [] });
    assert.deepEqual(out, { retry: true, scopes: ['repository:a/b:pull'] });
    assert.equal(a.schemeFor('h'), 'bearer');
  });
  it('gives up on insufficient_scope for scopes already requested', async () => {
    const a = new Authorizer();
    const ch = res('Bearer realm="http://127.0.0.1:9/token",scope="repository:a/b:pull,push",error="insufficient_scope"');
    await assert.rejects(
      a.handleChallenge('h', ch, { scopes: ['repository:a/b:pull,push'], sentAuthorization: 'Bearer t' }),
      /authorization failed for h: insufficient_scope/,
    );
    // …but retries when the challenge names a scope not asked for yet.
    assert.deepEqual(await a.handleChallenge('h', ch, { scopes: ['repository:a/b:pull'], sentAuthorization: 'Bearer t' }), {
      retry: true,
      scopes: ['repository:a/b:pull,push'],
    });
  });
  it('ignores Bearer challenges without a realm', async () => {
    assert.deepEqual(await new Authorizer().handleChallenge('h', res('Bearer service="s"'), { scopes: [] }), { retry: false });
  });
});
