/**
 * `berth tasks start|ls|ps|kill|exec|pause|resume|rm|metrics|attach` with ctr 1.6's flags and
 * output, plus the helpers `berth run` shares: attached task I/O, signal forwarding, exit
 * codes, Go-style tab alignment and time formatting.
 */
import type { Command } from 'commander';
import { constants as osConstants } from 'node:os';
import { writeFileSync, renameSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { action, UsageError } from '../action.js';
import type { CliContext } from '../context.js';
import { Code, isNotFound, RemoteError } from '../../../core/errdefs/errdefs.js';
import { FifoIO, newFifoSet, type FifoSet } from '../../../client/cio/fifo.js';
import { PROCESS_TYPE_URL, SPEC_TYPE_URL } from '../../../core/containers/containers.js';
import type { Spec } from '../../../client/oci/spec.js';
import { goTabwriter, logLine } from '../output.js';

// ------------------------------------------------------------------ output helpers

/** Go's time.Time.String() for a UTC instant: `2006-01-02 15:04:05.999999999 +0000 UTC`. */
export function goTimeString(d: Date): string {
  const iso = d.toISOString();
  const frac = iso.slice(20, 23).replace(/0+$/, '');
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${frac ? `.${frac}` : ''} +0000 UTC`;
}

/** Go's RFC 3339 with nanoseconds, trailing zeros trimmed (how Go marshals time.Time to JSON). */
export function goRFC3339(d: Date): string {
  if (d.getTime() === -62135596800000) return '0001-01-01T00:00:00Z';
  const iso = d.toISOString();
  const frac = iso.slice(20, 23).replace(/0+$/, '');
  return `${iso.slice(0, 19)}${frac ? `.${frac}` : ''}Z`;
}

export const STATUS_NAMES = ['UNKNOWN', 'CREATED', 'RUNNING', 'STOPPED', 'PAUSED', 'PAUSING'];

/** Parses `SIGKILL`, `KILL`, `kill` or `9` as ctr's signal.ParseSignal does. */
export function parseSignal(s: string): number {
  if (/^\d+$/.test(s)) return Number(s);
  const name = s.toUpperCase().startsWith('SIG') ? s.toUpperCase() : `SIG${s.toUpperCase()}`;
  const n = (osConstants.signals as Record<string, number>)[name];
  if (n === undefined) throw new UsageError(`unknown signal ${JSON.stringify(s)}`);
  return n;
}

export const STOP_SIGNAL_LABEL = 'io.containerd.image.config.stop-signal';

// ------------------------------------------------------------------ service access

export async function services(ctx: CliContext) {
  const [{ TasksDefinition }, { ContainersDefinition }] = await Promise.all([
    import('../../../api/gen/services/tasks/v1/tasks.js'),
    import('../../../api/gen/services/containers/v1/containers.js'),
  ]);
  return {
    tasks: ctx.connection.service(TasksDefinition),
    containers: ctx.connection.service(ContainersDefinition),
  };
}

export type Services = Awaited<ReturnType<typeof services>>;

/** The container's OCI spec (parsed from its Any). */
export function specOf(container: { spec?: { typeUrl: string; value: Uint8Array } }): Spec {
  if (!container.spec || container.spec.typeUrl !== SPEC_TYPE_URL) throw new UsageError('container has no OCI spec');
  return JSON.parse(Buffer.from(container.spec.value).toString('utf8')) as Spec;
}

export function writePidFile(path: string, pid: number): void {
  const abs = resolve(path);
  const tmp = join(dirname(abs), `.${basename(abs)}`);
  writeFileSync(tmp, String(pid), { flag: 'wx' });
  renameSync(tmp, abs);
}

// ------------------------------------------------------------------ attached processes

export interface IOSetup {
  io?: FifoIO;
  fifos: { stdin: string; stdout: string; stderr: string };
  restoreTty?: () => void;
}

/**
 * Creates FIFOs and local copying for a process, or, as ctr: none with null-io, and with a
 * log URI (file:///path, binary:///logger?args) the URI as stdout and stderr for the shim to
 * serve (a tty takes precedence over a log URI, as in ctr).
 */
export async function setupIO(id: string, opts: { tty: boolean; nullIO?: boolean; logURI?: string; fifoDir?: string; attachStdin?: boolean }): Promise<IOSetup> {
  if (opts.nullIO) {
    if (opts.tty) throw new UsageError('tty and null-io cannot be used together');
    return { fifos: { stdin: '', stdout: '', stderr: '' } };
  }
  if (opts.logURI && !opts.tty) {
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:/.test(opts.logURI)) throw new UsageError(`invalid log uri ${JSON.stringify(opts.logURI)}: expected scheme://path (file:// or binary://)`);
    return { fifos: { stdin: '', stdout: opts.logURI, stderr: opts.logURI } };
  }
  let restoreTty: (() => void) | undefined;
  if (opts.tty && process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    restoreTty = () => process.stdin.isTTY && process.stdin.setRawMode(false);
  }
  const set: FifoSet = await newFifoSet(id, { dir: opts.fifoDir, terminal: opts.tty });
  const io = new FifoIO(set, {
    stdin: opts.attachStdin === false ? undefined : process.stdin,
    stdout: process.stdout,
    stderr: opts.tty ? undefined : process.stderr,
  });
  return { io, fifos: { stdin: set.stdin, stdout: set.stdout, stderr: set.stderr }, restoreTty };
}

