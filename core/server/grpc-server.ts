/**
 * The daemon's gRPC listener on a unix socket: an HTTP/2 server whose streams become calls
 * (grpc-call.ts) of the methods that plugin instances expose through grpcServices(). The
 * server starts only after the whole plugin graph has booted.
 */
import { rmSync } from 'node:fs';
import * as http2 from 'node:http2';
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
  const server = http2.createServer({
    settings: { initialWindowSize: STREAM_WINDOW },
    // In MiB. Node's default (10) refuses new streams once a session buffers more than that,
    // which wide windows allow by design; the windows themselves bound what a client can send.
    maxSessionMemory: 1 << 20,
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
    session.on('error', (err) => opts.log.debug('gRPC connection error', { error: String(err) }));
    try {
      session.setLocalWindowSize(CONNECTION_WINDOW);
    } catch (err) {
      opts.log.debug('could not widen the connection window', { error: String(err) });
    }
  });
  server.on('stream', (stream, headers) => {
    const refuse = (status: number) => {
      stream.on('error', () => undefined);
      try {
        stream.respond({ ':status': status }, { endStream: true });
      } catch {
        stream.destroy();
      }
    };
    if (headers[':method'] !== 'POST') return refuse(405);
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) return refuse(415);
    const call = new ServerCall(stream, headers, limits);
    const path = headers[':path'] ?? '';
    const serve = methods.get(path);
    if (serve) serve(call);
    else call.finish({ code: Code.UNIMPLEMENTED, message: `unknown method ${path}` });
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
      for (const s of sessions) s.close();
      const timer = setTimeout(() => { for (const s of sessions) s.destroy(); }, graceMs);
      await closed;
      clearTimeout(timer);
      rmSync(path, { force: true });
    },
  };
}
