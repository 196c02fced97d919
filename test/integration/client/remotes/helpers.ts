/**
 * Test support for the registry client integration tests: a real distribution registry
 * (Debian's docker-registry) on an ephemeral loopback port, small loopback HTTP servers, and a
 * tiny OCI image built in memory.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { Descriptor } from '../../../../client/remotes/types.js';

const REGISTRY_BIN = '/usr/bin/docker-registry';

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Makes sure the docker-registry binary exists, installing Debian's package when it does not. */
export function ensureRegistryBinary(): string {
  if (existsSync(REGISTRY_BIN)) return REGISTRY_BIN;
  const res = spawnSync('apt-get', ['install', '-y', 'docker-registry'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  if (res.status !== 0 || !existsSync(REGISTRY_BIN)) {
    const upd = spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    const again = upd.status === 0 ? spawnSync('apt-get', ['install', '-y', 'docker-registry'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } }) : upd;
    if (again.status !== 0 || !existsSync(REGISTRY_BIN)) {
      throw new Error(`${REGISTRY_BIN} is missing and "apt-get install -y docker-registry" failed; the registry integration tests need Debian's docker-registry package`);
    }
  }
  return REGISTRY_BIN;
}

export interface RunningRegistry {
  /** "127.0.0.1:PORT" */
  host: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
}

/** Starts a private docker-registry on 127.0.0.1:<free port> with storage in a temp directory. */
export async function startRegistry(): Promise<RunningRegistry> {
  const bin = ensureRegistryBinary();
  const dir = await mkdtemp(join(tmpdir(), 'berth-registry-'));
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n');
    const configFile = join(dir, 'config.yml');
    await writeFile(configFile, config);
    const child = spawn(bin, ['serve', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      await waitReady(port, child, () => stderr);
      return {
        host: `127.0.0.1:${port}`,
        port,
        dir,
        async stop() {
          await stopChild(child);
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      lastErr = err;
      await stopChild(child);
    }
  }
  await rm(dir, { recursive: true, force: true });
  throw lastErr;
}

async function waitReady(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with ${child.exitCode}: ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/v2/', timeout: 1000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`docker-registry did not become ready on port ${port}: ${stderr()}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Starts an HTTP server on 127.0.0.1:<ephemeral>; returns its "127.0.0.1:PORT" and a stopper. */
export async function startServer(handler: http.RequestListener): Promise<{ host: string; port: number; server: http.Server; stop(): Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    port,
    server,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Forwards a request to `target` (host:port) and streams the answer back. */
export function proxyTo(target: string, req: http.IncomingMessage, res: http.ServerResponse, dropHeaders: string[] = ['authorization']): void {
  const [hostname, port] = target.split(':');
  const headers = { ...req.headers };
  for (const h of dropHeaders) delete headers[h];
  headers.host = target;
  const up = http.request({ hostname, port: Number(port), method: req.method, path: req.url, headers }, (upRes) => {
    res.writeHead(upRes.statusCode ?? 502, upRes.headers);
    upRes.pipe(res);
  });
  up.on('error', (err) => {
    res.writeHead(502);
    res.end(String(err));
  });
  req.pipe(up);
}

export const sha256 = (b: Uint8Array | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** A minimal ustar archive holding one regular file. */
export function tarOf(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  const put = (s: string, off: number, len: number) => header.write(s.slice(0, len), off, 'ascii');
  const octal = (n: number, len: number) => n.toString(8).padStart(len - 1, '0') + '\0';
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(content.length, 12), 124, 12);
  put(octal(1_700_000_000, 12), 136, 12);
  header.fill(0x20, 148, 156);
  put('0', 156, 1);
  put('ustar\0', 257, 6);
  put('00', 263, 2);
  let sum = 0;
  for (const b of header) sum += b;
  put(octal(sum, 7) + ' ', 148, 8);
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, pad, Buffer.alloc(1024)]);
}

export interface TestImage {
  config: { desc: Descriptor; bytes: Buffer };
  layer: { desc: Descriptor; bytes: Buffer };
  manifest: { desc: Descriptor; bytes: Buffer };
  index: { desc: Descriptor; bytes: Buffer };
  /** Bytes by digest (a content provider for pushImage). */
  blobs: Map<string, Buffer>;
}

/** Builds config + one gzip layer (random, so incompressible and unique) + OCI manifest + index. */
export function buildImage(layerPayloadSize = 300 * 1024): TestImage {
  const layerBytes = gzipSync(tarOf('hello.bin', randomBytes(layerPayloadSize)), { level: 1 });
  const tarDigest = sha256(gunzipSync(layerBytes));
  const configBytes = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/hello'] },
      rootfs: { type: 'layers', diff_ids: [tarDigest] },
    }),
  );
  const config: Descriptor = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(configBytes), size: configBytes.length };
  const layer: Descriptor = { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layerBytes), size: layerBytes.length };
  const manifestBytes = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config, layers: [layer] }),
  );
  const manifest: Descriptor = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifestBytes), size: manifestBytes.length };
  const indexBytes = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ ...manifest, platform: { architecture: 'amd64', os: 'linux' } }],
    }),
  );
  const index: Descriptor = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: sha256(indexBytes), size: indexBytes.length };
  const blobs = new Map<string, Buffer>([
    [config.digest, configBytes],
    [layer.digest, layerBytes],
    [manifest.digest, manifestBytes],
    [index.digest, indexBytes],
  ]);
  return {
    config: { desc: config, bytes: configBytes },
    layer: { desc: layer, bytes: layerBytes },
    manifest: { desc: manifest, bytes: manifestBytes },
    index: { desc: index, bytes: indexBytes },
    blobs,
  };
}
