/** Packs an encoded protobuf message as an Any with typeurl v1's bare full-name URL. */
import type { AnyMessage } from './exchange.js';

export interface Encodable<T> {
  encode(message: T): { finish(): Uint8Array };
}

export function packAny<T>(typeUrl: string, codec: Encodable<T>, message: T): AnyMessage {
  return { typeUrl, value: codec.encode(message).finish() };
}
