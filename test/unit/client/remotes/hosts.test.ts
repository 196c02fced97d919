import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { InvalidArgumentError } from '../../../../core/errdefs/errdefs.js';
import {
  configureHosts,
  defaultHost,
  findHostDirectory,
  hostDirectoryCandidates,
  isLocalhost,
  loadHostDirectory,
  parseHostsToml,
} from '../../../../client/remotes/hosts.js';

describe('parseHostsToml', () => {
  it('returns mirrors in file order, then the server', () => {
    const entries = parseHostsToml(
      `
server = "https://registry-1.docker.io"

[host."https://mirror-b.example.com"]
  capabilities = ["pull", "resolve"]

[host."http://mirror-a.example.com:5000"]
  capabilities = ["pull"]
  skip_verify = true
`,
      '/etc/containerd/certs.d/docker.io',
    );
    assert.deepEqual(entries, [
      { scheme: 'https', host: 'mirror-b.example.com', path: '/v2', capabilities: ['pull', 'resolve'] },
      { scheme: 'http', host: 'mirror-a.example.com:5000', path: '/v2', capabilities: ['pull'], skipVerify: true },
      { scheme: 'https', host: 'registry-1.docker.io', path: '/v2', capabilities: ['pull', 'resolve', 'push'] },
    ]);
  });

  it('defaults: no server means the implicit default server; no capabilities means all', () => {
    assert.deepEqual(parseHostsToml(''), [{ capabilities: ['pull', 'resolve', 'push'] }]);
    assert.deepEqual(parseHostsToml('[host."m.example"]'), [
      { scheme: 'https', host: 'm.example', path: '/v2', capabilities: ['pull', 'resolve', 'push'] },
      { capabilities: ['pull', 'resolve', 'push'] },
    ]);
  });

  it('applies top-level settings to the server entry', () => {
    const [server] = parseHostsToml('server = "reg.example"\ncapabilities = ["PULL"]\nskip_verify = false\nca = "ca.pem"', '/certs');
    assert.deepEqual(server, { scheme: 'https', host: 'reg.example', path: '/v2', capabilities: ['pull'], skipVerify: false, ca: ['/certs/ca.pem'] });
  });

  it('handles paths and override_path', () => {
    const e = parseHostsToml(
      `
[host."https://a.example/some/prefix"]
[host."https://b.example/custom/api"]
  override_path = true
[host."https://c.example/x/v2/"]
[host."https://d.example"]
  override_path = true
`,
    );
    assert.deepEqual(e.slice(0, 4).map((x) => x.path), ['/some/prefix/v2', '/custom/api', '/x/v2', '']);
  });

  it('reads ca, client and header in all their forms', () => {
    const [h] = parseHostsToml(
      `
[host."https://m.example"]
  ca = ["a.pem", "/abs/b.pem"]
  client = [["c.cert", "c.key"], ["d.cert", "/abs/d.key"]]
  header = { x-one = "1", x-many = ["a", "b"] }
`,
      '/base',
    );
    assert.deepEqual(h.ca, ['/base/a.pem', '/abs/b.pem']);
    assert.deepEqual(h.client, [
      ['/base/c.cert', '/base/c.key'],
      ['/base/d.cert', '/abs/d.key'],
    ]);
    assert.deepEqual(h.header, { 'x-one': ['1'], 'x-many': ['a', 'b'] });
    const [single] = parseHostsToml('[host."https://m"]\nclient = "one.pem"', '/b');
    assert.deepEqual(single.client, [['/b/one.pem', '']]);
    const [list] = parseHostsToml('[host."https://m"]\nclient = ["one.pem", "two.pem"]', '/b');
    assert.deepEqual(list.client, [['/b/one.pem', ''], ['/b/two.pem', '']]);
  });

  it('rejects bad values naming the file and the problem', () => {
    const bad: [string, RegExp][] = [
      ['capabilities = ["pull", "fly"]', /unknown capability "fly"/],
      ['capabilities = "pull"', /"capabilities" must be a list/],
      ['skip_verify = "yes"', /"skip_verify" must be a boolean/],
      ['[host."https://m"]\nca = 3', /host "https:\/\/m": "ca" must be/],
      ['[host."https://m"]\nheader = { a = 1 }', /header "a" must be a string/],
      ['[host."https://m"]\nclient = [["a"]]', /invalid "client" entry/],
      ['server = 5', /"server" must be a string/],
      ['server = "ftp://x"', /cannot parse server URL|unsupported scheme/],
      ['this is not toml', /invalid TOML/],
    ];
    for (const [text, re] of bad) {
      assert.throws(
        () => parseHostsToml(text, '/d', '/d/hosts.toml'),
        (err: Error) => err instanceof InvalidArgumentError && re.test(err.message) && err.message.startsWith('/d/hosts.toml'),
        text,
      );
    }
  });
});

