import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expandGlob, loadConfig } from '../../../../core/config/loader.js';
import { ConfigError } from '../../../../core/config/shape.js';
import { parseDuration } from '../../../../core/config/duration.js';
import { Kernel } from '../../../../core/plugin/kernel.js';
import { EventExchange } from '../../../../core/events/exchange.js';
import { silentLogger } from '../../../../core/log/logger.js';
import { builtins } from '../../../../plugins/builtins.js';
import { tempDir } from '../../../helpers/tmp.js';

const dir = tempDir('config-test-');
const file = (name: string, text: string) => {
  const p = join(dir, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
};

test('no file: embedded defaults', async () => {
  const { config, files } = await loadConfig(join(dir, 'absent.toml'), { explicit: false });
  assert.deepEqual(files, []);
  assert.equal(config.root, '/var/lib/berth');
  assert.equal(config.state, '/run/berth');
  assert.equal(config.grpc.address, '/run/berth/berth.sock');
  assert.equal(config.grpc.max_recv_message_size, 16 << 20);
});

test('a missing file named explicitly is an error naming it', async () => {
  await assert.rejects(loadConfig(join(dir, 'nope.toml'), { explicit: true }), (e: Error) =>
    e instanceof ConfigError && e.message.includes('nope.toml') && /cannot read config file \(ENOENT\)/.test(e.message));
});

test('malformed TOML reports file:line:column', async () => {
  const p = file('bad.toml', 'version = 2\nroot = "/x"\n[grpc\naddress = "/y"\n');
  await assert.rejects(loadConfig(p, { explicit: true }), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, new RegExp(`^${p.replace(/[.]/g, '\\.')}:3:\\d+: invalid TOML`));
    return true;
  });
});

test('a wrong value type names the key path and what was expected', async () => {
  const p = file('type.toml', 'version = 2\n[grpc]\n  uid = "root"\n');
  await assert.rejects(loadConfig(p, { explicit: true }), /grpc\.uid: expected an integer, got string "root"/);
  const q = file('type2.toml', 'version = 2\ndisabled_plugins = "io.containerd.snapshotter.v1.btrfs"\n');
  await assert.rejects(loadConfig(q, { explicit: true }), /disabled_plugins: expected an array/);
  const r = file('type3.toml', 'version = 2\n[debug]\n  level = "loud"\n');
  await assert.rejects(loadConfig(r, { explicit: true }), /debug\.level: expected one of/);
});

test('unknown keys are warnings, not failures', async () => {
  const p = file('unknown.toml', 'version = 2\nroot = "/r"\nstate = "/s"\nfancy = 1\n[grpc]\n  address = "/a.sock"\n  wat = true\n');
  const { config, warnings } = await loadConfig(p, { explicit: true });
  assert.equal(config.root, '/r');
  assert.match(warnings.join('\n'), /unknown key fancy ignored/);
  assert.match(warnings.join('\n'), /unknown key grpc\.wat ignored/);
});

test('imports: globs relative to the importing file, merged in order, later wins per plugin', async () => {
  file('conf.d/10-a.toml', 'version = 2\n[plugins."io.containerd.gc.v1.scheduler"]\n  pause_threshold = 0.5\n[plugins."io.containerd.internal.v1.opt"]\n  path = "/opt/a"\n');
  file('conf.d/20-b.toml', 'version = 2\ndisabled_plugins = ["io.containerd.snapshotter.v1.btrfs"]\n[plugins."io.containerd.internal.v1.opt"]\n  path = "/opt/b"\n');
  const main = file('main.toml', 'version = 2\nimports = ["conf.d/*.toml"]\nroot = "/r"\nstate = "/s"\ndisabled_plugins = ["io.containerd.snapshotter.v1.zfs"]\n[plugins."io.containerd.internal.v1.opt"]\n  path = "/opt/main"\n');
  const { config, files } = await loadConfig(main, { explicit: true });
  assert.deepEqual(files.map((f) => f.slice(dir.length + 1)), ['main.toml', 'conf.d/10-a.toml', 'conf.d/20-b.toml']);
  assert.equal(config.plugins['io.containerd.internal.v1.opt']!.path, '/opt/b');
  assert.equal(config.plugins['io.containerd.gc.v1.scheduler']!.pause_threshold, 0.5);
  assert.deepEqual(config.disabled_plugins, ['io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.btrfs']);
});

