/**
 * A worker thread shared by short-lived jobs: started by the first job, ended once no job has
 * used it for a while, so an idle daemon does not keep a second V8 heap resident.
 *
 * The program is a function serialised with Function.prototype.toString and evaluated in the
 * worker, so it may only use what it requires itself (the same source then works bundled and
 * under the test runner's TypeScript loader). Nor may it declare named inner functions
 * (`function f`, `const f = () => …`): the bundler keeps their names through a helper of its
 * own output that the worker does not have. Methods of an object literal are fine.
 * Jobs talk to it over MessageChannels of their own; if the worker dies, every job using it
 * is failed and the next job starts a new one.
 */
import { Worker } from 'node:worker_threads';
import { trimMalloc } from './malloc.js';
import { reapplyRuntimeV8Flags } from './v8flags.js';

export interface WorkerJob {
  /** The worker died under the job. */
  fail(err: Error): void;
}

interface Running {
  worker: Worker;
  jobs: Set<WorkerJob>;
  idle?: NodeJS.Timeout;
}

export class IdleExitWorker {
  private running: Running | undefined;

  /**
   * @param name what the worker does, for error messages ("layer decompression")
   * @param program the worker's code: `(require, ...args) => void`
   * @param args JSON-serialisable arguments for the program
   */
  constructor(
    private readonly name: string,
    private readonly program: (load: NodeJS.Require, ...args: never[]) => void,
    private readonly args: readonly unknown[] = [],
    private readonly idleExitMs = 2000,
  ) {}

  /** The worker, started if need be, with `job` counted as using it. */
  acquire(job: WorkerJob): Worker {
    let state = this.running;
    if (!state) {
      const args = this.args.map((a) => JSON.stringify(a)).join(', ');
      const worker = new Worker(`(${this.program.toString()})(require${args ? `, ${args}` : ''})`, { eval: true });
      // The daemon's exit must not wait for it.
      worker.unref();
      // Starting it reset some of the daemon's run-time V8 flags (see v8flags.ts).
      worker.once('online', reapplyRuntimeV8Flags);
      const started: Running = { worker, jobs: new Set() };
      const fail = (err: Error) => {
        if (this.running === started) this.running = undefined;
        const jobs = [...started.jobs];
        started.jobs.clear();
        for (const j of jobs) j.fail(new Error(`${this.name} worker failed: ${err.message}`, { cause: err }));
      };
      worker.on('error', fail);
      worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
      this.running = state = started;
    }
    clearTimeout(state.idle);
    state.jobs.add(job);
    return state.worker;
  }

  /** `job` no longer uses the worker; the last one out starts the idle countdown. */
  release(job: WorkerJob): void {
    const state = this.running;
    if (!state || !state.jobs.delete(job) || state.jobs.size) return;
    state.idle = setTimeout(() => {
      if (this.running !== state || state.jobs.size) return;
      this.running = undefined;
      // The worker's heap was malloc'd in an arena of its own thread: hand it back once it is gone.
      void state.worker.terminate().then(() => trimMalloc(), () => undefined);
    }, this.idleExitMs);
    state.idle.unref();
  }
}
