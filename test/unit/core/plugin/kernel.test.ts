import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { BootError, Kernel } from '../../../../core/plugin/kernel.js';
import { definePlugin, SkipPluginError, type Registration } from '../../../../core/plugin/types.js';
import { EventExchange } from '../../../../core/events/exchange.js';
import { silentLogger } from '../../../../core/log/logger.js';
import { ConfigError } from '../../../../core/config/shape.js';
import { tempDir } from '../../../helpers/tmp.js';

const root = tempDir('kernel-test-');

function kernel(regs: Registration<any, any>[], opts: { pluginConfig?: Record<string, Record<string, unknown>>; disabled?: string[]; required?: string[] } = {}) {
  return new Kernel(regs, {
    root: join(root, 'root'), state: join(root, 'state'), addresses: { grpc: '/x.sock', ttrpc: '/x.sock.ttrpc' },
    pluginConfig: opts.pluginConfig ?? {}, disabled: opts.disabled ?? [], required: opts.required ?? [],
    events: new EventExchange(), log: silentLogger, daemon: { logLevel: 'info', timeouts: {}, executable: 'berthd' },
  });
}

test('init runs in dependency order, dependencies are typed lookups, results are recorded', async () => {
  const seen: string[] = [];
  const k = kernel([
    definePlugin({ type: 't.user', id: 'u', requires: ['t.store'], init: async (ctx) => { seen.push('u'); return { got: await ctx.get('t.store') }; } }),
    definePlugin({ type: 't.store', id: 's', init: (ctx) => { seen.push('s'); ctx.meta.exports.root = ctx.root; return { name: 'store' }; } }),
  ]);
  await k.boot();
  assert.deepEqual(seen, ['s', 'u']);
  const [s, u] = k.plugins;
  assert.equal(s!.status, 'ok');
  assert.equal(s!.meta.exports.root, join(root, 'root', 't.store.s'));
  assert.deepEqual((u!.instance as { got: unknown }).got, { name: 'store' });
  assert.ok(u!.initMs >= 0);
});

test('a lookup of an undeclared type is refused', async () => {
  const k = kernel([
    definePlugin({ type: 't.a', id: 'a', init: () => 1 }),
    definePlugin({ type: 't.b', id: 'b', init: async (ctx) => ctx.get('t.a') }),
  ]);
  await k.boot();
  assert.equal(k.plugins[1]!.status, 'error');
  assert.match(k.plugins[1]!.error!.message, /t\.b\.b looked up t\.a without declaring it in requires/);
});

test('skip is recorded as skip with "skip plugin" in the message', async () => {
  const k = kernel([definePlugin({ type: 't.snap', id: 'btrfs', init: () => { throw new SkipPluginError('path /x (ext4) must be a btrfs filesystem'); } })]);
  await k.boot();
  assert.equal(k.plugins[0]!.status, 'skip');
  assert.match(k.plugins[0]!.error!.message, /must be a btrfs filesystem: skip plugin$/);
});

test('dependents of a failed plugin fail with a reason naming it', async () => {
  const k = kernel([
    definePlugin({ type: 't.meta', id: 'db', init: () => { throw new Error('disk on fire'); } }),
    definePlugin({ type: 't.svc', id: 'svc', requires: ['t.meta'], init: async (ctx) => ctx.get('t.meta') }),
  ]);
  await k.boot();
  assert.equal(k.plugins[0]!.status, 'error');
  assert.equal(k.plugins[1]!.status, 'error');
  assert.match(k.plugins[1]!.error!.message, /dependency t\.meta\.db failed: disk on fire/);
});

test('required plugins that fail or are missing abort boot, each listed with its error', async () => {
  const k = kernel([
    definePlugin({ type: 't.a', id: 'bad', init: () => { throw new Error('boom'); } }),
    definePlugin({ type: 't.b', id: 'ok', init: () => 1 }),
  ], { required: ['t.a.bad', 't.c.missing', 't.b.ok'] });
  await assert.rejects(k.boot(), (err: Error) => {
    assert.ok(err instanceof BootError);
    assert.equal(err.failures.length, 2);
    assert.match(err.message, /t\.a\.bad: load required plugin: boom/);
    assert.match(err.message, /t\.c\.missing: required plugin not included/);
    return true;
  });
});

