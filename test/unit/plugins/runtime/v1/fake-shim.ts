/**
 * A stand-in for containerd-shim (runtime v1) used by the runtime's unit tests: it serves
 * containerd.runtime.linux.shim.v1.Shim on the listener it inherits as fd 3, keeps process
 * states in memory (no runc), and records what it was started with and asked for in files in
 * its working directory (the bundle): fake-shim.json (argv, cwd, env, pid) and calls.jsonl.
 *
 * Behaviour switches come from the spec in config.json: process.args[0] === 'fail-create'
 * makes Create fail.
 */
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TtrpcServer } from '../../../../../api/ttrpc/index.js';
import { ShimService } from '../../../../../api/gen/runtime/v1/shim/shim.js';
import { FailedPreconditionError, NotFoundError } from '../../../../../core/errdefs/errdefs.js';

interface Proc {
  pid: number;
  status: number;
  exitStatus: number;
  exitedAt?: Date;
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  exited: Promise<void>;
  markExited: () => void;
}

const bundle = process.cwd();
writeFileSync(join(bundle, 'fake-shim.json'), JSON.stringify({
  argv: process.argv.slice(2),
  cwd: bundle,
  gomaxprocs: process.env.GOMAXPROCS ?? null,
  pid: process.pid,
}));
process.stdout.write('fake shim stdout\n');
process.stderr.write('fake shim stderr\n');

const record = (method: string, request: unknown) => appendFileSync(join(bundle, 'calls.jsonl'), `${JSON.stringify({ method, request })}\n`);

const procs = new Map<string, Proc>();
let initId = '';
let nextPid = 40_000 + (process.pid % 10_000);

function newProc(io: { stdin: string; stdout: string; stderr: string; terminal: boolean }): Proc {
  let markExited!: () => void;
  const exited = new Promise<void>((r) => (markExited = r));
  return { pid: nextPid++, status: 1, exitStatus: 0, ...io, exited, markExited };
}

function proc(id: string): Proc {
  const p = procs.get(id || initId);
  if (!p) throw new NotFoundError(`process ${id} does not exist`);
  return p;
}

function exit(p: Proc, status: number): void {
  if (p.status === 3) return;
  p.status = 3;
  p.exitStatus = status;
  p.exitedAt = new Date();
  p.markExited();
}

const server = new TtrpcServer();
server.register(ShimService, {
  async state(req) {
    const p = proc(req.id);
    return {
      id: req.id, bundle, pid: p.pid, status: p.status, stdin: p.stdin, stdout: p.stdout, stderr: p.stderr,
      terminal: p.terminal, exitStatus: p.exitStatus, exitedAt: p.exitedAt,
    };
  },
  async create(req) {
    record('create', { ...req, options: req.options ? { typeUrl: req.options.typeUrl } : undefined });
    const spec = JSON.parse(readFileSync(join(req.bundle, 'config.json'), 'utf8')) as { process?: { args?: string[] } };
    if (spec.process?.args?.[0] === 'fail-create') throw new Error('fake: runc create failed');
    initId = req.id;
    const p = newProc(req);
    procs.set(req.id, p);
    writeFileSync(join(req.bundle, 'init.pid'), String(p.pid));
    return { pid: p.pid };
  },
  async start(req) {
    record('start', req);
    const p = proc(req.id);
    p.status = 2;
    return { id: req.id, pid: p.pid };
  },
  async delete() {
    record('delete', {});
    const p = proc(initId);
    if (p.status === 2) throw new FailedPreconditionError('cannot delete a running container');
    procs.delete(initId);
    return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt };
  },
  async deleteProcess(req) {
    record('deleteProcess', req);
    const p = proc(req.id);
    procs.delete(req.id);
    return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt };
  },
  async listPids(req) {
    record('listPids', req);
    return { processes: [...procs.values()].filter((p) => p.status === 2).map((p) => ({ pid: p.pid, info: undefined })) };
  },
  async pause() {
    record('pause', {});
    proc(initId).status = 4;
    return {};
  },
  async resume() {
    record('resume', {});
    proc(initId).status = 2;
    return {};
  },
  async checkpoint() {
    throw new Error('fake: no checkpoint');
  },
  async kill(req) {
    record('kill', req);
    const p = proc(req.id);
    exit(p, 128 + req.signal);
    if (p === procs.get(initId) && req.all) for (const other of procs.values()) exit(other, 128 + req.signal);
    return {};
  },
  async exec(req) {
    record('exec', { ...req, spec: req.spec ? { typeUrl: req.spec.typeUrl } : undefined });
    procs.set(req.id, newProc(req));
    return {};
  },
  async resizePty(req) {
    record('resizePty', req);
    proc(req.id);
    return {};
  },
  async closeIo(req) {
    record('closeIo', req);
    return {};
  },
  async shimInfo() {
    return { shimPid: process.pid };
  },
  async update(req) {
    record('update', { resources: req.resources ? { typeUrl: req.resources.typeUrl } : undefined });
    return {};
  },
  async wait(req) {
    const p = proc(req.id);
    await p.exited;
    return { exitStatus: p.exitStatus, exitedAt: p.exitedAt };
  },
});
await server.listen({ fd: 3 });