/** Forwards the signals a terminal user can send to the process (ctr's ForwardAllSignals). */
export function forwardSignals(kill: (signal: number) => Promise<unknown>): () => void {
  const names: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGCONT'];
  const handlers = names.map((n) => {
    const h = () => void kill(osConstants.signals[n]).catch(() => undefined);
    process.on(n, h);
    return [n, h] as const;
  });
  return () => {
    for (const [n, h] of handlers) process.off(n, h);
  };
}

/** Sends the terminal size now and on every SIGWINCH. */
export function handleResize(resize: (w: number, h: number) => Promise<unknown>): () => void {
  const send = () => {
    if (process.stdout.isTTY) void resize(process.stdout.columns, process.stdout.rows).catch(() => undefined);
  };
  send();
  process.on('SIGWINCH', send);
  return () => process.off('SIGWINCH', send);
}

/**
 * Starts a created task (or exec) with attached I/O and waits for it: Wait is issued before
 * Start (as ctr does), output is drained before returning, and the exit status is returned.
 */
export async function startAndWait(
  svc: Services,
  target: { containerId: string; execId: string },
  io: IOSetup,
  opts: { detach: boolean; tty: boolean; pidFile?: string; pid?: number },
): Promise<{ status?: number }> {
  if (io.io) io.io.onStdinEnd = () => void svc.tasks.closeIO({ ...target, stdin: true }).catch(() => undefined);
  let waiting: Promise<{ exitStatus: number }> | undefined;
  if (!opts.detach) {
    waiting = svc.tasks.wait(target);
    waiting.catch(() => undefined);
  }
  if (opts.pidFile && opts.pid !== undefined) writePidFile(opts.pidFile, opts.pid);
  await svc.tasks.start(target);
  // The shim holds its ends of the FIFOs once the process started (an exec opens them only
  // at start), so from now on EOF means the process is done with its output.
  io.io?.ready();
  if (opts.detach) return {};
  const stop = opts.tty
    ? handleResize((width, height) => svc.tasks.resizePty({ ...target, width, height }))
    : forwardSignals((signal) => svc.tasks.kill({ ...target, signal }));
  try {
    const { exitStatus } = await waiting!;
    await io.io?.wait(5000);
    return { status: exitStatus };
  } finally {
    stop();
  }
}

// ------------------------------------------------------------------ commands

async function loadTaskTarget(svc: Services, id: string) {
  if (!id) throw new UsageError('container id must be provided');
  const { container } = await svc.containers.get({ id });
  return container!;
}

type CgroupsV1 = typeof import('../../../api/gen/cgroups/v1/metrics.js');
type CgroupsV2 = typeof import('../../../api/gen/cgroups/v2/metrics.js');

/**
 * Metrics as JSON the way ctr prints them (Go's encoder over the gogo-generated structs):
 * snake_case field names, zero values and empty lists left out (`omitempty`), present but
 * empty messages kept as `{}`, uint64 counters as plain numbers with every digit.
 */
