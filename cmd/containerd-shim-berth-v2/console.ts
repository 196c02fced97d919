/**
 * runc's --console-socket: runc (its init, inside the container) opens the pty and sends the
 * master's descriptor over a unix socket with SCM_RIGHTS. Node's net module reads stream data
 * but drops ancillary data, so the socket is a raw one made and read through koffi
 * (libc.ts): bind + listen before `runc create/exec`, then accept and recvmsg after it, the
 * order go-runc uses (the descriptor is sent while runc runs, so it is queued by the time runc
 * returns; a short poll covers the rest).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { acceptUnix, closeFd, listenUnix, receiveFd, type ReceivedFd } from './libc.js';

const POLL_MS = 10;

export class ConsoleSocket {
  private listener: number | undefined;
  private readonly dir: string;
  readonly path: string;

  constructor(parent = process.env.XDG_RUNTIME_DIR || tmpdir()) {
    this.dir = mkdtempSync(join(parent, 'pty'));
    this.path = join(this.dir, 'pty.sock');
    try {
      this.listener = listenUnix(this.path);
    } catch (err) {
      rmSync(this.dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Waits (up to timeoutMs) for runc to connect and pass the pty master. */
  async receiveMaster(timeoutMs = 10_000): Promise<ReceivedFd> {
    if (this.listener === undefined) throw new Error('console socket closed');
    const deadline = Date.now() + timeoutMs;
    let conn: number | null = null;
    try {
      for (;;) {
        conn ??= acceptUnix(this.listener);
        if (conn !== null) {
          const received = receiveFd(conn);
          if (received) return received;
        }
        if (Date.now() >= deadline) throw new Error('timed out waiting for the console master from the runtime');
        await sleep(POLL_MS);
      }
    } finally {
      if (conn !== null) closeFd(conn);
    }
  }

  close(): void {
    if (this.listener !== undefined) closeFd(this.listener);
    this.listener = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
