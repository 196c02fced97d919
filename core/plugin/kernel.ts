/**
 * The kernel: orders registrations, decodes each plugin's typed config, runs init in
 * order, records every result (ok, skip, error) with its init time, and closes instances in
 * reverse order on shutdown. inversify is the container of initialised instances; it stays
 * here, so plugins never see it — they get typed lookups through their InitContext.
 */
import 'reflect-metadata';
import { Container } from 'inversify';
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, messageOf } from '../errdefs/errdefs.js';
import type { EventExchange } from '../events/exchange.js';
import type { Logger } from '../log/logger.js';
import { ConfigError, checkShape, kindOf, mergeOver } from '../config/shape.js';
import { bootOrder } from './graph.js';
import {
  SkipPluginError,
  uriOf,
  type Closable,
  type DaemonInfo,
  type InitContext,
  type PluginMeta,
  type PluginResult,
  type Registration,
  type ServiceRef,
} from './types.js';
import { join } from 'node:path';
import { monotonicMs } from '../sys/monotonic.js';

/** Boot failed because required plugins did not load; lists each with its error. */
export class BootError extends Error {
  constructor(readonly failures: { uri: string; reason: string }[]) {
    super(failures.map((f) => `${f.uri}: ${f.reason}`).join('; '));
    this.name = 'BootError';
  }
}

export interface KernelOptions {
  root: string;
  state: string;
  addresses: { grpc: string; ttrpc: string };
  /** `[plugins."<uri>"]` tables (v1 files: keys `v1:<id>`). */
  pluginConfig: Record<string, Record<string, unknown>>;
  disabled: string[];
  required: string[];
  events: EventExchange;
  log: Logger;
  daemon: DaemonInfo;
  /** Where config findings are attributed in messages. */
  configSource?: string;
}

const typeToken = (type: string) => Symbol.for(`berth.type:${type}`);
const uriToken = (uri: string) => Symbol.for(`berth.plugin:${uri}`);

/** Resolves a config/list entry (full URI, or `v1:<id>` from a version 1 file) to URIs. */
function resolveEntry(entry: string, regs: readonly Registration<any, any>[]): string[] {
  if (!entry.startsWith('v1:')) return [entry];
  const id = entry.slice(3);
  return regs.filter((r) => r.id === id).map(uriOf);
}

export class Kernel {
  private readonly container = new Container();
  private readonly results: PluginResult[] = [];
  private readonly abort = new AbortController();
  private readonly configs = new Map<string, unknown>();
  private stopped = false;

  constructor(private readonly regs: readonly Registration<any, any>[], private readonly opts: KernelOptions) {
    this.container.bind(Symbol.for('berth.events')).toConstantValue(opts.events);
    this.container.bind(Symbol.for('berth.logger')).toConstantValue(opts.log);
  }

  /** Every plugin result in init order (introspection's view). */
  get plugins(): readonly PluginResult[] {
    return this.results;
  }

  /** The signal plugins' background work stops on. */
  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /**
   * Validates every plugin's config section before anything starts: a wrong value type is a
   * ConfigError (fatal, naming the key); unknown keys and unknown sections are warnings.
   */
  decodeConfigs(): string[] {
    const warnings: string[] = [];
    const where = this.opts.configSource ?? 'config';
    const known = new Set<string>();
    for (const reg of this.regs) {
      const uri = uriOf(reg);
      const aliases = new Set((reg.config?.sectionAliases ?? []).flatMap((a) => [a, `v1:${a.slice(a.lastIndexOf('.') + 1)}`]));
      const own = (k: string) => resolveEntry(k, [reg]).includes(uri) && (k === uri || k === `v1:${reg.id}`);
      // Alias sections first: the plugin's own section has the last word.
      const entries = Object.entries(this.opts.pluginConfig);
      const sections = [...entries.filter(([k]) => aliases.has(k)), ...entries.filter(([k]) => own(k))];
      for (const [k] of sections) known.add(k);
      const spec = reg.config;
      if (!spec) {
        for (const [k, v] of sections) if (Object.keys(v).length) warnings.push(`${where}: plugins."${k}": plugin takes no config; ignored`);
        this.configs.set(uri, undefined);
        continue;
      }
      let value = spec.defaults;
      for (const [k, section] of sections) {
        checkShape(section, spec.defaults as Record<string, unknown>, `${where}: plugins."${k}"`, warnings, new Set(openKeys(spec.defaults)));
        value = mergeOver(value, section);
      }
      try {
        spec.validate?.(value);
      } catch (err) {
        throw new ConfigError(`${where}: plugins."${uri}": ${messageOf(err).replace(/: invalid argument$/, '')}`);
      }
      this.configs.set(uri, value);
    }
    for (const k of Object.keys(this.opts.pluginConfig)) {
      if (!known.has(k)) warnings.push(`${where}: plugins."${k.replace(/^v1:/, '')}": no such plugin; section ignored`);
    }
    return warnings;
  }

  /** Initialises every enabled plugin in dependency order. Throws BootError for required failures. */
  async boot(): Promise<void> {
    if (this.configs.size === 0 && this.regs.length) this.decodeConfigs();
    const disabled = new Set(this.opts.disabled.flatMap((d) => resolveEntry(d, this.regs)));
    const order = bootOrder(this.regs, disabled);
    for (const reg of order) await this.initOne(reg);
    this.checkRequired(disabled);
  }

  private checkRequired(disabled: Set<string>): void {
    const failures: { uri: string; reason: string }[] = [];
    for (const entry of this.opts.required) {
      const uris = resolveEntry(entry, this.regs);
      if (uris.length === 0) failures.push({ uri: entry.replace(/^v1:/, ''), reason: 'required plugin not included' });
      for (const uri of uris) {
        const r = this.results.find((x) => x.uri === uri);
        if (!r) failures.push({ uri, reason: disabled.has(uri) ? 'required plugin is disabled' : 'required plugin not included' });
        else if (r.status !== 'ok') failures.push({ uri, reason: `load required plugin: ${messageOf(r.error)}` });
      }
    }
    if (failures.length) throw new BootError(failures);
  }