export function metricsJson(value: unknown): string {
  const marker = '\u0000big:';
  const snake = (key: string) => key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const omit = (v: unknown) => v === undefined || v === null || v === 0 || v === 0n || v === '' || v === false || (Array.isArray(v) && v.length === 0);
  const convert = (v: unknown): unknown => {
    if (typeof v === 'bigint') return `${marker}${v}`;
    if (Array.isArray(v)) return v.map(convert);
    if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, field] of Object.entries(v)) if (!omit(field)) out[snake(k)] = convert(field);
      return out;
    }
    return v;
  };
  return JSON.stringify(convert(value), null, 2).replace(/"\\u0000big:(\d+)"/g, '$1');
}

function printMetrics(metric: { id: string; timestamp?: Date; data?: { typeUrl: string; value: Uint8Array } }, format: string, v1: CgroupsV1, v2: CgroupsV2): void {
  const data = metric.data;
  const kind = data?.typeUrl === 'io.containerd.cgroups.v1.Metrics' ? 'v1' : data?.typeUrl === 'io.containerd.cgroups.v2.Metrics' ? 'v2' : undefined;
  if (!data || !kind) throw new Error('cannot convert metric data to cgroups.Metrics or windows.Statistics');
  if (format !== 'json' && format !== 'table') throw new UsageError('format must be table or json');
  let decoded: ReturnType<CgroupsV1['Metrics']['decode']> | ReturnType<CgroupsV2['Metrics']['decode']>;
  try {
    decoded = kind === 'v1' ? v1.Metrics.decode(data.value) : v2.Metrics.decode(data.value);
  } catch (err) {
    throw new Error(`cannot decode ${data.typeUrl}: ${(err as Error).message}`);
  }
  if (format === 'json') {
    process.stdout.write(`${metricsJson(decoded)}\n`);
    return;
  }
  let t = 'ID\tTIMESTAMP\t\n';
  t += `${metric.id}\t${goTimeString(metric.timestamp ?? new Date(0))}\t\n\n`;
  t += 'METRIC\tVALUE\t\n';
  const row = (name: string, value: bigint | string) => { t += `${name}\t${value}\t\n`; };
  const { pids } = decoded;
  if (kind === 'v1') {
    const m = decoded as ReturnType<CgroupsV1['Metrics']['decode']>;
    if (m.memory) {
      row('memory.usage_in_bytes', m.memory.usage?.usage ?? 0n);
      row('memory.limit_in_bytes', m.memory.usage?.limit ?? 0n);
      row('memory.stat.cache', m.memory.cache);
    }
    if (m.cpu) {
      row('cpuacct.usage', m.cpu.usage?.total ?? 0n);
      row('cpuacct.usage_percpu', `[${(m.cpu.usage?.perCpu ?? []).join(' ')}]`);
    }
    if (pids) {
      row('pids.current', pids.current);
      row('pids.limit', pids.limit);
    }
  } else {
    const m = decoded as ReturnType<CgroupsV2['Metrics']['decode']>;
    if (pids) {
      row('pids.current', pids.current);
      row('pids.limit', pids.limit);
    }
    if (m.cpu) {
      row('cpu.usage_usec', m.cpu.usageUsec);
      row('cpu.user_usec', m.cpu.userUsec);
      row('cpu.system_usec', m.cpu.systemUsec);
      row('cpu.nr_periods', m.cpu.nrPeriods);
      row('cpu.nr_throttled', m.cpu.nrThrottled);
      row('cpu.throttled_usec', m.cpu.throttledUsec);
    }
    if (m.memory) {
      row('memory.usage', m.memory.usage);
      row('memory.usage_limit', m.memory.usageLimit);
      row('memory.swap_usage', m.memory.swapUsage);
      row('memory.swap_limit', m.memory.swapLimit);
    }
  }
  process.stdout.write(goTabwriter(t, 1, 4));
}

