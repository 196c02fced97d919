/**
 * The runc command line, as containerd's go-runc drives it: global `--root <root>/<ns>
 * --log <bundle>/log.json --log-format json [--systemd-cgroup]`, then one subcommand.
 *
 * Processes are started with node:child_process rather than execa: a shim stays resident for
 * the life of its container, and execa's module graph costs an idle shim ~13 MB of RSS for
 * what is here a spawn plus a promise. libuv reaps every runc it spawns itself; the shim's
 * reaper (reaper.ts) never waits for these pids.
 *
 * Subcommands that hand the container its stdio (create, exec) get explicit fds and capture
 * nothing; the others capture stdout/stderr for parsing and error messages.
 */
import { spawn, type StdioOptions } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const DEFAULT_RUNC_ROOT = '/run/containerd/runc';
const LOG_FILE = 'log.json';

export interface RuncConfig {
  /** Binary name or path; empty means "runc". */
  command?: string;
  /** Root for runc's state; the namespace is appended. Empty means /run/containerd/runc. */
  root?: string;
  namespace: string;
  /** Bundle directory, where log.json goes. */
  bundle: string;
  systemdCgroup?: boolean;
  criuPath?: string;
}

/** What a container's process sees as fd 0, 1 and 2: a descriptor, or /dev/null. */
export type ChildStdio = [number | 'ignore', number | 'ignore', number | 'ignore'];

export interface CreateOptions {
  pidFile: string;
  consoleSocket?: string;
  noPivot?: boolean;
  noNewKeyring?: boolean;
  stdio?: ChildStdio;
}

export interface ExecOptions {
  pidFile: string;
  processFile: string;
  consoleSocket?: string;
  stdio?: ChildStdio;
}

export interface RuncState {
  id: string;
  pid: number;
  status: string;
  bundle?: string;
}

/** A failed runc invocation; `output` is whatever it printed (when captured). */
export class RuncError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly output: string,
  ) {
    super(message);
    this.name = 'RuncError';
  }
}

interface RunResult {
  stdout: string;
  stderr: string;
}

export class Runc {
  readonly command: string;
  readonly root: string;
  readonly logPath: string;

  constructor(private readonly config: RuncConfig) {
    this.command = config.command || 'runc';
    this.root = join(config.root || DEFAULT_RUNC_ROOT, config.namespace);
    this.logPath = join(config.bundle, LOG_FILE);
  }

  globalArgs(): string[] {
    const args = ['--root', this.root, '--log', this.logPath, '--log-format', 'json'];
    if (this.config.criuPath) args.push('--criu', this.config.criuPath);
    if (this.config.systemdCgroup) args.push('--systemd-cgroup');
    return args;
  }

  async create(id: string, bundle: string, opts: CreateOptions): Promise<void> {
    const args = ['create', '--bundle', bundle, '--pid-file', opts.pidFile];
    if (opts.consoleSocket) args.push('--console-socket', opts.consoleSocket);
    if (opts.noPivot) args.push('--no-pivot');
    if (opts.noNewKeyring) args.push('--no-new-keyring');
    args.push(id);
    await this.runWithStdio(args, opts.stdio);
  }

  async start(id: string): Promise<void> {
    await this.run(['start', id]);
  }

  async exec(id: string, opts: ExecOptions): Promise<void> {
    const args = ['exec', '--detach', '--pid-file', opts.pidFile, '--process', opts.processFile];
    if (opts.consoleSocket) args.push('--console-socket', opts.consoleSocket);
    args.push(id);
    await this.runWithStdio(args, opts.stdio);
  }

  async kill(id: string, signal: number, all = false): Promise<void> {
    await this.run(['kill', ...(all ? ['--all'] : []), id, String(signal)]);
  }

  async delete(id: string, force = false): Promise<void> {
    await this.run(['delete', ...(force ? ['--force'] : []), id]);
  }

  async pause(id: string): Promise<void> {
    await this.run(['pause', id]);
  }

  async resume(id: string): Promise<void> {
    await this.run(['resume', id]);
  }

  /** `runc update --resources -` with the OCI LinuxResources JSON on stdin. */
  async update(id: string, resources: Uint8Array): Promise<void> {
    await this.run(['update', '--resources', '-', id], resources);
  }

  async ps(id: string): Promise<number[]> {
    const { stdout } = await this.run(['ps', '--format', 'json', id]);
    const pids = JSON.parse(stdout || '[]') as unknown;
    return Array.isArray(pids) ? pids.filter((p): p is number => typeof p === 'number') : [];
  }

  async state(id: string): Promise<RuncState> {
    const { stdout } = await this.run(['state', id]);
    return JSON.parse(stdout) as RuncState;
  }

  /**
   * The message of the last error runc logged in log.json (what containerd puts into
   * "OCI runtime create failed: …"), or '' when there is none.
   */
  async lastError(): Promise<string> {
    let text: string;
    try {
      text = await readFile(this.logPath, 'utf8');
    } catch {
      return '';
    }
    let message = '';
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const entry = JSON.parse(line) as { level?: string; msg?: string };
        if (entry.level === 'error' && entry.msg) message = entry.msg;
      } catch {
        // a torn line: skip
      }
    }
    return message;
  }

  private run(args: string[], input?: Uint8Array): Promise<RunResult> {
    return this.spawn(args, ['pipe', 'pipe', 'pipe'], input);
  }

  private async runWithStdio(args: string[], stdio: ChildStdio = ['ignore', 'ignore', 'ignore']): Promise<void> {
    await this.spawn(args, stdio);
  }

  private spawn(args: string[], stdio: StdioOptions, input?: Uint8Array): Promise<RunResult> {
    const argv = [...this.globalArgs(), ...args];
    return new Promise<RunResult>((resolve, reject) => {
      const child = spawn(this.command, argv, { stdio });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout?.on('data', (chunk: Buffer) => out.push(chunk));
      child.stderr?.on('data', (chunk: Buffer) => err.push(chunk));
      if (child.stdin) {
        child.stdin.on('error', () => { /* runc exited before reading its input */ });
        child.stdin.end(input ?? Buffer.alloc(0));
      }
      child.once('error', (e) => reject(new RuncError(`${this.command} ${args[0]}: ${e.message}`, null, '')));
      // 'close' waits for the captured pipes to drain; with passed-through fds there are none.
      child.once('close', (code, signal) => {
        const stdout = Buffer.concat(out).toString();
        const stderr = Buffer.concat(err).toString();
        if (code === 0) {
          resolve({ stdout, stderr });
          return;
        }
        const status = signal ? `signal: ${signal}` : `exit status ${code}`;
        const output = (stdout + stderr).trim();
        reject(new RuncError(output ? `${status}: ${output}` : status, code, output));
      });
    });
  }
}