test('version 1 files are mapped to version 2 (plugin sections by id)', async () => {
  const p = file('v1.toml', 'root = "/r1"\nstate = "/s1"\ndisabled_plugins = ["btrfs"]\n[plugins.scheduler]\n  pause_threshold = 0.1\n');
  const { config, warnings } = await loadConfig(p, { explicit: true });
  assert.equal(config.version, 2);
  assert.deepEqual(config.disabled_plugins, ['v1:btrfs']);
  assert.ok(config.plugins['v1:scheduler']);
  assert.match(warnings.join('\n'), /version 1 config migrated/);
});

test('plugin URIs in disabled_plugins must have at least four parts', async () => {
  const p = file('uri.toml', 'version = 2\ndisabled_plugins = ["btrfs"]\n');
  await assert.rejects(loadConfig(p, { explicit: true }), /disabled_plugins: "btrfs" is not a plugin URI/);
});

test('real containerd `config default` output loads with warnings only', async () => {
  const text = execFileSync('containerd', ['config', 'default'], { encoding: 'utf8' });
  const p = file('containerd-default.toml', text);
  const { config, warnings } = await loadConfig(p, { explicit: true });
  assert.equal(config.root, '/var/lib/containerd');
  assert.ok(config.plugins['io.containerd.grpc.v1.cri'], 'cri section kept for reporting');
  const k = new Kernel(builtins, {
    root: '/tmp/x', state: '/tmp/y', addresses: { grpc: '', ttrpc: '' }, pluginConfig: config.plugins, disabled: [], required: [],
    events: new EventExchange(), log: silentLogger, daemon: { logLevel: 'info', timeouts: {}, executable: 'x' }, configSource: p,
  });
  const pluginWarnings = k.decodeConfigs();
  assert.match(pluginWarnings.join('\n'), /io\.containerd\.grpc\.v1\.cri": no such plugin; section ignored/);
  assert.ok(Array.isArray(warnings));
});

test('durations parse like Go', () => {
  assert.equal(parseDuration('100ms'), 100);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('1500us'), 1.5);
  assert.equal(parseDuration('1500\u00b5s'), 1.5, 'micro sign');
  assert.equal(parseDuration('1500\u03bcs'), 1.5, 'Greek mu, which Go also takes');
  assert.throws(() => parseDuration('soon', 'schedule_delay'), /schedule_delay: expected a duration/);
});

test('imports: Go glob syntax (classes, negation, ranges, escapes); a malformed pattern is a ConfigError naming it', async () => {
  const dir = tempDir('berth-glob-');
  mkdirSync(join(dir, 'd'));
  for (const n of ['a1.toml', 'b2.toml', 'c3.toml', '[x].toml']) writeFileSync(join(dir, 'd', n), '');
  const names = (pattern: string) => expandGlob(join(dir, 'd', pattern)).map((p) => p.slice(join(dir, 'd').length + 1));
  assert.deepEqual(names('[ab]?.toml'), ['a1.toml', 'b2.toml']);
  assert.deepEqual(names('[^ab]?.toml'), ['c3.toml']);
  assert.deepEqual(names('[a-b][0-9].toml'), ['a1.toml', 'b2.toml']);
  assert.deepEqual(names('\\[x].toml'), ['[x].toml']);
  for (const bad of ['x[1', '[]', 'a\\', '[z-a].toml']) assert.throws(() => expandGlob(join(dir, 'd', bad)), /syntax error in pattern/, bad);
  const main = join(dir, 'main.toml');
  writeFileSync(main, 'version = 2\nimports = ["d/*.toml", "WvJ{m3Lp[1"]\n');
  await assert.rejects(loadConfig(main, { explicit: true }), (e: Error) =>
    e instanceof ConfigError && e.message.includes(`${main}: imports: bad pattern "WvJ{m3Lp[1": syntax error in pattern`));
});