export function register(program: Command): void {
  program.enablePositionalOptions();
  const tasks = program.command('tasks').alias('t').alias('task').description('manage tasks').enablePositionalOptions();

  tasks.command('attach')
    .description('attach to the IO of a running container')
    .argument('<container>')
    .action(action(async (ctx, [id]) => {
      const svc = await services(ctx);
      const container = await loadTaskTarget(svc, id!);
      const tty = !!specOf(container).process?.terminal;
      const { process: proc } = await svc.tasks.get({ containerId: id });
      // Attaching reopens the FIFOs the task was created with.
      const set: FifoSet = { dir: '', stdin: proc!.stdin, stdout: proc!.stdout, stderr: proc!.stderr, terminal: tty };
      if (tty && process.stdin.isTTY) process.stdin.setRawMode(true);
      const io = new FifoIO(set, { stdin: process.stdin, stdout: process.stdout, stderr: tty ? undefined : process.stderr });
      io.ready();
      io.onStdinEnd = () => void svc.tasks.closeIO({ containerId: id!, execId: '', stdin: true }).catch(() => undefined);
      const target = { containerId: id!, execId: '' };
      const stop = tty
        ? handleResize((width, height) => svc.tasks.resizePty({ ...target, width, height }))
        : forwardSignals((signal) => svc.tasks.kill({ ...target, signal }));
      try {
        const { exitStatus } = await svc.tasks.wait(target);
        await io.wait(2000);
        await svc.tasks.delete({ containerId: id });
        if (exitStatus !== 0) return exitStatus;
      } finally {
        stop();
        if (tty && process.stdin.isTTY) process.stdin.setRawMode(false);
        io.close(true);
      }
    }));

  tasks.command('checkpoint')
    .description('checkpoint a container')
    .argument('<container>')
    .action(action(async (ctx, [id]) => {
      const svc = await services(ctx);
      await svc.tasks.checkpoint({ containerId: id });
    }));

  tasks.command('delete')
    .aliases(['del', 'remove', 'rm'])
    .description('delete one or more tasks')
    .argument('<containers...>')
    .option('-f, --force', 'force delete task process')
    .option('--exec-id <id>', 'process ID to kill')
    .action(action(async (ctx, ids, opts) => {
      const svc = await services(ctx);
      const deleteOne = async (id: string, execId: string) => {
        const { process: p } = await svc.tasks.get({ containerId: id, execId });
        const status = p!.status;
        if (status !== 3 && status !== 1) {
          if (!opts.force) throw new Error(`task must be stopped before deletion: ${STATUS_NAMES[status]?.toLowerCase()}`);
          await svc.tasks.kill({ containerId: id, execId, signal: osConstants.signals.SIGKILL });
          await svc.tasks.wait({ containerId: id, execId });
        }
        return execId
          ? svc.tasks.deleteProcess({ containerId: id, execId })
          : svc.tasks.delete({ containerId: id });
      };
      if (opts.execId) {
        await loadTaskTarget(svc, ids[0]!);
        const r = await deleteOne(ids[0]!, opts.execId);
        if (r.exitStatus !== 0) return r.exitStatus;
        return;
      }
      let firstErr: unknown;
      for (const id of ids) {
        try {
          await loadTaskTarget(svc, id);
        } catch (err) {
          firstErr ??= err;
          logLine('error', `failed to load task from ${id}`, (err as Error).message);
          continue;
        }
        try {
          const r = await deleteOne(id, '');
          if (r.exitStatus !== 0) logLine('warning', `task ${id} exit with non-zero exit code ${r.exitStatus}`);
        } catch (err) {
          firstErr ??= err;
          logLine('error', `unable to delete ${id}`, (err as Error).message);
        }
      }
      if (firstErr) throw firstErr;
    }));

  tasks.command('exec')
    .description('execute additional processes in an existing container')
    .argument('<container>')
    .argument('[args...]')
    .passThroughOptions()
    .option('--cwd <dir>', 'working directory of the new process')
    .option('-t, --tty', 'allocate a TTY for the container')
    .option('-d, --detach', 'detach from the task after it has started execution')
    .requiredOption('--exec-id <id>', 'exec specific id for the process')
    .option('--fifo-dir <dir>', 'directory used for storing IO FIFOs')
    .option('--user <user>', 'user id or name')
    .action(action(async (ctx, [id, ...args], opts) => {
      const svc = await services(ctx);
      const container = await loadTaskTarget(svc, id!);
      const spec = specOf(container);
      if (opts.user) {
        const { withUser } = await import('../../../client/oci/spec.js');
        await withUser(spec, opts.user);
      }
      const pspec = { ...spec.process!, terminal: !!opts.tty, args };
      if (opts.cwd) pspec.cwd = opts.cwd;
      const tty = !!opts.tty;
      const io = await setupIO(`${id}-${opts.execId}`.slice(0, 200), { tty, fifoDir: opts.fifoDir });
      try {
        await svc.tasks.exec({
          containerId: id,
          execId: opts.execId,
          ...io.fifos,
          terminal: tty,
          spec: { typeUrl: PROCESS_TYPE_URL, value: Buffer.from(JSON.stringify(pspec)) },
        });
        const target = { containerId: id!, execId: opts.execId as string };
        const r = await startAndWait(svc, target, io, { detach: !!opts.detach, tty });
        if (opts.detach) return;
        await svc.tasks.deleteProcess(target).catch(() => undefined);
        if (r.status) return r.status;
      } finally {
        io.restoreTty?.();
        io.io?.close(!!opts.detach);
      }
    }));

  tasks.command('list')
    .alias('ls')
    .description('list tasks')
    .option('-q, --quiet', 'print only the task id')
    .action(action(async (ctx, _args, opts) => {
      const svc = await services(ctx);
      const { tasks: list } = await svc.tasks.list({});
      if (opts.quiet) {
        process.stdout.write(list.map((t) => `${t.id}\n`).join(''));
        return;
      }
      let text = 'TASK\tPID\tSTATUS\t\n';
      for (const t of list) text += `${t.id}\t${t.pid}\t${STATUS_NAMES[t.status] ?? 'UNKNOWN'}\n`;
      process.stdout.write(goTabwriter(text, 4, 4));
    }));

  tasks.command('kill')
    .description('signal a container (default: SIGTERM)')
    .argument('<container>')
    .option('-s, --signal <signal>', 'signal to send to the container', '')
    .option('--exec-id <id>', 'process ID to kill')
    .option('-a, --all', 'send signal to all processes inside the container')
    .action(action(async (ctx, [id], opts) => {
      if (opts.all && opts.execId) throw new UsageError('specify an exec-id or all; not both');
      const svc = await services(ctx);
      const container = await loadTaskTarget(svc, id!);
      const sig = opts.signal ? parseSignal(opts.signal) : parseSignal(container.labels[STOP_SIGNAL_LABEL] || 'SIGTERM');
      await svc.tasks.kill({ containerId: id, execId: opts.execId ?? '', signal: sig, all: !!opts.all });
    }));

  tasks.command('metrics')
    .alias('metric')
    .description('get a single data point of metrics for a task with the built-in Linux runtime')
    .argument('<container>')
    .option('--format <format>', '"table" or "json"', 'table')
    .action(action(async (ctx, [id], opts) => {
      const svc = await services(ctx);
      await loadTaskTarget(svc, id!);
      const { metrics } = await svc.tasks.metrics({ filters: [`id==${id}`] });
      if (!metrics.length) throw new RemoteError(Code.NOT_FOUND, `no metrics received for ${id}`);
      const [v1, v2] = await Promise.all([import('../../../api/gen/cgroups/v1/metrics.js'), import('../../../api/gen/cgroups/v2/metrics.js')]);
      printMetrics(metrics[0]!, opts.format, v1, v2);
    }));

  tasks.command('pause')
    .description('pause an existing container')
    .argument('<container>')
    .action(action(async (ctx, [id]) => {
      const svc = await services(ctx);
      await loadTaskTarget(svc, id!);
      await svc.tasks.pause({ containerId: id });
    }));

  tasks.command('ps')
    .description('list processes for container')
    .argument('<container>')
    .action(action(async (ctx, [id]) => {
      const svc = await services(ctx);
      await loadTaskTarget(svc, id!);
      const { processes } = await svc.tasks.listPids({ containerId: id });
      const { ProcessDetails } = await import('../../../api/gen/runc/options/oci.js');
      let text = 'PID\tINFO\n';
      for (const p of processes) {
        let info = '-';
        if (p.info?.typeUrl === 'containerd.runc.v1.ProcessDetails') {
          info = `&ProcessDetails{ExecID:${ProcessDetails.decode(p.info.value).execId},XXX_unrecognized:[],}`;
        } else if (p.info) {
          info = p.info.typeUrl;
        }
        text += `${p.pid}\t${info}\n`;
      }
      process.stdout.write(goTabwriter(text, 1, 4));
    }));

  tasks.command('resume')
    .description('resume a paused container')
    .argument('<container>')
    .action(action(async (ctx, [id]) => {
      const svc = await services(ctx);
      await loadTaskTarget(svc, id!);
      await svc.tasks.resume({ containerId: id });
    }));

  tasks.command('start')
    .description('start a container that has been created')
    .argument('<container>')
    .option('--null-io', 'send all IO to /dev/null')
    .option('--log-uri <uri>', 'log uri')
    .option('--fifo-dir <dir>', 'directory used for storing IO FIFOs')
    .option('--pid-file <file>', "file path to write the task's pid")
    .option('-d, --detach', 'detach from the task after it has started execution')
    .option('--no-pivot', 'disable use of pivot-root (linux only)')
    .action(action(async (ctx, [id], opts) => {
      const svc = await services(ctx);
      const container = await loadTaskTarget(svc, id!);
      const tty = !!specOf(container).process?.terminal;
      const code = await createAndRunTask(ctx, svc, container, {
        tty, detach: !!opts.detach, nullIO: !!opts.nullIo, logURI: opts.logUri, fifoDir: opts.fifoDir, pidFile: opts.pidFile, noPivot: opts.pivot === false,
      });
      if (code) return code;
    }));
}

