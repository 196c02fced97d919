/**
 * `berth run [flags] IMAGE|ROOTFS ID [COMMAND] [ARG...]` — ctr 1.6's run: builds the OCI spec
 * on the client (from an image config, or for an unmanaged rootfs with --rootfs), creates the
 * container and its task, attaches stdio through FIFOs and exits with the task's status.
 * Like ctr, flags end at the first positional argument.
 */
import type { Command } from 'commander';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { action, collect, UsageError } from '../action.js';
import type { CliContext } from '../context.js';
import { Code, isNotFound, isNotImplemented, RemoteError } from '../../../core/errdefs/errdefs.js';
import { SPEC_TYPE_URL } from '../../../core/containers/containers.js';
import { DEFAULT_SNAPSHOTTER_LABEL } from '../../../core/namespaces/namespaces.js';
import * as oci from '../../../client/oci/spec.js';
import { createAndRunTask, services, STOP_SIGNAL_LABEL } from './tasks.js';

export const DEFAULT_RUNTIME = 'io.containerd.runc.v2';

/** `type=bind,src=/a,dst=/b,options=rbind:ro` (ctr's --mount, a CSV record of key=value fields). */
export function parseMountFlag(s: string): oci.SpecMount {
  const m: oci.SpecMount = { destination: '' };
  for (const field of splitCsv(s)) {
    const i = field.indexOf('=');
    if (i < 0) throw new UsageError('invalid mount specification: expected key=val');
    const key = field.slice(0, i);
    const val = field.slice(i + 1);
    switch (key) {
      case 'type': m.type = val; break;
      case 'source': case 'src': m.source = val; break;
      case 'destination': case 'dst': m.destination = val; break;
      case 'options': m.options = val.split(':'); break;
      default: throw new UsageError(`mount option ${JSON.stringify(key)} not supported`);
    }
  }
  return { destination: m.destination, type: m.type, source: m.source, options: m.options };
}

function splitCsv(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') {
      if (quoted && s[i + 1] === '"') { cur += '"'; i++; } else quoted = !quoted;
    } else if (c === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out;
}

/** ctr's LabelArgs: `k=v`, or a bare `k` meaning `k=true`. */
export function labelArgs(list: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list) {
    const i = l.indexOf('=');
    if (i < 0) out[l] = 'true';
    else out[l.slice(0, i)] = l.slice(i + 1);
  }
  return out;
}

async function readEnvFile(path: string): Promise<string[]> {
  const text = await readFile(path, 'utf8');
  return text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
}

// ------------------------------------------------------------------ images

interface ResolvedImage {
  name: string;
  config: oci.ImageConfig;
  labels: Record<string, string>;
  chainId: string;
}

async function readBlob(ctx: CliContext, digest: string): Promise<Buffer> {
  const { ContentDefinition } = await import('../../../api/gen/services/content/v1/content.js');
  const parts: Buffer[] = [];
  for await (const r of ctx.connection.service(ContentDefinition).read({ digest })) parts.push(Buffer.from(r.data));
  return Buffer.concat(parts);
}

