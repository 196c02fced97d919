import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '../../../../core/errdefs/errdefs.js';
import {
  DigestReference,
  digestOf,
  digestProblem,
  familiarName,
  familiarString,
  isDigest,
  parse,
  parseAnyReference,
  parseDockerRef,
  parseNormalizedNamed,
  parseSpec,
  specDigest,
  specHostname,
  specString,
  splitDockerDomain,
  splitObject,
  splitReference,
  validateDigest,
} from '../../../../client/reference/index.js';

const H = 'a'.repeat(64);
const D = `sha256:${H}`;
const D2 = `sha256:${'b'.repeat(64)}`;

describe('parseDockerRef normalization', () => {
  const cases: [input: string, full: string, familiar: string][] = [
    ['busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36', 'busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['docker.io/library/busybox:latest', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['index.docker.io/busybox', 'docker.io/library/busybox:latest', 'busybox:latest'],
    ['index.docker.io/user/app:v2', 'docker.io/user/app:v2', 'user/app:v2'],
    ['user/app', 'docker.io/user/app:latest', 'user/app:latest'],
    ['user/team/app:x', 'docker.io/user/team/app:x', 'user/team/app:x'],
    ['ghcr.io/owner/image:v1.2.3', 'ghcr.io/owner/image:v1.2.3', 'ghcr.io/owner/image:v1.2.3'],
    ['host:5000/a/b:tag', 'host:5000/a/b:tag', 'host:5000/a/b:tag'],
    ['127.0.0.1:5000/a/b', '127.0.0.1:5000/a/b:latest', '127.0.0.1:5000/a/b:latest'],
    ['localhost/app', 'localhost/app:latest', 'localhost/app:latest'],
    ['localhost:5000/app:dev', 'localhost:5000/app:dev', 'localhost:5000/app:dev'],
    ['my-registry.example.com/a_b/c__d/e-f/g.h:T_ag-1.0', 'my-registry.example.com/a_b/c__d/e-f/g.h:T_ag-1.0', 'my-registry.example.com/a_b/c__d/e-f/g.h:T_ag-1.0'],
    ['a---b/c', 'docker.io/a---b/c:latest', 'a---b/c:latest'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`, `busybox@${D}`],
    [`quay.io/x/y@${D}`, `quay.io/x/y@${D}`, `quay.io/x/y@${D}`],
    // containerd pulls by digest when both are given: the tag is dropped.
    [`busybox:1.36@${D}`, `docker.io/library/busybox@${D}`, `busybox@${D}`],
    [`host:5000/a/b:t@${D}`, `host:5000/a/b@${D}`, `host:5000/a/b@${D}`],
    // a first component without "." or ":" is not a domain
    ['foo/bar', 'docker.io/foo/bar:latest', 'foo/bar:latest'],
    ['Foo.com/bar', 'Foo.com/bar:latest', 'Foo.com/bar:latest'],
  ];
  for (const [input, full, familiar] of cases) {
    it(`${input} → ${full}`, () => {
      const ref = parseDockerRef(input);
      assert.equal(ref.toString(), full);
      assert.equal(ref.familiarString(), familiar);
    });
  }
});

describe('parseNormalizedNamed keeps what was written', () => {
  it('keeps tag and digest together', () => {
    const r = parseNormalizedNamed(`busybox:1.36@${D}`);
    assert.deepEqual(r.parts(), { domain: 'docker.io', path: 'library/busybox', tag: '1.36', digest: D });
    assert.equal(r.toString(), `docker.io/library/busybox:1.36@${D}`);
    assert.equal(r.object, `1.36@${D}`);
  });
  it('adds no tag', () => {
    const r = parseNormalizedNamed('busybox');
    assert.equal(r.tag, undefined);
    assert.equal(r.toString(), 'docker.io/library/busybox');
    assert.ok(r.isNameOnly());
    assert.equal(r.object, '');
  });
  it('exposes name, domain, path, familiarName', () => {
    const r = parseNormalizedNamed('docker.io/library/ubuntu:22.04');
    assert.equal(r.name, 'docker.io/library/ubuntu');
    assert.equal(r.domain, 'docker.io');
    assert.equal(r.path, 'library/ubuntu');
    assert.equal(r.familiarName, 'ubuntu');
    assert.equal(r.object, '22.04');
    assert.equal(JSON.stringify({ r }), '{"r":"docker.io/library/ubuntu:22.04"}');
  });
  it('object of a digest reference starts with @', () => {
    assert.equal(parseNormalizedNamed(`a/b@${D}`).object, `@${D}`);
  });
  it('withTag / withDigest / trimmed', () => {
    const r = parseNormalizedNamed('x/y');
    assert.equal(r.withTag('t').toString(), 'docker.io/x/y:t');
    assert.equal(r.withTag('t').withDigest(D).toString(), `docker.io/x/y:t@${D}`);
    assert.equal(r.withTag('t').withDigest(D).trimmed().toString(), 'docker.io/x/y');
    assert.throws(() => r.withTag('-bad'), InvalidArgumentError);
    assert.throws(() => r.withDigest('sha256:123'), InvalidArgumentError);
  });
});

describe('splitReference', () => {
  it('splits into domain, path, tag and digest', () => {
    assert.deepEqual(splitReference('busybox'), { domain: 'docker.io', path: 'library/busybox', tag: 'latest' });
    assert.deepEqual(splitReference('busybox', { defaultTag: false }), { domain: 'docker.io', path: 'library/busybox' });
    assert.deepEqual(splitReference('host:5000/a/b:tag'), { domain: 'host:5000', path: 'a/b', tag: 'tag' });
    assert.deepEqual(splitReference(`host:5000/a/b@${D}`), { domain: 'host:5000', path: 'a/b', digest: D });
    assert.deepEqual(splitReference(`a/b:t@${D}`), { domain: 'docker.io', path: 'a/b', tag: 't', digest: D });
  });
  it('splitDockerDomain', () => {
    assert.deepEqual(splitDockerDomain('busybox'), ['docker.io', 'library/busybox']);
    assert.deepEqual(splitDockerDomain('a/b'), ['docker.io', 'a/b']);
    assert.deepEqual(splitDockerDomain('localhost/b'), ['localhost', 'b']);
    assert.deepEqual(splitDockerDomain('index.docker.io/b'), ['docker.io', 'library/b']);
    assert.deepEqual(splitDockerDomain('h:1/b/c'), ['h:1', 'b/c']);
  });
});

describe('familiar names', () => {
  const cases: [string, string][] = [
    ['docker.io/library/busybox:latest', 'busybox'],
    ['docker.io/user/app', 'user/app'],
    ['docker.io/library/a/b', 'library/a/b'],
    ['quay.io/library/busybox', 'quay.io/library/busybox'],
    ['localhost:5000/x', 'localhost:5000/x'],
    ['busybox', 'busybox'],
  ];
  for (const [input, want] of cases) it(`${input} → ${want}`, () => assert.equal(familiarName(input), want));
  it('familiarString keeps tag and digest', () => {
    assert.equal(familiarString(`docker.io/library/redis:7@${D}`), `redis:7@${D}`);
    assert.equal(familiarString(parseDockerRef('redis')), 'redis:latest');
  });
});

describe('parse without normalization', () => {
  it('leaves single names without a domain', () => {
    const r = parse('busybox:1');
    assert.equal(r.domain, '');
    assert.equal(r.path, 'busybox');
    assert.equal(r.tag, '1');
    assert.equal(r.toString(), 'busybox:1');
  });
  it('takes the first component as domain when there are several', () => {
    const r = parse('foo/bar');
    assert.equal(r.domain, 'foo');
    assert.equal(r.path, 'bar');
  });
  it('reads host:port/name as a domain with port, host:port alone as name:tag', () => {
    assert.deepEqual(parse('host:5000/app').parts(), { domain: 'host:5000', path: 'app' });
    assert.deepEqual(parse('host:5000').parts(), { domain: '', path: 'host', tag: '5000' });
  });
});

describe('invalid references', () => {
  const cases: [input: string, problem: RegExp][] = [
    ['', /at least one component/],
    ['Busybox', /must be lowercase/],
    ['docker.io/Library/busybox', /must be lowercase/],
    ['HOST:5000/UPPER', /must be lowercase/],
    [H, /64-byte hexadecimal/],
    ['busybox:', /invalid reference format/],
    ['busybox:-tag', /invalid tag "-tag"/],
    [`busybox:${'t'.repeat(129)}`, /invalid tag/],
    ['a:b:c', /invalid tag "b:c"/],
    ['busybox@', /invalid reference format/],
    ['busybox@sha256:123', /invalid checksum digest length/],
    [`busybox@sha256:${'A'.repeat(64)}`, /lowercase hex/],
    [`busybox@md5:${'a'.repeat(32)}`, /unsupported digest algorithm "md5"/],
    [`busybox@${D}@${D2}`, /more than one "@"/],
    ['foo/', /empty path component/],
    ['/foo', /empty path component/],
    ['foo//bar', /empty path component/],
    ['https://docker.io/library/busybox', /URL scheme/],
    ['bad name', /whitespace/],
    ['a_/b', /invalid reference format/],
    ['-a/b', /invalid reference format/],
    ['a/b.', /invalid reference format/],
    ['a/.b', /invalid reference format/],
    ['a/b___c', /invalid reference format/],
    ['host:port/x', /invalid reference format/],
    [`${'a'.repeat(250)}/${'b'.repeat(10)}`, /not be more than 255 characters/],
  ];
  for (const [input, problem] of cases) {
    it(JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input), () => {
      assert.throws(
        () => parseDockerRef(input),
        (err: Error) => {
          assert.ok(err instanceof InvalidArgumentError, `${err.name}: ${err.message}`);
          assert.match(err.message, problem);
          if (input.length < 100) assert.ok(err.message.includes(`"${input}"`), `message names the reference: ${err.message}`);
          return true;
        },
      );
    });
  }
  it('is fast on hostile input (no catastrophic backtracking)', () => {
    const start = process.hrtime.bigint();
    for (const s of [`${'a-'.repeat(5000)}!`, `${'a.'.repeat(5000)}/`, `${'a_'.repeat(5000)}A`, `x/${'a'.repeat(40)}${'-'.repeat(3000)}!`]) {
      assert.throws(() => parseDockerRef(s), InvalidArgumentError);
    }
    assert.ok(Number(process.hrtime.bigint() - start) / 1e6 < 1000);
  });
});

describe('parseAnyReference', () => {
  it('accepts bare identifiers and digests', () => {
    const a = parseAnyReference(H);
    assert.ok(a instanceof DigestReference);
    assert.equal(a.toString(), D);
    const b = parseAnyReference(D2);
    assert.ok(b instanceof DigestReference);
    assert.equal(b.digest, D2);
  });
  it('falls back to normalized names', () => {
    assert.equal(parseAnyReference('busybox:1').toString(), 'docker.io/library/busybox:1');
  });
});

describe('digests', () => {
  it('validates algorithms and lengths', () => {
    assert.ok(isDigest(D));
    assert.ok(isDigest(`sha512:${'0'.repeat(128)}`));
    assert.ok(isDigest(`sha384:${'0'.repeat(96)}`));
    assert.equal(digestProblem('sha256'), 'invalid digest format');
    assert.equal(digestProblem(':abc'), 'invalid digest format');
    assert.match(digestProblem(`sha512:${'0'.repeat(64)}`)!, /length/);
    assert.match(digestProblem(`foo:${'0'.repeat(64)}`)!, /unsupported/);
    assert.match(digestProblem('sha256:xyz')!, /length/);
    assert.throws(() => validateDigest('nope'), /invalid digest "nope": invalid digest format: invalid argument/);
  });
  it('digestOf', () => {
    assert.equal(digestOf(''), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.ok(digestOf('x', 'sha512').startsWith('sha512:'));
  });
});

describe('containerd Spec (locator/object)', () => {
  it('parses locator and object', () => {
    assert.deepEqual(parseSpec('docker.io/library/redis:foo'), { locator: 'docker.io/library/redis', object: 'foo' });
    assert.deepEqual(parseSpec(`docker.io/library/redis@${D}`), { locator: 'docker.io/library/redis', object: `@${D}` });
    assert.deepEqual(parseSpec(`docker.io/library/redis:foo@${D}`), { locator: 'docker.io/library/redis', object: `foo@${D}` });
    assert.deepEqual(parseSpec('localhost:5000/a'), { locator: 'localhost:5000/a', object: '' });
    assert.deepEqual(parseSpec('host'), { locator: 'host', object: '' });
  });
  it('rejects URLs and missing hosts', () => {
    assert.throws(() => parseSpec('http://x/y'), InvalidArgumentError);
    assert.throws(() => parseSpec('/x/y'), /hostname required/);
    assert.throws(() => parseSpec(''), /hostname required/);
  });
  it('hostname, digest, string, splitObject', () => {
    const s = parseSpec(`h:1/a/b:t@${D}`);
    assert.equal(specHostname(s), 'h:1');
    assert.equal(specDigest(s), D);
    assert.equal(specString(s), `h:1/a/b:t@${D}`);
    assert.equal(specDigest(parseSpec('h/a:t')), undefined);
    assert.throws(() => specDigest(parseSpec('h/a@sha256:12')), InvalidArgumentError);
    assert.deepEqual(splitObject(`t@${D}`), { tag: 't', digest: D });
    assert.deepEqual(splitObject('t'), { tag: 't' });
  });
});