/** Options of a task created by `run` or `tasks start`. */
export interface NewTaskOptions {
  tty: boolean;
  detach: boolean;
  nullIO?: boolean;
  /** stdout and stderr go to this URI (served by the shim) instead of this terminal. */
  logURI?: string;
  fifoDir?: string;
  pidFile?: string;
  noPivot?: boolean;
  /** Host IDs that own the stdio pipes (a task in a user namespace). */
  ioUid?: number;
  ioGid?: number;
  rootfs?: { type: string; source: string; options: string[] }[];
}

/**
 * Tasks.Create with fresh FIFOs, then Start; attached runs wait for the exit, drain output,
 * delete the task and resolve the exit status.
 */
export async function createAndRunTask(
  _ctx: CliContext,
  svc: Services,
  container: { id: string; runtime?: { name: string } },
  opts: NewTaskOptions,
): Promise<number> {
  const io = await setupIO(container.id, { tty: opts.tty, nullIO: opts.nullIO, logURI: opts.logURI, fifoDir: opts.fifoDir });
  try {
    let options: { typeUrl: string; value: Buffer } | undefined;
    if (opts.noPivot || opts.ioUid || opts.ioGid) {
      const { Options } = await import('../../../api/gen/runc/options/oci.js');
      const runc = Options.fromPartial({ noPivotRoot: !!opts.noPivot, ioUid: opts.ioUid ?? 0, ioGid: opts.ioGid ?? 0 });
      options = { typeUrl: 'containerd.runc.v1.Options', value: Buffer.from(Options.encode(runc).finish()) };
    }
    const created = await svc.tasks.create({
      containerId: container.id,
      rootfs: opts.rootfs ?? [],
      ...io.fifos,
      terminal: opts.tty,
      options,
    });
    const target = { containerId: container.id, execId: '' };
    let result: { status?: number };
    try {
      result = await startAndWait(svc, target, io, { detach: opts.detach, tty: opts.tty, pidFile: opts.pidFile, pid: created.pid });
    } catch (err) {
      if (!opts.detach) await svc.tasks.delete({ containerId: container.id }).catch(() => undefined);
      throw err;
    }
    if (opts.detach) return 0;
    try {
      await svc.tasks.delete({ containerId: container.id });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return result.status ?? 0;
  } finally {
    io.restoreTty?.();
    // A detached task keeps its FIFO files for `tasks attach`.
    io.io?.close(opts.detach);
  }
}

