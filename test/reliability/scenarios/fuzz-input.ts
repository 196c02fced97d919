/**
 * Property tests (fast-check) of everything that parses untrusted text: the config loader and
 * the plugins' typed sections, identifiers and namespaces, filters, image references, and tar
 * extraction. Each property states what "handled" means: a value, or an error of the expected
 * class that says where the problem is — never another exception type, never a hang, and for
 * tar, nothing written outside the apply root.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fsp from 'node:fs/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import TOML from '@iarna/toml';
import { loadConfig } from '../../../core/config/loader.js';
import { ConfigError } from '../../../core/config/shape.js';
import { BerthError, codeOf, Code, InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { EventExchange } from '../../../core/events/exchange.js';
import { validateIdentifier, MAX_IDENTIFIER_LENGTH } from '../../../core/identifiers/identifiers.js';
import { validateNamespace } from '../../../core/namespaces/namespaces.js';
import { parseFilters, recordAdaptor } from '../../../core/filters/filters.js';
import { silentLogger } from '../../../core/log/logger.js';
import { Kernel } from '../../../core/plugin/kernel.js';
import { builtins } from '../../../plugins/builtins.js';
import { parse, parseDockerRef, parseNormalizedNamed } from '../../../client/reference/reference.js';
import { parseSpec, specDigest } from '../../../client/reference/spec.js';
import { applyLayer, type ApplyMode } from '../../../plugins/differ/walking/archive/apply.js';
import { buildTar, makeSandbox, snapshotTree, streamOf, type TarSpec } from '../../unit/plugins/differ/walking/archive/helpers.js';

export interface InputFuzzOptions {
  /** fast-check runs per property (tar extraction runs a quarter of it: each run touches disk). */
  numRuns: number;
  seed: number;
}

/** A property failure message that says how to replay it. */
const fcParams = (o: InputFuzzOptions, runs = o.numRuns) => ({ numRuns: runs, seed: o.seed, endOnFailure: true });

/** Runs `fn`, returns the thrown value (or undefined) and the time it took. */
function outcome<T>(fn: () => T): { value?: T; error?: unknown; ms: number } {
  const t = performance.now();
  try {
    return { value: fn(), ms: performance.now() - t };
  } catch (error) {
    return { error, ms: performance.now() - t };
  }
}

// ---------------------------------------------------------------- config text

const KEYS = ['version', 'root', 'state', 'temp', 'imports', 'disabled_plugins', 'required_plugins', 'oom_score', 'address', 'uid', 'gid',
  'max_recv_message_size', 'level', 'format', 'type', 'pause_threshold', 'startup_delay', 'platforms', 'runtime_overrides', 'default',
  'content_sharing_policy', 'stale_ingest_age', 'sched_core', 'path', 'root_path', 'mount_options', 'x', '"quoted key"', 'a.b'];
const TABLES = ['[grpc]', '[ttrpc]', '[debug]', '[metrics]', '[cgroup]', '[timeouts]', '[plugins]', '[proxy_plugins.p]', '[proxy_plugins]',
  '[stream_processors.s]', '[plugins."io.containerd.gc.v1.scheduler"]', '[plugins."io.containerd.runtime.v2.task"]',
  '[plugins."io.containerd.snapshotter.v1.overlayfs"]', '[plugins."io.containerd.content.v1.content"]', '[plugins."io.containerd.internal.v1.opt"]',
  '[plugins."io.containerd.service.v1.diff-service"]', '[plugins."io.containerd.metadata.v1.sqlite"]', '[plugins.cri]', '[[grpc]]', '[plugins.',
  '[plugins."io.containerd.grpc.v1.cri".containerd]', '[a.b.c]'];
const VALUES = ['1', '2', '0', '-1', '3.5', '1e400', '9007199254740993', 'true', 'false', '"x"', '""', '"/tmp/x"', "'lit'", '"\\u0000"', '"..\\/.."',
  '[]', '[1]', '["a", "b"]', '[1, "a"]', '[[1]]', '[{}]', '{}', '{ a = 1 }', '{ type = "snapshot", address = "/x" }', '1979-05-27T07:32:00Z',
  '"10s"', '"-1s"', '"bogus"', '"linux/amd64"', '["linux"]', '"shared"', 'nan', 'inf', '0x10', '"""multi"""', '[', '"unterminated', '= =', ''];

