/**
 * The daemon's gRPC listener on a unix socket. Services come from plugin instances that
 * expose grpcServices(); the server starts only after the whole plugin graph has booted.
 */
import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
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

export async function listenGrpc(opts: GrpcListenOptions): Promise<RunningServer> {
  const path = socketPath(opts.address);
  await prepareSocketPath(path);
  const server = new grpc.Server({
    'grpc.max_receive_message_length': opts.maxRecvMessageSize,
    'grpc.max_send_message_length': opts.maxSendMessageSize,
  });
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