describe('host helpers', () => {
  it('defaultHost', () => {
    assert.equal(defaultHost('docker.io'), 'registry-1.docker.io');
    assert.equal(defaultHost('ghcr.io'), 'ghcr.io');
  });
  it('isLocalhost', () => {
    for (const h of ['localhost', 'localhost:5000', '127.0.0.1', '127.0.0.1:80', '127.1.2.3', '::1', '[::1]', '[::1]:5000']) assert.ok(isLocalhost(h), h);
    for (const h of ['example.com', '10.0.0.1', '128.0.0.1:5000', 'localhost.example.com', '[::2]:1']) assert.ok(!isLocalhost(h), h);
  });
  it('directory candidates', () => {
    assert.deepEqual(hostDirectoryCandidates('/c', 'docker.io'), ['/c/docker.io', '/c/_default']);
    assert.deepEqual(hostDirectoryCandidates('/c', 'h:5000'), ['/c/h_5000_', '/c/h:5000', '/c/_default']);
  });
});

describe('host directories and configureHosts', () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'berth-hosts-unit-'));
    await mkdir(join(root, 'reg.example'));
    await writeFile(
      join(root, 'reg.example', 'hosts.toml'),
      'server = "https://upstream.example"\n[host."http://127.0.0.1:5000"]\ncapabilities = ["pull","resolve"]\nheader = { x-mirror = "yes" }\n',
    );
    await mkdir(join(root, 'certs.example'));
    await writeFile(join(root, 'certs.example', 'ca.crt'), 'not really a cert');
    await writeFile(join(root, 'certs.example', 'client.cert'), 'c');
    await writeFile(join(root, 'certs.example', 'client.key'), 'k');
    await mkdir(join(root, 'port.example_8443_'));
    await writeFile(join(root, 'port.example_8443_', 'hosts.toml'), 'server = "https://port.example:8443"\nskip_verify = true\n');
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('finds directories, including host_port_ form, and none for unknown hosts', async () => {
    assert.equal(await findHostDirectory(root, 'reg.example'), join(root, 'reg.example'));
    assert.equal(await findHostDirectory(root, 'port.example:8443'), join(root, 'port.example_8443_'));
    assert.equal(await findHostDirectory(root, 'other.example'), undefined);
  });

  it('uses certificate files when there is no hosts.toml', async () => {
    assert.deepEqual(await loadHostDirectory(join(root, 'certs.example')), [
      {
        capabilities: ['pull', 'resolve', 'push'],
        ca: [join(root, 'certs.example', 'ca.crt')],
        client: [[join(root, 'certs.example', 'client.cert'), join(root, 'certs.example', 'client.key')]],
      },
    ]);
  });

  it('builds registry hosts from hosts.toml', async () => {
    const hosts = await configureHosts({ configPath: root, headers: { 'x-global': 'g' } })('reg.example');
    assert.deepEqual(
      hosts.map((h) => ({ scheme: h.scheme, host: h.host, path: h.path, caps: h.capabilities, header: h.header })),
      [
        { scheme: 'http', host: '127.0.0.1:5000', path: '/v2', caps: ['pull', 'resolve'], header: { 'x-global': ['g'], 'x-mirror': ['yes'] } },
        { scheme: 'https', host: 'upstream.example', path: '/v2', caps: ['pull', 'resolve', 'push'], header: { 'x-global': ['g'] } },
      ],
    );
    assert.ok(hosts[0].authorizer && hosts[0].authorizer === hosts[1].authorizer, 'one shared authorizer');
  });

  it('gives hosts with TLS settings their own pool', async () => {
    const [h] = await configureHosts({ configPath: root })('port.example:8443');
    assert.deepEqual(h.tls, { skipVerify: true });
    assert.equal(h.host, 'port.example:8443');
    assert.equal((h.agent as unknown as { options: { rejectUnauthorized: boolean } }).options.rejectUnauthorized, false);
  });

  it('defaults to https://<host>, docker.io to registry-1.docker.io, http for localhost (as containerd) or when asked', async () => {
    const plainless = configureHosts();
    assert.deepEqual((await plainless('docker.io')).map((h) => `${h.scheme}://${h.host}${h.path}`), ['https://registry-1.docker.io/v2']);
    assert.deepEqual((await plainless('reg.example:5000')).map((h) => `${h.scheme}://${h.host}`), ['https://reg.example:5000']);
    assert.deepEqual((await plainless('localhost:5000')).map((h) => `${h.scheme}://${h.host}`), ['http://localhost:5000']);
    assert.deepEqual((await plainless('127.0.0.1:5000')).map((h) => h.scheme), ['http']);
    assert.deepEqual((await configureHosts({ plainHttp: false })('localhost:5000')).map((h) => h.scheme), ['https']);
    assert.deepEqual((await configureHosts({ plainHttp: true })('reg:5000')).map((h) => h.scheme), ['http']);
    assert.deepEqual((await configureHosts({ plainHttp: true })('docker.io')).map((h) => h.scheme), ['https']);
    const onlyLocal = configureHosts({ plainHttp: isLocalhost });
    assert.equal((await onlyLocal('127.0.0.1:5000'))[0].scheme, 'http');
    assert.equal((await onlyLocal('ghcr.io'))[0].scheme, 'https');
    // hosts.toml without a server falls back to the default server, with plainHttp applied to it
    assert.equal((await configureHosts({ configPath: root, plainHttp: true })('unlisted:1'))[0].scheme, 'http');
  });

  it('reports unreadable CA files', async () => {
    await mkdir(join(root, 'badca.example'));
    await writeFile(join(root, 'badca.example', 'hosts.toml'), 'ca = "missing.pem"\n');
    await assert.rejects(configureHosts({ configPath: root })('badca.example'), /unable to read CA certificate/);
  });
});
