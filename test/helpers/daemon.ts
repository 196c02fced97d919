/**
 * Test harness for the real daemon: runs the built berthd (dist/, via bin/berthd.js) on a
 * fresh temp root, state and socket, waits until it serves, and can kill -9 and restart it
 * on the same directories. Tests that use it exercise the real wire, files and processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Connection } from '../../client/connection.js';
import { LeasesDefinition } from '../../api/gen/services/leases/v1/leases.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BERTHD = join(REPO, 'bin', 'berthd.js');
export const BERTH = join(REPO, 'bin', 'berth.js');

export interface TestDaemon {
  dir: string;
  root: string;
  state: string;
  address: string;
  configPath: string;
  process: ChildProcess;
  /** Everything the daemon wrote to stderr so far. */
  log(): string;
  /** A client connection in `namespace` (closed by stop()). */
  connect(namespace?: string): Connection;
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>;
  /** SIGKILL (a crash) and wait for exit. */
  kill9(): Promise<void>;
  /** Starts again on the same directories and config. */
  restart(): Promise<void>;
  /** Stops and removes the directories. */
  dispose(): Promise<void>;
}

export interface DaemonOptions {
  /** Extra TOML appended to the generated config. */
  extraConfig?: string;
  /**
   * Keep containerd's garbage-collection schedule (periodic runs every ~50 x the last run's
   * time) instead of QUIET_GC, the default for tests: only tests of the scheduler want it.
   */
  periodicGc?: boolean;
  /** Log level (default info). */
  logLevel?: string;
  env?: NodeJS.ProcessEnv;
  /** Directory the daemon's temp directory is made in (default: the OS temp dir), e.g. a small tmpfs. */
  parentDir?: string;
  /** Extra TOML lines for the [grpc] table (uid, gid, message sizes). */
  grpcConfig?: string;
}

/**
 * Scheduler settings that keep periodic garbage collection out of a test (the default of
 * startDaemon): blobs and snapshots a ctr command leaves unreferenced (its lease ends with the
 * command) would otherwise go at the next collection, a few milliseconds later, as they would
 * in containerd. Synchronous deletes still collect; after one, the next periodic run is many
 * seconds away.
 */
export const QUIET_GC = '[plugins."io.containerd.gc.v1.scheduler"]\n  startup_delay = "1h"\n  pause_threshold = 0.00001';

/**
 * Runs one garbage collection now and waits for it (a synchronous lease delete does that):
 * under QUIET_GC the only way anything unreferenced goes, and under containerd's schedule a way
 * to have no collection pending while a test looks at what it just made.
 */
export async function collectGarbage(conn: Connection): Promise<void> {
  const leases = conn.service(LeasesDefinition);
  const { lease } = await leases.create({ id: '' });
  await leases.delete({ id: lease!.id, sync: true });
}

/** Boots berthd on temp directories and resolves once its socket answers. */
export async function startDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  if (!existsSync(join(REPO, 'dist', 'berthd.js'))) throw new Error('dist/berthd.js missing: run `npm run build` first');
  const dir = mkdtempSync(join(opts.parentDir ?? tmpdir(), 'berth-test-'));
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const address = join(dir, 'berth.sock');
  const configPath = join(dir, 'config.toml');
  writeFileSync(configPath, [
    'version = 2',
    `root = "${root}"`,
    `state = "${state}"`,
    '[grpc]',
    `  address = "${address}"`,
    opts.grpcConfig ?? '',
    '[debug]',
    `  level = "${opts.logLevel ?? 'info'}"`,
    opts.periodicGc || opts.extraConfig?.includes('gc.v1.scheduler') ? '' : QUIET_GC,
    opts.extraConfig ?? '',
    // Keep installs inside the test directory unless the test configures opt itself.
    opts.extraConfig?.includes('internal.v1.opt') ? '' : `[plugins."io.containerd.internal.v1.opt"]\n  path = "${join(dir, 'opt')}"`,
  ].join('\n'));
  let logText = '';
  const connections: Connection[] = [];
  const d: TestDaemon = {
    dir, root, state, address, configPath,
    process: undefined as unknown as ChildProcess,
    log: () => logText,
    connect: (namespace = 'default') => {
      const c = new Connection({ address, namespace, connectTimeoutMs: 5000 });
      connections.push(c);
      return c;
    },
    stop: async () => {
      for (const c of connections.splice(0)) c.close();
      await terminate(d.process, 'SIGTERM');
    },
    kill9: async () => {
      for (const c of connections.splice(0)) c.close();
      await terminate(d.process, 'SIGKILL');
    },
    restart: async () => {
      logText += '\n--- restart ---\n';
      d.process = await launch();
    },
    dispose: async () => {
      await d.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  const launch = async () => {
    const child = spawn(process.execPath, [BERTHD, '--config', configPath], {
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr!.on('data', (b) => (logText += b.toString()));
    const from = logText.length;
    await waitForSocket(address, child, () => logText.slice(from));
    return child;
  };
  try {
    d.process = await launch();
  } catch (err) {
    // A daemon that was meant to fail (or failed) at boot leaves no directory behind.
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return d;
}

async function waitForSocket(address: string, child: ChildProcess, log: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`berthd exited with ${child.exitCode}:\n${log()}`);
    if (/successfully booted/.test(log()) && existsSync(address)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  throw new Error(`berthd did not boot within ${timeoutMs} ms:\n${log()}`);
}

async function terminate(child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** Runs the built berth CLI against a daemon; resolves its exit code and output. */
export async function berth(address: string, args: string[], opts: { namespace?: string; input?: Buffer | string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCommand(process.execPath, [BERTH, '-a', address, '-n', opts.namespace ?? 'default', ...args], opts);
}

/** Runs the real ctr client (Debian's containerd package) against a daemon. */
export async function ctr(address: string, args: string[], opts: { namespace?: string; input?: Buffer | string; timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCommand('ctr', ['-a', address, '-n', opts.namespace ?? 'default', ...args], opts);
}

/**
 * Runs a command to completion. One that outlives `timeoutMs` (default 3 minutes) gets SIGQUIT
 * (a Go client such as ctr prints its goroutines), then SIGKILL, and reports code -1: a hung
 * client fails its test with a reason instead of stalling the suite.
 */
export function runCommand(
  cmd: string,
  args: string[],
  opts: { input?: Buffer | string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...opts.env }, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timeoutMs = opts.timeoutMs ?? 180_000;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGQUIT');
      setTimeout(() => child.kill('SIGKILL'), 2000).unref();
    }, timeoutMs);
    child.stdout.on('data', (b) => (stdout += b));
    child.stderr.on('data', (b) => (stderr += b));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (timedOut) stderr = `${cmd} timed out after ${timeoutMs} ms\n${stderr}`;
      resolvePromise({ code: timedOut ? -1 : code ?? -1, stdout, stderr });
    });
    // A child that exits before reading its input must not fail the caller with EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

export const readText = (p: string) => readFileSync(p, 'utf8');