/** Images.Get → (index → this platform's manifest) → manifest → config; chain id from diff_ids. */
async function resolveImage(ctx: CliContext, ref: string, platform?: string): Promise<ResolvedImage> {
  const { ImagesDefinition } = await import('../../../api/gen/services/images/v1/images.js');
  const platforms = await import('../../../client/platforms/index.js');
  const { chainID } = await import('../../../core/images/identity.js');
  const { image } = await ctx.connection.service(ImagesDefinition).get({ name: ref });
  if (!image?.target) throw new RemoteError(Code.NOT_FOUND, `image "${ref}": not found`);
  const matcher = platform ? platforms.only(platforms.parse(platform)) : platforms.defaultMatcher();
  let desc: { mediaType: string; digest: string } = image.target;
  for (let depth = 0; depth < 4; depth++) {
    const doc = JSON.parse((await readBlob(ctx, desc.digest)).toString('utf8'));
    const mt = desc.mediaType || doc.mediaType || '';
    if (Array.isArray(doc.manifests) || /manifest\.list|image\.index/.test(mt)) {
      const candidates = (doc.manifests ?? []).filter((m: any) => !m.platform || matcher.match(platforms.normalize(m.platform)));
      const sorted = platforms.sortByPreference(candidates, matcher);
      if (!sorted.length) throw new RemoteError(Code.NOT_FOUND, `no match for platform in manifest ${desc.digest}: not found`);
      desc = sorted[0] as { mediaType: string; digest: string };
      continue;
    }
    const configDesc = doc.config;
    if (!configDesc?.digest) throw new Error(`manifest ${desc.digest} has no config`);
    const cfg = JSON.parse((await readBlob(ctx, configDesc.digest)).toString('utf8'));
    const diffIds: string[] = cfg.rootfs?.diff_ids ?? [];
    return { name: image.name, config: cfg.config ?? {}, labels: image.labels ?? {}, chainId: chainID(diffIds) };
  }
  throw new Error(`image ${ref}: index nesting too deep`);
}

async function defaultSnapshotter(ctx: CliContext, flag: string | undefined): Promise<string> {
  if (flag) return flag;
  if (process.env.CONTAINERD_SNAPSHOTTER) return process.env.CONTAINERD_SNAPSHOTTER;
  const { NamespacesDefinition } = await import('../../../api/gen/services/namespaces/v1/namespace.js');
  try {
    const { namespace } = await ctx.connection.service(NamespacesDefinition).get({ name: ctx.connection.namespace });
    return namespace?.labels?.[DEFAULT_SNAPSHOTTER_LABEL] || 'overlayfs';
  } catch {
    return 'overlayfs';
  }
}

// ------------------------------------------------------------------ containers

export interface NewContainerResult {
  id: string;
  snapshotter: string;
  /** Rootfs mounts for Tasks.Create (none with --rootfs). */
  mounts: { type: string; source: string; options: string[] }[];
}

/** Numeric flags and the number syntax ctr's flag parser accepts for each. */
const NUMERIC_FLAGS: ReadonlyArray<[string, string, RegExp]> = [
  ['memoryLimit', 'memory-limit', /^\d+$/],
  ['cpus', 'cpus', /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/],
  ['cpuShares', 'cpu-shares', /^\d+$/],
  ['cpuQuota', 'cpu-quota', /^[+-]?\d+$/],
  ['cpuPeriod', 'cpu-period', /^\d+$/],
];

/** A malformed number is a usage error worded like ctr's, never a silently ignored limit. */
function checkNumericFlags(opts: Record<string, unknown>): void {
  for (const [key, flag, syntax] of NUMERIC_FLAGS) {
    const v = opts[key];
    if (v !== undefined && !syntax.test(String(v))) throw new UsageError(`invalid value ${JSON.stringify(String(v))} for flag -${flag}: parse error`);
  }
}

