/**
 * The plugin contract: type strings, registrations and what a plugin sees while it
 * initialises. Type strings and ids are containerd 1.6's byte for byte, because
 * `ctr plugins ls` output and config section names are part of the compatible surface.
 */
import type { Logger } from '../log/logger.js';
import type { EventExchange } from '../events/exchange.js';

/** containerd's plugin type strings. */
export const PluginType = Object.freeze({
  Internal: 'io.containerd.internal.v1',
  RuntimeV1: 'io.containerd.runtime.v1',
  RuntimeV2: 'io.containerd.runtime.v2',
  Service: 'io.containerd.service.v1',
  GRPC: 'io.containerd.grpc.v1',
  TTRPC: 'io.containerd.ttrpc.v1',
  Snapshotter: 'io.containerd.snapshotter.v1',
  Monitor: 'io.containerd.monitor.v1',
  Differ: 'io.containerd.differ.v1',
  Metadata: 'io.containerd.metadata.v1',
  Content: 'io.containerd.content.v1',
  GC: 'io.containerd.gc.v1',
  Event: 'io.containerd.event.v1',
} as const);
export type PluginTypeName = (typeof PluginType)[keyof typeof PluginType];

/**
 * Maps a plugin type to the interface its instances implement. Domain modules in core
 * extend it by declaration merging, so lookups through InitContext are typed without casts.
 * Types whose instances differ per id (services) are looked up through ServiceRefs instead.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface PluginTypeMap {}

/** The instance type of a plugin type; unknown when no domain module declared it. */
export type InstanceOf<T extends string> = T extends keyof PluginTypeMap ? PluginTypeMap[T] : unknown;

/** A typed handle on one plugin instance of a type whose instances differ by id. */
export interface ServiceRef<T> {
  readonly type: PluginTypeName;
  readonly id: string;
  /** Phantom field carrying the instance type; never read. */
  readonly __instance?: T;
}

/** Declares a typed handle for the plugin `<type>.<id>`. */
export function serviceRef<T>(type: PluginTypeName, id: string): ServiceRef<T> {
  return Object.freeze({ type, id });
}

/** Platform a plugin supports, as introspection reports it. */
export interface Platform {
  os: string;
  architecture: string;
  variant: string;
}

/** Metadata a plugin fills while initialising; introspection reports it. */
export interface PluginMeta {
  platforms: Platform[];
  exports: Record<string, string>;
  capabilities: string[];
}

/**
 * Thrown by init when the plugin does not apply on this host (overlay unsupported,
 * root not on btrfs, no address configured). The message must contain "skip plugin":
 * ctr decides between `skip` and `error` by searching for it.
 */
export class SkipPluginError extends Error {
  constructor(reason: string) {
    super(reason.endsWith('skip plugin') ? reason : `${reason}: skip plugin`);
    this.name = 'SkipPluginError';
  }
}

/** What a plugin's init receives. Only the types declared in `requires` can be looked up. */
export interface InitContext<C> {
  readonly type: string;
  readonly id: string;
  /** `<type>.<id>`: keys the config section, the root and state dirs and introspection. */
  readonly uri: string;
  /** `<root>/<uri>`: the plugin's own persistent directory (created on demand by the plugin). */
  readonly root: string;
  /** `<state>/<uri>`: the plugin's own volatile directory. */
  readonly state: string;
  /** The daemon-wide root and state, for plugins that report them (introspection). */
  readonly daemonRoot: string;
  readonly daemonState: string;
  readonly config: C;
  readonly addresses: { grpc: string; ttrpc: string };
  readonly events: EventExchange;
  readonly log: Logger;
  readonly meta: PluginMeta;
  /** Aborted when the daemon shuts down; background loops take it. */
  readonly signal: AbortSignal;
  /** Daemon-wide settings a few plugins need (timeouts, debug level). */
  readonly daemon: DaemonInfo;
  /** The only instance of a required type (skipped and failed plugins are ignored). */
  get<T extends string>(type: T): Promise<InstanceOf<T>>;
  /** Every initialised instance of a required type, by id. */
  getByType<T extends string>(type: T): Promise<Map<string, InstanceOf<T>>>;
  /** One instance of a required type by id. */
  getById<T extends string>(type: T, id: string): Promise<InstanceOf<T>>;
  /** A service plugin through its typed ref (its type must be required). */
  service<T>(ref: ServiceRef<T>): Promise<T>;
  /** The live set of every plugin result, for introspection-like plugins. */
  plugins(): readonly PluginResult[];
}

/** Daemon-wide facts passed to every plugin. */
export interface DaemonInfo {
  logLevel: string;
  timeouts: Record<string, string>;
  /** Absolute path of the executable shims call back (`-publish-binary`). */
  executable: string;
  configPath?: string;
}

/** Typed plugin configuration: defaults plus validation of the merged value. */
export interface PluginConfigSpec<C> {
  defaults: C;
  /** Throws InvalidArgumentError naming the key that is wrong. */
  validate?: (config: C) => void;
  /**
   * URIs of containerd plugins whose config section holds the same settings (containerd's
   * `io.containerd.metadata.v1.bolt` for berth's SQLite metadata store): their sections are
   * read too, under this plugin's own, so a containerd config.toml keeps its meaning.
   */
  sectionAliases?: readonly string[];
}

/** A plugin registration: what, after which types, with which config, and how to start it. */
export interface Registration<C = unknown, I = unknown> {
  type: string;
  id: string;
  /** Types this plugin depends on; `['*']` means after every other plugin. */
  requires?: string[];
  config?: PluginConfigSpec<C>;
  init: (ctx: InitContext<C>) => Promise<I> | I;
}

/** Declares a registration with its config type inferred from the defaults. */
export function definePlugin<C = Record<string, never>, I = unknown>(reg: Registration<C, I>): Registration<C, I> {
  return reg;
}

/** Instances may implement close; the kernel calls it in reverse init order on shutdown. */
export interface Closable {
  close(): Promise<void> | void;
}

export type PluginStatus = 'ok' | 'skip' | 'error';

/** The outcome of one plugin's init, as introspection reports it. */
export interface PluginResult {
  type: string;
  id: string;
  uri: string;
  requires: string[];
  meta: PluginMeta;
  status: PluginStatus;
  error?: Error;
  instance?: unknown;
  /** Wall time of init in milliseconds. */
  initMs: number;
  /** Config as merged over the defaults (for `config dump`). */
  config?: unknown;
}

export const uriOf = (r: { type: string; id: string }) => `${r.type}.${r.id}`;
