/**
 * The daemon's gRPC listener on a unix socket: an HTTP/2 server (api/http2) whose streams
 * become calls (grpc-call.ts) of the methods that plugin instances expose through
 * grpcServices(). The server starts only after the whole plugin graph has booted.
 */
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { ServerConnection } from '../../api/http2/server-connection.js';
import type { ServerStream } from '../../api/http2/server-stream.js';
import { Code } from '../errdefs/errdefs.js';
import type { Logger } from '../log/logger.js';
import type { GrpcServiceBinding, ServeFn } from './grpc-adapter.js';
import { ServerCall, type CallLimits } from './grpc-call.js';
import { prepareSocketPath, secureSocket, socketPath } from './socket.js';

export interface GrpcListenOptions {
  address: string;
  uid: number;
  gid: number;
  maxRecvMessageSize: number;
  maxSendMessageSize: number;
  services: GrpcServiceBinding[];
  log: Logger;
}

export interface RunningServer {
  readonly address: string;
  /** Stops accepting, lets in-flight calls end (bounded), removes the socket. */
  close(graceMs?: number): Promise<void>;
}

/**
 * HTTP/2 receive windows the server grants. With the protocol's default 64 KiB, a client
 * uploading 1 MiB messages (Content.Write: ctr sends one and waits for its response) stalls
 * for some sixteen WINDOW_UPDATE round trips per message. Windows are credit, not buffers:
 * a call stops reading while its handler has messages waiting (grpc-call.ts).
 */
export const STREAM_WINDOW = 16 << 20;
export const CONNECTION_WINDOW = 64 << 20;

export async function listenGrpc(opts: GrpcListenOptions): Promise<RunningServer> {
  const path = socketPath(opts.address);
  await prepareSocketPath(path);
  const methods = new Map<string, ServeFn>();
  const seen = new Set<string>();
  for (const s of opts.services) {
    const name = Object.values(s.definition)[0]?.path.split('/')[1] ?? '?';
    if (seen.has(name)) { opts.log.warn('service registered twice; keeping the first', { service: name }); continue; }
    seen.add(name);
    for (const [p, serve] of s.methods) methods.set(p, serve);
  }
  const limits: CallLimits = { maxRecvMessageSize: opts.maxRecvMessageSize, maxSendMessageSize: opts.maxSendMessageSize };
  const onStream = (stream: ServerStream) => {
    const headers = stream.headers;
    const refuse = (status: number) => stream.respond([[':status', String(status)]], true);
    if (headers[':method'] !== 'POST') return refuse(405);
    const contentType = headers['content-type'];
    if (contentType === undefined || !contentType.startsWith('application/grpc')) return refuse(415);
    const call = new ServerCall(stream, limits);
    const path = headers[':path'] ?? '';
    const serve = methods.get(path);
    if (serve) serve(call);
    else call.finish({ code: Code.UNIMPLEMENTED, message: `unknown method ${path}` });
  };
  const connections = new Set<ServerConnection>();
  const server = createServer((socket) => {
    const conn = new ServerConnection(socket, {
      streamWindow: STREAM_WINDOW,
      connectionWindow: CONNECTION_WINDOW,
      onStream,
      onProtocolError: (message) => opts.log.debug('gRPC connection closed for a protocol error', { error: message }),
    });
    connections.add(conn);
    conn.onclose = () => connections.delete(conn);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => opts.log.error('gRPC server error', { error: String(err) }));
  secureSocket(path, opts.uid, opts.gid);
  return {
    address: path,
    close: async (graceMs = 2000) => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // GOAWAY to every client: in-flight calls finish, new ones go elsewhere.
      for (const c of connections) c.shutdown();
      const timer = setTimeout(() => { for (const c of connections) c.destroy(); }, graceMs);
      await closed;
      clearTimeout(timer);
      rmSync(path, { force: true });
    },
  };
}
