/**
 * Spare shims: one shim per namespace and runtime, started ahead of the task that will use it.
 *
 * Why: starting a shim (`<shim> start`, which forks the shim daemon and prints its address,
 * then a ttrpc dial) is 7–12 ms of every `ctr run` with the Go runc shim and ~150 ms with
 * berth's own Node shim, all of it on the request's path. A spare is started the same way,
 * with the same arguments and environment, in a directory of its own
 * (`<state>/<ns>/.spare-<hex>`: dot names are never task bundles). Tasks.Create takes it by
 * renaming that directory to the task's bundle path: the shim's working directory moves with
 * it, so the shim then sits in the task's bundle exactly as if it had been started there. Only
 * its `-id` (and so its socket's name) differs; the runc shim uses neither after `start`.
 * The manager asks for the next spare once a task that could use one has started.
 *
 * A spare is only used for a task whose runtime options and spec would have made no difference
 * to `start` (optionsAllowSpare, specAllowsSpare). One unused for the idle time is shut down,
 * as are all at daemon close; one a killed daemon left behind goes at the next boot.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TtrpcClient } from '../../../api/ttrpc/index.js';
import { messageOf } from '../../../core/errdefs/errdefs.js';
import type { AnyMessage } from '../../../core/events/exchange.js';
import type { Logger } from '../../../core/log/logger.js';
import { deleteBundle, type Bundle } from './bundle.js';
import { ShimLog, startShim, type ShimBinaryConfig } from './binary.js';
import { ShimConnection, ShimTask } from './shim.js';

export const SPARE_PREFIX = '.spare-';
/** The shim id a spare is started with, from its directory's name. */
const spareId = (name: string) => `berth-spare-${name.slice(SPARE_PREFIX.length)}`;
/** Longest a task waits for a spare that is still starting (a Node shim takes ~200 ms). */
const SPARE_WAIT_MS = 2_000;

/** Spec annotations with which `start` puts a task into an existing shim (runc v2's group labels). */
const GROUP_ANNOTATIONS = ['io.kubernetes.cri.sandbox-id', 'io.containerd.runc.v2.group'];

export interface Spare {
  /** The spare's own directory and shim id (not a task's). */
  bundle: Bundle;
  client: TtrpcClient;
  log: ShimLog | undefined;
  /** Set once a task took it (the manager then owns the connection) or it is being retired. */
  taken: boolean;
  idleTimer?: NodeJS.Timeout;
}

/**
 * Whether `start` would do nothing with these runtime options (they reach it on stdin): none,
 * or runc's options without a shim cgroup, which is all runc's `start` reads of them (ctr
 * sends empty runc options with every `run`). Other shims' options may mean anything to them.
 */
