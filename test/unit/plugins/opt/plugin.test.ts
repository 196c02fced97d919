// io.containerd.internal.v1.opt booted by the kernel: bin/ and lib/ are created, the daemon's
// PATH and LD_LIBRARY_PATH get them first (once), the path is exported, and the config is
// checked (absolute path; default /opt/berth).
import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../../core/config/shape.js';
import { EventExchange } from '../../../../core/events/exchange.js';
import { silentLogger } from '../../../../core/log/logger.js';
import { Kernel } from '../../../../core/plugin/kernel.js';
import { DEFAULT_OPT_PATH, optPlugin, prependPath } from '../../../../plugins/internal/opt/plugin.js';

let dir: string;
let saved: { PATH?: string; LD_LIBRARY_PATH?: string };

const kernel = (pluginConfig: Record<string, Record<string, unknown>>) => new Kernel([optPlugin], {
  root: join(dir, 'root'), state: join(dir, 'state'), addresses: { grpc: '/x.sock', ttrpc: '/x.sock.ttrpc' },
  pluginConfig, disabled: [], required: [], events: new EventExchange(), log: silentLogger,
  daemon: { logLevel: 'info', timeouts: {}, executable: 'berthd' },
});

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-opt-'));
  saved = { PATH: process.env.PATH, LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH };
});
afterEach(() => {
  for (const k of ['PATH', 'LD_LIBRARY_PATH'] as const) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('opt plugin', () => {
  it('creates bin and lib, puts them first on PATH and LD_LIBRARY_PATH, and exports the path', async () => {
    const path = join(dir, 'opt');
    process.env.PATH = '/usr/bin:/bin';
    delete process.env.LD_LIBRARY_PATH;
    const k = kernel({ 'io.containerd.internal.v1.opt': { path } });
    await k.boot();
    const r = k.plugins[0]!;
    assert.equal(r.uri, 'io.containerd.internal.v1.opt');
    assert.equal(r.status, 'ok');
    assert.deepEqual(r.meta.exports, { path });
    assert.deepEqual(r.instance, { path });
    for (const sub of ['bin', 'lib']) {
      const st = statSync(join(path, sub));
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o777, 0o711);
    }
    assert.equal(process.env.PATH, `${path}/bin:/usr/bin:/bin`);
    assert.equal(process.env.LD_LIBRARY_PATH, `${path}/lib`, 'no empty entry (which would mean the cwd)');

    // A second boot (a restart in the same process) does not stack duplicates.
    await kernel({ 'io.containerd.internal.v1.opt': { path } }).boot();
    assert.equal(process.env.PATH, `${path}/bin:/usr/bin:/bin`);
  });

  it('defaults to /opt/berth and refuses a relative path', () => {
    assert.equal(DEFAULT_OPT_PATH, '/opt/berth');
    assert.deepEqual(optPlugin.config?.defaults, { path: '/opt/berth' });
    assert.throws(() => kernel({ 'io.containerd.internal.v1.opt': { path: 'relative/opt' } }).decodeConfigs(),
      (e) => e instanceof ConfigError && /plugins\."io\.containerd\.internal\.v1\.opt": path: expected an absolute directory/.test(e.message));
  });

  it('fails (and exports nothing) when the directories cannot be made', async () => {
    const k = kernel({ 'io.containerd.internal.v1.opt': { path: '/dev/null/opt' } });
    await k.boot();
    assert.equal(k.plugins[0]!.status, 'error');
    assert.deepEqual(k.plugins[0]!.meta.exports, {});
  });

  it('prependPath puts a directory first exactly once', () => {
    assert.equal(prependPath(undefined, '/a'), '/a');
    assert.equal(prependPath('', '/a'), '/a');
    assert.equal(prependPath('/b:/a:/c', '/a'), '/a:/b:/c');
    assert.equal(prependPath('/b::/c:', '/a'), '/a:/b:/c');
  });
});