const tomlish = fc.array(
  fc.oneof(
    { weight: 5, arbitrary: fc.tuple(fc.constantFrom(...KEYS), fc.constantFrom(...VALUES)).map(([k, v]) => `${k} = ${v}`) },
    { weight: 2, arbitrary: fc.constantFrom(...TABLES) },
    { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  ),
  { maxLength: 12 },
).map((lines) => lines.join('\n'));

/** Typed values for known keys, rendered by a real TOML writer (what a user's tooling would produce). */
const scalar = fc.oneof(fc.string({ maxLength: 12 }), fc.integer(), fc.double({ noNaN: true }), fc.boolean(), fc.constant('/tmp/y'), fc.constant('5s'));
const typedConfig = fc.record({
  version: fc.constantFrom(1, 2, 2, 2, 3, '2'),
  root: scalar,
  state: scalar,
  imports: fc.array(scalar, { maxLength: 2 }),
  disabled_plugins: fc.array(scalar, { maxLength: 2 }),
  required_plugins: fc.array(scalar, { maxLength: 2 }),
  grpc: fc.dictionary(fc.constantFrom('address', 'uid', 'gid', 'max_recv_message_size', 'tcp_address', 'bogus'), scalar, { maxKeys: 3 }),
  debug: fc.dictionary(fc.constantFrom('level', 'format', 'address'), scalar, { maxKeys: 2 }),
  timeouts: fc.dictionary(fc.string({ maxLength: 8 }), scalar, { maxKeys: 2 }),
  proxy_plugins: fc.dictionary(fc.constantFrom('p', 'overlayfs', 'q'), fc.dictionary(fc.constantFrom('type', 'address'), scalar, { maxKeys: 2 }), { maxKeys: 2 }),
  plugins: fc.dictionary(
    fc.constantFrom(...builtins.map((r) => `${r.type}.${r.id}`), 'cri', 'io.containerd.grpc.v1.cri'),
    fc.dictionary(fc.constantFrom('pause_threshold', 'startup_delay', 'schedule_delay', 'deletion_threshold', 'platforms', 'runtime_overrides', 'sched_core',
      'default', 'content_sharing_policy', 'stale_ingest_age', 'path', 'root_path', 'upperdir_label', 'mount_options', 'async_remove', 'x'),
    fc.oneof(scalar, fc.array(scalar, { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 5 }), scalar, { maxKeys: 2 }))),
    { maxKeys: 3 },
  ),
}, { requiredKeys: ['version'] });

/** A config error must be a ConfigError that starts with the file it is about, then line:col or a key path. */
function assertConfigError(err: unknown, text: string): void {
  if (!(err instanceof ConfigError)) {
    assert.fail(`config ${JSON.stringify(text)} threw ${(err as Error)?.constructor?.name}: ${(err as Error)?.message ?? String(err)}`);
  }
  // The location is a file path (which may itself contain ':'), optionally with line:column.
  assert.match(err.message, /^(\/.+?|--flags|defaults)(:\d+:\d+)?: \S/, `config error without a location: ${err.message}`);
}

async function decodeWithKernel(config: Awaited<ReturnType<typeof loadConfig>>['config'], file: string): Promise<void> {
  const kernel = new Kernel(builtins, {
    root: config.root, state: config.state, addresses: { grpc: '', ttrpc: '' }, pluginConfig: config.plugins, disabled: [], required: [],
    events: new EventExchange(), log: silentLogger, daemon: { logLevel: 'info', timeouts: {}, executable: process.execPath }, configSource: file,
  });
  kernel.decodeConfigs();
}

// ---------------------------------------------------------------- tar entries

const SEGMENTS = ['a', 'b', 'dir', '..', '.', '', 'etc', 'passwd', 'sentinel', 'secret', '.wh.a', '.wh..wh..opq', '.wh.', 'c d', 'x'.repeat(120), '\u00e9'];
const entryName = fc.tuple(fc.boolean(), fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 4 }), fc.boolean())
  .map(([abs, segs, slash]) => `${abs ? '/' : ''}${segs.join('/')}${slash ? '/' : ''}`);

function tarEntry(sentinel: string): fc.Arbitrary<TarSpec> {
  const link = fc.oneof(entryName, fc.constantFrom('/', '/etc', '/etc/passwd', '..', '../..', '../sentinel', '../sentinel/secret', sentinel, `${sentinel}/secret`, ''));
  return fc.record({
    path: entryName,
    type: fc.constantFrom('File', 'File', 'Directory', 'SymbolicLink', 'SymbolicLink', 'Link', 'FIFO', 'CharacterDevice') as fc.Arbitrary<TarSpec['type']>,
    data: fc.constantFrom('', 'data\n', 'x'.repeat(700)),
    mode: fc.constantFrom(0o644, 0o755, 0o4755, 0o000, 0o777),
    linkpath: link,
    devmaj: fc.constant(1),
    devmin: fc.constant(3),
  }).map((e) => ({ ...e, data: e.type === 'File' ? e.data : undefined, linkpath: e.type === 'SymbolicLink' || e.type === 'Link' ? e.linkpath || 'a' : undefined }));
}

