/**
 * A minimal async mutex. Snapshotters mix synchronous database transactions with
 * asynchronous filesystem work (copies, subvolume commands, directory removal); holding this
 * lock across such a sequence makes it atomic with respect to every other mutation of the
 * same snapshotter, the way a bolt write transaction serialises writers in containerd.
 */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  private held = 0;

  /** Runs `fn` once every earlier holder has finished; the lock is released however `fn` ends. */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    this.held++;
    return previous.then(fn).finally(() => {
      this.held--;
      release();
    });
  }

  /** Whether some caller holds or waits for the lock (diagnostics and tests). */
  get busy(): boolean {
    return this.held > 0;
  }
}
