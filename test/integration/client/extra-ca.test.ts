/**
 * NODE_EXTRA_CA_CERTS, deferred by berth's launchers (core/sys/extra-ca.ts): a program started
 * through its bin/ file does not parse the file at start-up, and a registry connection still
 * trusts the certificates in it. Real TLS over loopback, a certificate made with openssl.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { configureHosts } from '../../../client/remotes/hosts.js';
import { DEFERRED_EXTRA_CA_ENV, takeDeferredExtraCa } from '../../../core/sys/extra-ca.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function get(url: string, agent?: https.Agent): Promise<string> {
  return new Promise((resolve, reject) => {
    https.get(url, { agent }, (res) => {
      let body = '';
      res.on('data', (b) => (body += b));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('deferred NODE_EXTRA_CA_CERTS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-extra-ca-'));
  const certFile = join(dir, 'cert.pem');
  let server: https.Server;
  let url: string;

  before(async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', certFile,
      '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    server = https.createServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(certFile) }, (_req, res) => res.end('hello'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  after(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a launcher started through its shebang does not load the file at start-up', () => {
    // Node warns at start-up about an unreadable NODE_EXTRA_CA_CERTS: the warning shows whether it tried.
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'missing.pem') };
    const direct = spawnSync(process.execPath, [join(REPO, 'bin/berth.js'), '--help'], { env, encoding: 'utf8' });
    assert.match(direct.stderr, /Ignoring extra certs/, 'run as `node bin/berth.js`, Node reads the file itself');
    const launched = spawnSync(join(REPO, 'bin/berth.js'), ['--help'], { env, encoding: 'utf8' });
    assert.equal(launched.status, 0, launched.stderr);
    assert.doesNotMatch(launched.stderr, /Ignoring extra certs/);
  });

  it('registry connections trust the deferred certificates', async () => {
    await assert.rejects(get(url), /self.signed/i, 'the certificate is not trusted by default');
    const env: NodeJS.ProcessEnv = { [DEFERRED_EXTRA_CA_ENV]: certFile, NODE_EXTRA_CA_CERTS: '' };
    takeDeferredExtraCa(env);
    assert.equal(env.NODE_EXTRA_CA_CERTS, certFile, 'child processes get the setting back');
    assert.equal(env[DEFERRED_EXTRA_CA_ENV], undefined);
    const [host] = await configureHosts({ plainHttp: false })(`127.0.0.1:${new URL(url).port}`);
    assert.equal(host!.scheme, 'https');
    assert.equal(await get(url, host!.agent as https.Agent), 'hello');
  });
});
