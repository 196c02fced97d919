/** ttrpc (containerd's RPC for shims and its ".ttrpc" socket): client, server and wire helpers. */
export { TtrpcClient, type CallOptions, type ConnectOptions } from './client.js';
export {
  TtrpcServer,
  type CloseOptions,
  type HandlerContext,
  type ListenAddress,
  type ServiceImplementation,
  type TtrpcServerEvents,
  type UnaryHandler,
} from './server.js';
export { typedClient, type TypedCallOptions, type TypedClient, type TypedClientDefaults } from './typed-client.js';
export { NAMESPACE_METADATA_KEY, type Metadata, type MetadataInit } from './metadata.js';
export { isAbstract, socketPath } from './address.js';
export { TtrpcClosedError, statusFromError } from './status.js';
export { FrameDecoder, encodeFrame, HEADER_LENGTH, MAX_PAYLOAD_LENGTH, MessageType, type DecodedFrame, type FrameHeader } from './frame.js';
export type { MethodDefinition, RequestOf, ResponseOf, UnaryKeys } from './service.js';