export async function optionsAllowSpare(options: AnyMessage | undefined): Promise<boolean> {
  if (!options) return true;
  if (options.typeUrl.replace(/^.*\//, '') !== 'containerd.runc.v1.Options') return false;
  const { Options } = await import('../../../api/gen/runc/options/oci.js');
  try {
    return Options.decode(options.value).shimCgroup === '';
  } catch {
    return false;
  }
}

/** Whether a spec leaves the shim to itself (no group annotation `start` would act on). */
export function specAllowsSpare(spec: Uint8Array): boolean {
  let parsed: { annotations?: Record<string, unknown> };
  try {
    parsed = JSON.parse(Buffer.from(spec).toString('utf8'));
  } catch {
    return false;
  }
  const annotations = parsed?.annotations ?? {};
  return !GROUP_ANNOTATIONS.some((a) => typeof annotations[a] === 'string' && annotations[a] !== '');
}

export class SpareShims {
  private readonly ready = new Map<string, Spare>();
  private readonly starting = new Map<string, Promise<void>>();
  /** Keys of starting spares a task already waits for. */
  private readonly claimed = new Set<string>();
  private closed = false;

  constructor(
    private readonly state: string,
    private readonly idleMs: number,
    private readonly dialTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * Takes the spare for `namespace` and this shim binary: the ready one, or the one starting
   * (it is further along than a new start would be). Undefined when there is none.
   */
  async take(namespace: string, binary: ShimBinaryConfig): Promise<Spare | undefined> {
    const key = keyOf(namespace, binary.runtime);
    const starting = this.ready.has(key) || this.claimed.has(key) ? undefined : this.starting.get(key);
    if (starting) {
      // One task waits for it (others start their own at once); and not for a start that hangs.
      this.claimed.add(key);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([starting, new Promise<void>((resolve) => (timer = setTimeout(resolve, SPARE_WAIT_MS)))]);
      clearTimeout(timer);
      this.claimed.delete(key);
    }
    const spare = this.ready.get(key);
    if (!spare) return undefined;
    this.ready.delete(key);
    clearTimeout(spare.idleTimer);
    spare.taken = true;
    return spare;
  }

  /** Starts a spare for `namespace` and this binary unless one is ready or on its way. */
  refill(namespace: string, binary: ShimBinaryConfig): void {
    const key = keyOf(namespace, binary.runtime);
    if (this.closed || this.ready.has(key) || this.starting.has(key)) return;
    const started = this.start(namespace, binary)
      .then((spare) => {
        if (this.closed) return this.discard(spare);
        this.ready.set(key, spare);
        spare.idleTimer = setTimeout(() => {
          if (this.ready.get(key) !== spare) return;
          this.ready.delete(key);
          void this.discard(spare);
        }, this.idleMs).unref();
      })
      .catch((err) => this.log.warn('failed to start a spare shim', { namespace, runtime: binary.runtime, error: messageOf(err) }))
      .finally(() => this.starting.delete(key));
    this.starting.set(key, started);
  }

  private async start(namespace: string, binary: ShimBinaryConfig): Promise<Spare> {
    const hex = randomBytes(6).toString('hex');
    const name = `${SPARE_PREFIX}${hex}`;
    const bundle: Bundle = { id: spareId(name), namespace, path: join(this.state, namespace, name) };
    mkdirSync(join(this.state, namespace), { recursive: true, mode: 0o711 });
    mkdirSync(bundle.path, { mode: 0o700 });
    let log: ShimLog | undefined;
    try {
      mkdirSync(join(bundle.path, 'rootfs'), { mode: 0o711 });
      // `start` reads the spec for group annotations; a spare belongs to no group.
      writeFileSync(join(bundle.path, 'config.json'), '{}', { mode: 0o666 });
      log = await ShimLog.open(bundle);
      const address = await startShim(binary, bundle, undefined);
      const client = await TtrpcClient.connect(address, { timeoutMs: this.dialTimeoutMs });
      const spare: Spare = { bundle, client, log, taken: false };
      client.onClose(() => {
        if (spare.taken) return;
        // Gone before any task took it (it died, or was retired): nothing of it may stay.
        const key = keyOf(namespace, binary.runtime);
        if (this.ready.get(key) === spare) this.ready.delete(key);
        clearTimeout(spare.idleTimer);
        spare.log?.close();
        void this.removeDirectory(bundle);
      });
      return spare;
    } catch (err) {
      log?.close();
      await deleteBundle(bundle).catch(() => undefined);
      throw err;
    }
  }

  /** Retires a spare no task will use (idle, unusable, or the daemon is closing) and removes its directory. */
  async discard(spare: Spare): Promise<void> {
    spare.taken = true; // its close is handled here, not by the connection's handler
    await this.retire(spare);
    spare.log?.close();
    await this.removeDirectory(spare.bundle);
  }

  /**
   * Retires a spare a previous daemon left behind (killed before its close): its shim is
   * asked to exit if it answers; then whatever still runs in its directory is killed. That
   * covers a shim that did not answer and a `start` the killed daemon left running (it may
   * not have written the address yet, and would otherwise start a shim nobody knows of once
   * the directory is gone). A spare serves no task, so nothing of a user's is lost.
   */
  async retireLeftover(namespace: string, name: string): Promise<void> {
    const bundle: Bundle = { id: spareId(name), namespace, path: join(this.state, namespace, name) };
    let address: string | undefined;
    try {
      address = readFileSync(join(bundle.path, 'address'), 'utf8').trim();
      const client = await TtrpcClient.connect(address, { timeoutMs: 1_000 });
      await this.retire({ bundle, client, log: undefined, taken: true });
    } catch (err) {
      this.log.info('leftover spare shim did not answer; killing what runs in its directory', { path: bundle.path, error: messageOf(err) });
    }
    // Until none is left: a `start` killed mid-way may have forked its shim an instant before.
    for (let round = 0; round < 20; round++) {
      const pids = spareProcesses(bundle.path, spareId(name));
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch { /* exited meanwhile */ }
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // A killed shim leaves its socket behind.
    if (address?.startsWith('unix://')) rmSync(address.slice('unix://'.length), { force: true });
    await this.removeDirectory(bundle);
  }

  private removeDirectory(bundle: Bundle): Promise<void> {
    return deleteBundle(bundle).catch((err) => this.log.warn('failed to remove a spare shim directory', { path: bundle.path, error: messageOf(err) }));
  }

  /** Asks a spare's shim to exit (it serves no task) and closes the connection. */
  private async retire(spare: Spare): Promise<void> {
    const task = new ShimTask(new ShimConnection(spare.bundle, spare.client, spare.log));
    await task.shutdown({ timeoutMs: 5_000 }).catch(() => undefined);
    spare.client.close();
  }

  /** Retires every spare, including those still starting. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.starting.values()]);
    const spares = [...this.ready.values()];
    this.ready.clear();
    for (const s of spares) clearTimeout(s.idleTimer);
    await Promise.allSettled(spares.map((s) => this.discard(s)));
  }
}

const keyOf = (namespace: string, runtime: string) => `${namespace}\u0000${runtime}`;

/**
 * Pids of a spare's processes (its shim, its `start`): working in the spare's directory, with
 * the spare's id on their command line (a shell someone left in that directory is not one).
 */
function spareProcesses(dir: string, id: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) !== dir) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(id)) out.push(Number(entry));
    } catch { /* gone, or a kernel thread */ }
  }
  return out;
}