/** An error from applyLayer is handled when it carries a classification (errdefs class or a mapped errno). */
function isClassified(err: unknown): boolean {
  return err instanceof BerthError || codeOf(err) !== Code.UNKNOWN;
}

// ---------------------------------------------------------------- the suite

export function inputFuzzSuite(o: InputFuzzOptions): void {
  describe(`bad input: property tests (seed ${o.seed}, ${o.numRuns} runs per property)`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'berth-fuzz-config-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    let n = 0;
    /** Writes `text` as a config file: it loads and decodes, or fails with a ConfigError that names the place. */
    const loadsOrNamesTheError = async (file: string, text: string) => {
      writeFileSync(file, text);
      let loaded;
      try {
        loaded = await loadConfig(file, { explicit: true });
      } catch (err) {
        assertConfigError(err, text);
        return;
      }
      try {
        await decodeWithKernel(loaded.config, file);
      } catch (err) {
        assertConfigError(err, text);
      }
    };

    it('config loader: random TOML-ish text gives a config or a ConfigError naming file:line or a key path', async () => {
      await fc.assert(fc.asyncProperty(tomlish, (text) => loadsOrNamesTheError(join(dir, `c${n++}.toml`), text)), fcParams(o));
    });

    it('config loader: random typed values for known keys give a config or a ConfigError naming the key', async () => {
      await fc.assert(fc.asyncProperty(typedConfig, async (value) => {
        let text: string;
        try {
          text = TOML.stringify(value as TOML.JsonMap);
        } catch {
          fc.pre(false);
          return;
        }
        await loadsOrNamesTheError(join(dir, `t${n++}.toml`), text);
      }), fcParams(o));
    });

    it('identifiers and namespaces: accepted ones are safe path components, the rest are INVALID_ARGUMENT', () => {
      const candidates = fc.oneof(
        fc.string({ maxLength: 90 }),
        fc.string({ unit: 'binary', maxLength: 90 }),
        fc.array(fc.constantFrom('a', 'Z', '9', '.', '-', '_', '/', '..', '\0', ' '), { maxLength: 30 }).map((xs) => xs.join('')),
        fc.integer({ min: 70, max: 1000 }).map((len) => 'a'.repeat(len)),
      );
      fc.assert(fc.property(candidates, (s) => {
        for (const validate of [validateIdentifier, validateNamespace]) {
          const r = outcome(() => validate(s));
          if (r.error === undefined) {
            assert.match(s, /^[A-Za-z0-9._-]+$/);
            assert.ok(s.length <= MAX_IDENTIFIER_LENGTH && !s.includes('..') && !s.startsWith('.') && !s.startsWith('-'), s);
          } else {
            assert.ok(r.error instanceof InvalidArgumentError, `${JSON.stringify(s)}: ${String(r.error)}`);
          }
        }
      }), fcParams(o, o.numRuns * 4));
    });

    it('filters: parse to a filter or INVALID_ARGUMENT; matching never throws and stays fast', () => {
      const text = fc.oneof(
        fc.string({ maxLength: 60 }),
        fc.array(fc.constantFrom('labels', '.', '"a.b"', 'name', '==', '!=', '~=', ',', '|', ' ', 'x', '`', "'", '\\', '(a+)+$', '[', '.*', 'id', 'digest', 'sha256:'), { maxLength: 14 }).map((xs) => xs.join('')),
      );
      const adaptor = recordAdaptor({ name: 'docker.io/library/busybox:latest', id: 'x', digest: 'sha256:abc' }, { 'a.b': 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!', x: 'y' });
      fc.assert(fc.property(fc.array(text, { maxLength: 3 }), (filters) => {
        const r = outcome(() => parseFilters(filters));
        if (r.error !== undefined) {
          assert.ok(r.error instanceof InvalidArgumentError, `${JSON.stringify(filters)}: ${String(r.error)}`);
          return;
        }
        const m = outcome(() => r.value!.match(adaptor));
        assert.equal(m.error, undefined, `${JSON.stringify(filters)} match threw ${String(m.error)}`);
        assert.ok(m.ms < 200, `${JSON.stringify(filters)} took ${m.ms.toFixed(0)} ms to match`);
      }), fcParams(o, o.numRuns * 2));
    });

    it('filters: hostile `~=` patterns are rejected or matched in linear time (no catastrophic backtracking)', () => {
      const evil = fc.oneof(
        fc.constantFrom('(a+)+$', '(a|a)+$', '(a|aa)+$', '(.*a){12}$', '(a*)*b', '(a{1,20})+$', '^(\\w+\\s?)*$', '((a+)+)+$', '(a+?)+$', '(?:a|a?)+$', '(a|b|ab)*c'),
        fc.array(fc.constantFrom('(', ')', 'a', 'a+', 'a*', '+', '*', '{1,20}', '{2,}', '|', '.', '?'), { minLength: 3, maxLength: 12 }).map((xs) => `${xs.join('')}$`),
      );
      const adaptor = recordAdaptor({}, { x: `${'a'.repeat(30)}!` });
      fc.assert(fc.property(evil, (pattern) => {
        const r = outcome(() => parseFilters([`labels.x~=${JSON.stringify(pattern)}`]).match(adaptor));
        if (r.error !== undefined) assert.ok(r.error instanceof InvalidArgumentError, `${pattern}: ${String(r.error)}`);
        assert.ok(r.ms < 200, `${pattern} took ${r.ms.toFixed(0)} ms`);
      }), fcParams(o));
    });

    it('references: parse or INVALID_ARGUMENT, quickly, for every parser', () => {
      const hex = fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 0, maxLength: 70 });
      const ref = fc.oneof(
        fc.string({ maxLength: 80 }),
        fc.array(fc.oneof(
          fc.constantFrom('a', 'b', 'Z', '0', '.', '-', '--', '_', '__', '/', ':', '@', 'sha256:', 'localhost', ':5000', 'docker.io', 'library', ' ', '://', '!'),
          hex,
        ), { maxLength: 24 }).map((xs) => xs.join('')),
        fc.integer({ min: 1, max: 400 }).map((k) => `${'a'.repeat(k)}!`),
        fc.integer({ min: 1, max: 200 }).map((k) => `x.io/${'a-'.repeat(k)}!`),
      );
      fc.assert(fc.property(ref, (s) => {
        for (const [name, fn] of [['parse', parse], ['parseNormalizedNamed', parseNormalizedNamed], ['parseDockerRef', parseDockerRef], ['parseSpec', (x: string) => specDigest(parseSpec(x))]] as const) {
          const r = outcome(() => (fn as (x: string) => unknown)(s));
          if (r.error !== undefined) assert.ok(r.error instanceof InvalidArgumentError, `${name}(${JSON.stringify(s)}) threw ${String(r.error)}`);
          assert.ok(r.ms < 100, `${name}(${JSON.stringify(s)}) took ${r.ms.toFixed(0)} ms`);
        }
      }), fcParams(o, o.numRuns * 2));
    });

    for (const mode of ['direct', 'overlay'] as ApplyMode[]) {
      it(`tar extraction (${mode}): random names, types and links never write outside the root; errors are classified`, async () => {
        const sb = await makeSandbox('berth-fuzz-tar-');
        const passwd = await fsp.stat('/etc/passwd');
        try {
          const sentinelBefore = await snapshotTree(sb.sentinel, { dirMtimes: true, nlink: true });
          const namesBefore = (await fsp.readdir(sb.dir)).sort();
          await fc.assert(fc.asyncProperty(fc.array(tarEntry(sb.sentinel), { minLength: 1, maxLength: 8 }), async (entries) => {
            await fsp.rm(sb.root, { recursive: true, force: true });
            await fsp.mkdir(sb.root);
            try {
              await applyLayer(streamOf(buildTar(entries)), sb.root, { mode });
            } catch (err) {
              assert.ok(isClassified(err), `unclassified error ${(err as Error)?.constructor?.name}: ${(err as Error)?.message} for ${JSON.stringify(entries)}`);
            }
            assert.deepEqual((await fsp.readdir(sb.dir)).sort(), namesBefore, `something appeared next to the root for ${JSON.stringify(entries)}`);
            assert.deepEqual(await snapshotTree(sb.sentinel, { dirMtimes: true, nlink: true }), sentinelBefore, `sentinel changed for ${JSON.stringify(entries)}`);
          }), fcParams(o, Math.max(20, Math.floor(o.numRuns / 4))));
          const after = await fsp.stat('/etc/passwd');
          assert.deepEqual([after.ino, after.nlink, after.mtimeMs], [passwd.ino, passwd.nlink, passwd.mtimeMs]);
        } finally {
          await sb.cleanup();
        }
      });
    }
  });
}
