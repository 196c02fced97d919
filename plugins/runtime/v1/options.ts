/**
 * Runtime v1 option handling, kept free of I/O so it can be tested on its own: the container's
 * runtime options (containerd.linux.runc.RuncOptions), the task's create options
 * (containerd.linux.runc.CreateOptions), and the command lines of containerd-shim and of the
 * `runc delete` run after a shim died.
 */
import { RuncOptions, CreateOptions } from '../../../api/gen/runc/runctypes/runc.js';
import { InvalidArgumentError, messageOf } from '../../../core/errdefs/errdefs.js';
import type { AnyMessage } from '../../../core/events/exchange.js';

export const RUNC_OPTIONS_TYPE = 'containerd.linux.runc.RuncOptions';
export const CREATE_OPTIONS_TYPE = 'containerd.linux.runc.CreateOptions';

/** The runc state root the shim uses when it is given no -runtime-root. */
export const DEFAULT_RUNC_ROOT = '/run/containerd/runc';

/** The plugin's settings, under their TOML names. */
export interface RuntimeV1Config {
  /** containerd-shim binary: a name looked up in $PATH, or a path. */
  shim: string;
  /** The OCI runtime the shim runs (a name or path). */
  runtime: string;
  /** runc's state root; empty = the shim's default, /run/containerd/runc. */
  runtime_root: string;
  /** containerd runs the shim in-process; berth cannot (see plugin.ts). */
  no_shim: boolean;
  /** Starts shims with -debug and copies their output to the daemon's stdout/stderr. */
  shim_debug: boolean;
}

export const DEFAULT_CONFIG: Readonly<RuntimeV1Config> = Object.freeze({
  shim: 'containerd-shim',
  runtime: 'runc',
  runtime_root: '',
  no_shim: false,
  shim_debug: false,
});

const bytesOf = (a: AnyMessage) => Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength);

/**
 * The container's runtime options as RuncOptions. None at all reads as empty options; any
 * other message type is refused, as containerd refuses it.
 */
export function runcOptionsOf(options: AnyMessage | undefined): RuncOptions {
  if (!options) return RuncOptions.fromPartial({});
  if (options.typeUrl !== RUNC_OPTIONS_TYPE && !options.typeUrl.endsWith(`/${RUNC_OPTIONS_TYPE}`)) {
    throw new InvalidArgumentError(`invalid runtime options format (${options.typeUrl || 'no type'}, want ${RUNC_OPTIONS_TYPE})`);
  }
  try {
    return RuncOptions.decode(bytesOf(options));
  } catch (err) {
    throw new InvalidArgumentError(`invalid runtime options: ${messageOf(err)}`);
  }
}

/** The cgroup the task options ask the shim to be placed in ('' when none). */
export function shimCgroupOf(options: AnyMessage | undefined): string {
  if (!options) return '';
  if (options.typeUrl !== CREATE_OPTIONS_TYPE && !options.typeUrl.endsWith(`/${CREATE_OPTIONS_TYPE}`)) {
    throw new InvalidArgumentError(`invalid task options format (${options.typeUrl || 'no type'}, want ${CREATE_OPTIONS_TYPE})`);
  }
  try {
    return CreateOptions.decode(bytesOf(options)).shimCgroup;
  } catch (err) {
    throw new InvalidArgumentError(`invalid task options: ${messageOf(err)}`);
  }
}

/** The OCI runtime named in CreateTaskRequest.runtime. */
export function runtimeBinary(cfg: RuntimeV1Config, ropts: RuncOptions): string {
  return ropts.runtime || cfg.runtime;
}

export interface ShimArgsInput {
  namespace: string;
  workDir: string;
  /** The daemon's gRPC address. */
  address: string;
  /** What the shim runs to publish events (`<bin> --address A publish --topic T --namespace NS`). */
  containerdBinary: string;
  debug: boolean;
}

/**
 * containerd-shim's argv, flag for flag what containerd 1.6 passes. Note `-criu-path`: that is
 * the name containerd uses although containerd-shim only defines `-criu`, so a criu_path
 * option makes the shim refuse to start there too.
 */
export function shimArgs(cfg: RuntimeV1Config, ropts: RuncOptions, input: ShimArgsInput): string[] {
  const args = [
    '-namespace', input.namespace,
    '-workdir', input.workDir,
    '-address', input.address,
    '-containerd-binary', input.containerdBinary,
  ];
  if (ropts.criuPath) args.push('-criu-path', ropts.criuPath);
  const runtimeRoot = ropts.runtimeRoot || cfg.runtime_root;
  if (runtimeRoot) args.push('-runtime-root', runtimeRoot);
  if (ropts.systemdCgroup) args.push('-systemd-cgroup');
  if (input.debug) args.push('-debug');
  return args;
}

/**
 * `runc delete --force` for a task whose shim is gone: the runtime binary and its state root
 * per namespace, as the shim would have used them.
 */
export function forceDeleteCommand(cfg: RuntimeV1Config, ropts: RuncOptions, namespace: string, id: string): { file: string; args: string[] } {
  const root = `${ropts.runtimeRoot || cfg.runtime_root || DEFAULT_RUNC_ROOT}/${namespace}`;
  const args = ['--root', root];
  if (cfg.shim_debug) args.push('--debug');
  args.push('--log-format', 'json', 'delete', '--force', id);
  return { file: runtimeBinary(cfg, ropts), args };
}
