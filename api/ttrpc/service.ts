/**
 * The slice of a ts-proto grpc-js service definition that ttrpc needs. The same generated
 * definitions serve both transports: ttrpc only adds its own framing and envelope.
 */

// Method shorthand on purpose: its parameters are bivariant, so every generated
// definition is assignable to the unparameterised MethodDefinition.
export interface MethodDefinition<Req = unknown, Res = unknown> {
  /** "/<proto package>.<Service>/<Method>", e.g. "/containerd.task.v2.Task/Create". */
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  requestSerialize(value: Req): Buffer;
  requestDeserialize(bytes: Buffer): Req;
  responseSerialize(value: Res): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}

export type RequestOf<M> = M extends { requestDeserialize: (bytes: Buffer) => infer Req } ? Req : never;
export type ResponseOf<M> = M extends { responseDeserialize: (bytes: Buffer) => infer Res } ? Res : never;

/** Keys of the definition's unary methods; ttrpc 1.1 has no streaming, so the others are left out. */
export type UnaryKeys<Def> = {
  [K in keyof Def]: Def[K] extends { requestStream: false; responseStream: false } ? K : never;
}[keyof Def] & string;

export interface MethodName {
  service: string;
  method: string;
}

export function parseMethodPath(path: string): MethodName {
  const match = /^\/([^/]+)\/([^/]+)$/.exec(path);
  if (!match) throw new TypeError(`ttrpc: malformed method path ${JSON.stringify(path)}`);
  return { service: match[1]!, method: match[2]! };
}

/** The definition's unary methods, each with its property key and its wire names. */
export function unaryMethods<Def extends object>(def: Def): Array<{ key: string; definition: MethodDefinition } & MethodName> {
  return Object.entries(def)
    .filter((entry): entry is [string, MethodDefinition] => isUnary(entry[1]))
    .map(([key, definition]) => ({ key, definition, ...parseMethodPath(definition.path) }));
}

function isUnary(value: unknown): value is MethodDefinition {
  const method = value as Partial<MethodDefinition> | null;
  return typeof method?.path === 'string' && method.requestStream === false && method.responseStream === false;
}
