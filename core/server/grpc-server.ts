/**
 * The daemon's gRPC listener on a unix socket. Services come from plugin instances that
 * expose grpcServices(); the server starts only after the whole plugin graph has booted.
 */
import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import type * as http2 from 'node:http2';
import type { Logger } from '../log/logger.js';
import type { GrpcServiceBinding } from './grpc-adapter.js';
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
 * grpc-js reads a call's messages as the handler asks for them.
 */
export const STREAM_WINDOW = 16 << 20;
export const CONNECTION_WINDOW = 64 << 20;

/** The grpc-js Server fields the window setup reaches (not part of its typed API). */
interface ServerInternals {
  commonServerOptions?: http2.ServerOptions;
  http2Servers?: Map<http2.Http2Server, unknown>;
}

/**
 * grpc-js has no option for the server's flow-control windows, so set them where it builds
 * its HTTP/2 servers: the initial stream window goes into the SETTINGS every session starts
 * with (before bind), the connection window is raised as each session opens (after bind).
 * Best effort: if grpc-js's internals change, calls work with the default windows.
 */
function advertiseWindows(server: grpc.Server): boolean {
  const common = (server as unknown as ServerInternals).commonServerOptions;
  if (!common || typeof common !== 'object') return false;
  common.settings = { ...common.settings, initialWindowSize: STREAM_WINDOW };
  return true;
}

function widenConnectionWindows(server: grpc.Server, log: Logger): void {
  const servers = (server as unknown as ServerInternals).http2Servers;
  if (!(servers instanceof Map)) return;
  for (const h2 of servers.keys()) {
    h2.on('session', (session: http2.ServerHttp2Session) => {
      try {
        session.setLocalWindowSize(CONNECTION_WINDOW);
      } catch (err) {
        log.debug('could not widen the connection window', { error: String(err) });
      }
    });
  }
}

export async function listenGrpc(opts: GrpcListenOptions): Promise<RunningServer> {
  const path = socketPath(opts.address);
  await prepareSocketPath(path);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.maxRecvMessageSize,
    'grpc.max_send_message_length': opts.maxSendMessageSize,
    // Call and message counters for channelz, which berthd does not serve: per-call work
    // (and a Date per message) for nothing.
    'grpc.enable_channelz': 0,
  });
  if (!advertiseWindows(server)) opts.log.debug('grpc-js internals changed: serving with default HTTP/2 windows');
  const seen = new Set<string>();
  for (const s of opts.services) {
    const name = Object.values(s.definition)[0]?.path.split('/')[1] ?? '?';
    if (seen.has(name)) { opts.log.warn('service registered twice; keeping the first', { service: name }); continue; }
    seen.add(name);
    server.addService(s.definition as unknown as grpc.ServiceDefinition, s.implementation);
  }
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  widenConnectionWindows(server, opts.log);
  secureSocket(path, opts.uid, opts.gid);
  return {
    address: path,
    close: async (graceMs = 2000) => {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { server.forceShutdown(); resolve(); }, graceMs);
        server.tryShutdown(() => { clearTimeout(timer); resolve(); });
      });
      rmSync(path, { force: true });
    },
  };
}