  private async initOne(reg: Registration<any, any>): Promise<void> {
    const uri = uriOf(reg);
    const meta: PluginMeta = { platforms: [], exports: {}, capabilities: [] };
    const result: PluginResult = {
      type: reg.type, id: reg.id, uri, requires: [...(reg.requires ?? [])], meta, status: 'ok', initMs: 0,
      config: this.configs.get(uri),
    };
    const log = this.opts.log.child({ plugin: uri });
    const ctx = this.contextFor(reg, meta, log);
    const started = monotonicMs();
    this.opts.log.info('loading plugin', { id: uri, type: reg.type });
    try {
      const instance = await reg.init(ctx);
      result.instance = instance;
      this.container.bind(uriToken(uri)).toConstantValue(instance);
      this.container.bind(typeToken(reg.type)).toConstantValue(instance);
    } catch (err) {
      result.error = err instanceof Error ? err : new Error(String(err));
      if (err instanceof SkipPluginError) {
        result.status = 'skip';
        this.opts.log.info('skip loading plugin', { id: uri, error: result.error.message });
      } else {
        result.status = 'error';
        this.opts.log.warn('failed to load plugin', { id: uri, error: result.error.message });
      }
    }
    result.initMs = monotonicMs() - started;
    this.opts.log.debug('plugin init finished', { id: uri, status: result.status, ms: Number(result.initMs.toFixed(2)) });
    this.results.push(result);
  }

  private contextFor(reg: Registration<any, any>, meta: PluginMeta, log: Logger): InitContext<any> {
    const uri = uriOf(reg);
    const requires = reg.requires ?? [];
    const allowed = (type: string) => {
      if (requires.includes('*') || requires.includes(type)) return;
      throw new InvalidArgumentError(`plugin ${uri} looked up ${type} without declaring it in requires`);
    };
    const okOfType = (type: string) => this.results.filter((r) => r.type === type && r.status === 'ok');
    const whyNone = (type: string): Error => {
      const failed = this.results.filter((r) => r.type === type && r.status === 'error');
      if (failed.length) {
        return new FailedPreconditionError(`dependency ${failed.map((f) => `${f.uri} failed: ${messageOf(f.error)}`).join('; ')}`);
      }
      return new NotFoundError(`no plugins registered for ${type}`);
    };
    return {
      type: reg.type,
      id: reg.id,
      uri,
      root: join(this.opts.root, uri),
      state: join(this.opts.state, uri),
      daemonRoot: this.opts.root,
      daemonState: this.opts.state,
      config: this.configs.get(uri),
      addresses: this.opts.addresses,
      events: this.opts.events,
      log,
      meta,
      signal: this.abort.signal,
      daemon: this.opts.daemon,
      get: async (type) => {
        allowed(type);
        if (!okOfType(type).length) throw whyNone(type);
        return this.container.getAll(typeToken(type))[0] as never;
      },
      getByType: async (type) => {
        allowed(type);
        const ok = okOfType(type);
        if (!ok.length) throw whyNone(type);
        return new Map(ok.map((r) => [r.id, this.container.get(uriToken(r.uri)) as never]));
      },
      getById: async (type, id) => {
        allowed(type);
        const r = this.results.find((x) => x.type === type && x.id === id);
        if (!r) throw new NotFoundError(`plugin ${type}.${id}`);
        if (r.status !== 'ok') throw new FailedPreconditionError(`dependency ${r.uri} failed: ${messageOf(r.error)}`);
        return this.container.get(uriToken(r.uri)) as never;
      },
      service: async <T,>(ref: ServiceRef<T>) => {
        allowed(ref.type);
        const r = this.results.find((x) => x.type === ref.type && x.id === ref.id);
        if (!r) throw new NotFoundError(`plugin ${ref.type}.${ref.id}`);
        if (r.status !== 'ok') throw new FailedPreconditionError(`dependency ${r.uri} failed: ${messageOf(r.error)}`);
        return this.container.get(uriToken(r.uri)) as T;
      },
      plugins: () => this.results,
    };
  }

  /** A plugin's decoded config (defaults merged with its section), after decodeConfigs. */
  configOf(uri: string): unknown {
    return this.configs.get(uri);
  }

  /** The instance of a plugin by URI, for the server that starts after boot. */
  instance(uri: string): unknown {
    return this.container.isBound(uriToken(uri)) ? this.container.get(uriToken(uri)) : undefined;
  }

  /** Closes instances in reverse init order; each gets `timeoutMs`; errors are logged. */
  async stop(timeoutMs = 5000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    for (const r of [...this.results].reverse()) {
      const inst = r.instance as Partial<Closable> | undefined;
      if (r.status !== 'ok' || typeof inst?.close !== 'function') continue;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          Promise.resolve(inst.close()),
          new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`close timed out after ${timeoutMs} ms`)), timeoutMs))),
        ]);
      } catch (err) {
        this.opts.log.warn('failed to close plugin', { id: r.uri, error: messageOf(err) });
      } finally {
        clearTimeout(timer);
      }
    }
    this.container.unbindAll();
  }
}

/** Keys of a config whose defaults are maps with free keys (checked loosely). */
function openKeys(defaults: unknown): string[] {
  if (kindOf(defaults) !== 'table') return [];
  return Object.entries(defaults as Record<string, unknown>)
    .filter(([, v]) => kindOf(v) === 'table' && Object.keys(v as object).length === 0)
    .map(([k]) => k);
}