test('disabled plugins are not initialised', async () => {
  let ran = false;
  const k = kernel([definePlugin({ type: 't.a', id: 'x', init: () => { ran = true; } })], { disabled: ['t.a.x'] });
  await k.boot();
  assert.equal(ran, false);
  assert.equal(k.plugins.length, 0);
});

test('typed config: defaults, merge, validation, wrong types and unknown keys', async () => {
  const plugin = definePlugin<{ threshold: number; name: string; opts: string[] }>({
    type: 't.gc', id: 'sched',
    config: {
      defaults: { threshold: 0.02, name: 'a', opts: [] },
      validate: (c) => { if (c.threshold < 0) throw new Error('threshold must not be negative'); },
    },
    init: (ctx) => ctx.config,
  });
  const k1 = kernel([plugin], { pluginConfig: { 't.gc.sched': { threshold: 1, extra: true } } });
  const warnings = k1.decodeConfigs();
  assert.match(warnings.join('\n'), /unknown key extra ignored/);
  await k1.boot();
  assert.deepEqual(k1.plugins[0]!.instance, { threshold: 1, name: 'a', opts: [] });

  assert.throws(() => kernel([plugin], { pluginConfig: { 't.gc.sched': { threshold: 'high' } } }).decodeConfigs(),
    (e: Error) => e instanceof ConfigError && /plugins\."t\.gc\.sched": threshold: expected a number, got string "high"/.test(e.message));
  assert.throws(() => kernel([plugin], { pluginConfig: { 't.gc.sched': { threshold: -1 } } }).decodeConfigs(), /threshold must not be negative/);
  const w = kernel([plugin], { pluginConfig: { 'io.containerd.grpc.v1.cri': { x: 1 } } }).decodeConfigs();
  assert.match(w.join('\n'), /io\.containerd\.grpc\.v1\.cri": no such plugin; section ignored/);
});

test('a containerd plugin section the plugin names as an alias is read, under its own section', async () => {
  // As berth's metadata store reads containerd's io.containerd.metadata.v1.bolt section.
  const plugin = definePlugin<{ policy: string; depth: number }>({
    type: 't.metadata', id: 'sql',
    config: { defaults: { policy: 'shared', depth: 1 }, sectionAliases: ['t.metadata.bolt'] },
    init: (ctx) => ctx.config,
  });
  const boot = async (pluginConfig: Record<string, Record<string, unknown>>) => {
    const k = kernel([plugin], { pluginConfig });
    const warnings = k.decodeConfigs();
    await k.boot();
    return { config: k.plugins[0]!.instance, warnings };
  };
  assert.deepEqual(await boot({ 't.metadata.bolt': { policy: 'isolated' } }), { config: { policy: 'isolated', depth: 1 }, warnings: [] });
  // Version 1 configs name plugins by id.
  assert.deepEqual((await boot({ 'v1:bolt': { policy: 'isolated' } })).config, { policy: 'isolated', depth: 1 });
  assert.deepEqual((await boot({ 't.metadata.bolt': { policy: 'isolated', depth: 5 }, 't.metadata.sql': { policy: 'shared' } })).config,
    { policy: 'shared', depth: 5 });
});

test('close runs in reverse init order and errors do not stop it', async () => {
  const closed: string[] = [];
  const k = kernel([
    definePlugin({ type: 't.a', id: '1', init: () => ({ close: () => { closed.push('1'); } }) }),
    definePlugin({ type: 't.b', id: '2', requires: ['t.a'], init: () => ({ close: () => { closed.push('2'); throw new Error('x'); } }) }),
    definePlugin({ type: 't.c', id: '3', requires: ['t.b'], init: () => ({ close: async () => { closed.push('3'); } }) }),
  ]);
  await k.boot();
  await k.stop();
  await k.stop();
  assert.deepEqual(closed, ['3', '2', '1']);
});