/** Builds and creates the container as ctr's run.NewContainer does; shared with `containers create`. */
export async function newContainer(ctx: CliContext, positionals: string[], opts: Record<string, any>): Promise<NewContainerResult> {
  const ref = positionals[0] ?? '';
  const id = positionals[1] ?? '';
  const args = positionals.slice(2);
  // ctr's containers create reports these as errdefs invalid-argument errors (`run` checks first, plainly).
  if (!ref) throw new UsageError('image ref must be provided: invalid argument');
  if (!id) throw new UsageError('container id must be provided: invalid argument');
  checkNumericFlags(opts);
  const ns = ctx.connection.namespace;
  const spec = oci.defaultSpec(ns, id);
  oci.withDefaultUnixDevices(spec);
  if (opts.envFile) oci.withEnv(spec, await readEnvFile(opts.envFile));
  oci.withEnv(spec, opts.env ?? []);
  oci.withMounts(spec, (opts.mount ?? []).map(parseMountFlag));

  const labels = labelArgs(opts.label);
  let containerLabels: Record<string, string> = labels;
  let image = '';
  let snapshotter = '';
  let snapshotKey = '';
  let mounts: NewContainerResult['mounts'] = [];
  const svc = await services(ctx);
  const { SnapshotsDefinition } = await import('../../../api/gen/services/snapshots/v1/snapshots.js');
  const snapshots = ctx.connection.service(SnapshotsDefinition);

  const lease = await startLease(ctx);
  try {
    if (opts.rootfs) {
      oci.withRootFSPath(spec, resolve(ref));
    } else {
      const img = await resolveImage(ctx, ref, opts.platform);
      snapshotter = await defaultSnapshotter(ctx, opts.snapshotter);
      try {
        await snapshots.stat({ snapshotter, key: img.chainId });
      } catch (err) {
        if (isNotFound(err)) throw new RemoteError(Code.NOT_FOUND, `image ${ref} is not unpacked for snapshotter ${snapshotter} (run \`berth images pull\` or \`ctr images pull\` first): not found`);
        throw err;
      }
      if (opts.uidmap && opts.gidmap) {
        // A user namespace (`run` only), as ctr: the mappings in the spec, and a root
        // filesystem owned by the host IDs, either shifted by a copy made here or left to a
        // snapshotter that understands the remapping labels.
        const { parseIDMapping, prepareRemappedSnapshot } = await import('../../../client/userns.js');
        const uidMap = parseIDMapping(opts.uidmap);
        const gidMap = parseIDMapping(opts.gidmap);
        oci.withUserNamespace(spec, uidMap, gidMap);
        if (opts.remapLabels) {
          const labels = {
            'containerd.io/snapshot/uidmapping': `0:${uidMap.hostID}:${uidMap.size}`,
            'containerd.io/snapshot/gidmapping': `0:${gidMap.hostID}:${uidMap.size}`,
          };
          mounts = (await snapshots.prepare({ snapshotter, key: id, parent: img.chainId, labels })).mounts;
        } else {
          const { withTempMount } = await import('../../../core/mount/temp.js');
          mounts = await prepareRemappedSnapshot(snapshots, snapshotter, id, img.chainId, uidMap.hostID, gidMap.hostID, withTempMount);
        }
      } else {
        mounts = (await snapshots.prepare({ snapshotter, key: id, parent: img.chainId, labels: labelArgs(opts.snapshotterLabel) })).mounts;
      }
      mounts = mounts.map((m) => ({ type: m.type, source: m.source, options: m.options }));
      snapshotKey = id;
      image = img.name;
      // The image's users and groups are read from a read-only view, as ctr's WithReadonlyTempMount.
      const { withReadonlyTempMount } = await import('../../../core/mount/temp.js');
      await withReadonlyTempMount(mounts, (root) => oci.withImageConfig(spec, img.config, root));
      containerLabels = { ...img.labels, ...(img.config.Labels ?? {}), ...labels };
      containerLabels[STOP_SIGNAL_LABEL] = img.config.StopSignal || 'SIGTERM';
    }
    if (opts.readOnly) oci.withRootFSReadonly(spec);
    if (args.length) oci.withProcessArgs(spec, args);
    if (opts.cwd) oci.withProcessCwd(spec, opts.cwd);
    if (opts.tty) oci.withTTY(spec);
    if (opts.privileged) await oci.withPrivileged(spec);
    if (opts.netHost) {
      oci.withHostNamespace(spec, 'network');
      oci.withMounts(spec, [
        { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro'] },
        { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro'] },
      ]);
      oci.withEnv(spec, [`HOSTNAME=${hostname()}`]);
    }
    if (opts.annotation?.length) {
      const annos: Record<string, string> = {};
      for (const a of opts.annotation as string[]) {
        const i = a.indexOf('=');
        if (i < 0) throw new UsageError(`invalid key=value format annotation: ${a}`);
        annos[a.slice(0, i)] = a.slice(i + 1);
      }
      oci.withAnnotations(spec, annos);
    }
    for (const [flag, fn] of [['capAdd', oci.withAddedCapabilities], ['capDrop', oci.withDroppedCapabilities]] as const) {
      const caps: string[] = opts[flag] ?? [];
      if (caps.some((c) => !c.startsWith('CAP_'))) throw new UsageError("capabilities must be specified with 'CAP_' prefix");
      if (caps.length) fn(spec, caps);
    }
    if (opts.cpus !== undefined && Number(opts.cpus) > 0) oci.withCPUCFS(spec, Math.trunc(Number(opts.cpus) * 100000), 100000);
    if (opts.cpuShares !== undefined && Number(opts.cpuShares) > 0) oci.withCPUShares(spec, Number(opts.cpuShares));
    const quota = opts.cpuQuota !== undefined ? Number(opts.cpuQuota) : -1;
    const period = opts.cpuPeriod !== undefined ? Number(opts.cpuPeriod) : 0;
    if (quota !== -1 || period !== 0) {
      if (Number(opts.cpus) > 0) throw new UsageError('cpus and quota/period should be used separately');
      oci.withCPUCFS(spec, quota, period);
    }
    for (const w of (opts.withNs ?? []) as string[]) {
      const parts = w.split(':');
      if (parts.length !== 2) throw new UsageError("joining a Linux namespace using --with-ns requires the format 'nstype:path'");
      if (!['pid', 'network', 'uts', 'mount', 'user', 'ipc', 'cgroup'].includes(parts[0]!)) {
        throw new UsageError(`the Linux namespace type specified in --with-ns is not valid: ${parts[0]}`);
      }
      oci.withLinuxNamespace(spec, { type: parts[0]!, path: parts[1]! });
    }
    if (opts.allowNewPrivs) oci.withNewPrivileges(spec);
    if (opts.cgroup !== undefined) oci.withCgroup(spec, opts.cgroup);
    if (opts.memoryLimit) oci.withMemoryLimit(spec, Number(opts.memoryLimit));
    for (const dev of (opts.device ?? []) as string[]) await oci.withDevices(spec, dev, 'rwm');
    if (opts.rootfsPropagation) (spec.linux ??= {}).rootfsPropagation = opts.rootfsPropagation;
    // Cache and memory-bandwidth allocation (Intel RDT): only the class, as ctr sets it.
    if (opts.rdtClass) (spec.linux ??= {}).intelRdt = { closID: opts.rdtClass };
    oci.withAnnotations(spec, labels);

    const runtime = await runtimeOf(opts);
    const { container } = await svc.containers.create({
      container: {
        id,
        labels: containerLabels,
        image,
        runtime,
        spec: { typeUrl: SPEC_TYPE_URL, value: Buffer.from(JSON.stringify(oci.finalizeSpec(spec))) },
        snapshotter,
        snapshotKey,
      },
    });
    return { id: container!.id, snapshotter, mounts };
  } catch (err) {
    if (snapshotKey) await snapshots.remove({ snapshotter, key: snapshotKey }).catch(() => undefined);
    throw err;
  } finally {
    await lease.done();
  }
}

async function startLease(ctx: CliContext): Promise<{ done(): Promise<void> }> {
  const conn = ctx.connection;
  try {
    const { createLease, deleteLease } = await import('../../../client/pull/lease.js');
    const id = await createLease(conn);
    conn.lease = id;
    return {
      done: async () => {
        conn.lease = undefined;
        await deleteLease(conn, id).catch(() => undefined);
      },
    };
  } catch (err) {
    if (!isNotImplemented(err)) throw err;
    return { done: async () => undefined };
  }
}

async function runtimeOf(opts: Record<string, any>): Promise<{ name: string; options?: { typeUrl: string; value: Buffer } }> {
  const name: string = opts.runtime || DEFAULT_RUNTIME;
  if ((opts.runcBinary || opts.runcSystemdCgroup) && name !== DEFAULT_RUNTIME) {
    throw new UsageError(`specifying runc-binary and runc-systemd-cgroup is only supported for "${DEFAULT_RUNTIME}" runtime`);
  }
  if (name === DEFAULT_RUNTIME) {
    if (opts.runcSystemdCgroup && !opts.cgroup) {
      throw new UsageError('option --runc-systemd-cgroup requires --cgroup to be set, e.g. "machine.slice:foo:deadbeef"');
    }
    const { Options } = await import('../../../api/gen/runc/options/oci.js');
    const value = Options.encode(Options.fromPartial({
      binaryName: opts.runcBinary ?? '',
      systemdCgroup: !!opts.runcSystemdCgroup,
      root: opts.runcRoot ?? '',
    })).finish();
    return { name, options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.from(value) } };
  }
  if (opts.runtimeConfigPath) {
    const { Options } = await import('../../../api/gen/runtimeoptions/v1/api.js');
    const value = Options.encode(Options.fromPartial({ configPath: opts.runtimeConfigPath })).finish();
    return { name, options: { typeUrl: 'runtimeoptions.v1.Options', value: Buffer.from(value) } };
  }
  return { name };
}

/** The flags `run` and `containers create` share (ctr's SnapshotterFlags + ContainerFlags). */
export function containerFlags(cmd: Command): Command {
  return cmd
    .option('--snapshotter <name>', 'snapshotter name. Empty value stands for the default value.')
    .option('--snapshotter-label <label>', 'labels added to the new snapshot for this container.', collect)
    .option('-c, --config <path>', 'path to the runtime-specific spec config file')
    .option('--cwd <dir>', 'specify the working directory of the process')
    .option('--env <var>', 'specify additional container environment variables (e.g. FOO=bar)', collect)
    .option('--env-file <file>', 'specify additional container environment variables in a file(e.g. FOO=bar, one per line)')
    .option('--label <label>', 'specify additional labels (e.g. foo=bar)', collect)
    .option('--annotation <annotation>', 'specify additional OCI annotations (e.g. foo=bar)', collect)
    .option('--mount <mount>', 'specify additional container mount (e.g. type=bind,src=/tmp,dst=/host,options=rbind:ro)', collect)
    .option('--net-host', 'enable host networking for the container')
    .option('--privileged', 'run privileged container')
    .option('--device <path>', 'file path to a device to add to the container; or a path to a directory tree of devices to add to the container', collect)
    .option('--rootfs-propagation <mode>', 'set the propagation of the container rootfs')
    .option('--rdt-class <class>', 'name of the RDT class to associate the container with. Specifies a Class of Service (CLOS) for cache and memory bandwidth management.')
    .option('--read-only', 'set the containers filesystem as readonly')
    .option('--runtime <name>', 'runtime name', DEFAULT_RUNTIME)
    .option('--runtime-config-path <path>', 'optional runtime config path')
    .option('-t, --tty', 'allocate a TTY for the container')
    .option('--with-ns <ns>', "specify existing Linux namespaces to join at container runtime (format '<nstype>:<path>')", collect)
    .option('--pid-file <file>', "file path to write the task's pid")
    .option('--allow-new-privs', "turn off OCI spec's NoNewPrivileges feature flag")
    .option('--memory-limit <bytes>', 'memory limit (in bytes) for the container')
    .option('--cap-add <cap>', "add Linux capabilities (Set capabilities with 'CAP_' prefix)", collect)
    .option('--cap-drop <cap>', "drop Linux capabilities (Set capabilities with 'CAP_' prefix)", collect)
    .option('--rootfs', 'use custom rootfs that is not managed by containerd snapshotter');
}

export function register(program: Command): void {
  // As in ctr, global flags come before the command and a command's flags before its arguments.
  program.enablePositionalOptions();
  containerFlags(
    program.command('run')
      .description('run a container')
      .usage('[flags] Image|RootFS ID [COMMAND] [ARG...]')
      .argument('[args...]')
      .passThroughOptions()
      .option('--rm', 'remove the container after running, cannot be used with --detach')
      .option('--null-io', 'send all IO to /dev/null')
      .option('--log-uri <uri>', 'log uri')
      .option('-d, --detach', 'detach from the task after it has started execution, cannot be used with --rm')
      .option('-i, --interactive', 'keep stdin attached (always the case, as with ctr)')
      .option('--fifo-dir <dir>', 'directory used for storing IO FIFOs')
      .option('--cgroup <path>', 'cgroup path (To disable use of cgroup, set to "" explicitly)')
      .option('--platform <platform>', 'run image for specific platform')
      .option('--runc-binary <path>', 'specify runc-compatible binary')
      .option('--runc-root <path>', 'specify runc-compatible root')
      .option('--runc-systemd-cgroup', 'start runc with systemd cgroup manager')
      .option('--cpus <n>', 'set the CFS cpu quota')
      .option('--cpu-shares <n>', 'set the cpu shares', '1024')
      .option('--cpu-quota <n>', 'Limit CPU CFS quota')
      .option('--cpu-period <n>', 'Limit CPU CFS period')
      .option('--no-pivot', 'disable use of pivot-root (linux only)')
      .option('--uidmap <container-uid:host-uid:length>', 'run inside a user namespace with the specified UID mapping range; specified with the format container-uid:host-uid:length')
      .option('--gidmap <container-gid:host-gid:length>', 'run inside a user namespace with the specified GID mapping range; specified with the format container-gid:host-gid:length')
      .option('--remap-labels', 'provide the user namespace ID remapping to the snapshotter via label options; requires snapshotter support'),
  ).action(action(async (ctx, positionals, opts) => {
    if (opts.config) throw new UsageError('--config is not supported by berth run');
    if (opts.rm && opts.detach) throw new UsageError('flags --detach and --rm cannot be specified together');
    if (!positionals[0]) throw new UsageError('image ref must be provided');
    if (!positionals[1]) throw new UsageError('container id must be provided');
    const created = await newContainer(ctx, positionals, opts);
    const svc = await services(ctx);
    try {
      const code = await createAndRunTask(ctx, svc, { id: created.id }, {
        tty: !!opts.tty,
        detach: !!opts.detach,
        nullIO: !!opts.nullIo,
        logURI: opts.logUri,
        fifoDir: opts.fifoDir,
        pidFile: opts.pidFile,
        noPivot: opts.pivot === false,
        rootfs: created.mounts,
        ...(await ioOwner(opts)),
      });
      if (code) return code;
    } finally {
      if (opts.rm && !opts.detach) {
        await removeContainer(ctx, created.id, created.snapshotter ? { snapshotter: created.snapshotter, key: created.id } : undefined);
      }
    }
  }));
}

/**
 * The host IDs that own the task's stdio pipes when it runs in a user namespace (ctr's
 * WithUIDOwner/WithGIDOwner). As in ctr, a mapping that does not parse is warned about and
 * leaves that ID at 0.
 */
async function ioOwner(opts: Record<string, any>): Promise<{ ioUid?: number; ioGid?: number }> {
  if (!opts.uidmap && !opts.gidmap) return {};
  const { parseIDMapping } = await import('../../../client/userns.js');
  const hostOf = (text: string | undefined, what: 'uid' | 'gid'): number | undefined => {
    if (!text) return undefined;
    try {
      return parseIDMapping(text).hostID;
    } catch (err) {
      process.stderr.write(`berth: unable to parse ${what}map; defaulting to ${what} 0 IO ownership: ${(err as Error).message}\n`);
      return 0;
    }
  };
  return { ioUid: hostOf(opts.uidmap, 'uid'), ioGid: hostOf(opts.gidmap, 'gid') };
}

/** Removes the container record and its snapshot (when given), as containerd's WithSnapshotCleanup. */
export async function removeContainer(ctx: CliContext, id: string, snapshot: { snapshotter: string; key: string } | undefined): Promise<void> {
  const svc = await services(ctx);
  if (snapshot?.snapshotter && snapshot.key) {
    const { SnapshotsDefinition } = await import('../../../api/gen/services/snapshots/v1/snapshots.js');
    await ctx.connection.service(SnapshotsDefinition).remove(snapshot).catch((err) => {
      if (!isNotFound(err)) throw err;
    });
  }
  await svc.containers.delete({ id });
}
