/**
 * Node starts its inspector when the process receives SIGUSR1: a debugger on 127.0.0.1:9229
 * that runs whatever code a client sends it. berthd and its shim run as root, so that would
 * let any local user run code as root one `kill -USR1` away, and containerd's users send
 * SIGUSR1 out of habit (containerd dumps its stacks on it). A listener of the program's own
 * takes the signal instead (libuv then owns the handler), which Node 20 offers no flag for.
 */
export function takeSigusr1(): void {
  process.on('SIGUSR1', () => undefined);
}
