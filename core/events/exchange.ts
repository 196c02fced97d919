/**
 * The event exchange: plugins publish, shims forward, clients subscribe. Topics and
 * namespaces are validated as containerd does (events/exchange), and subscriptions take the
 * same filter language as List calls (fields: namespace, topic, event.<field>).
 */
import { InvalidArgumentError } from '../errdefs/errdefs.js';
import { isIdentifier } from '../identifiers/identifiers.js';
import { validateNamespace } from '../namespaces/namespaces.js';
import { parseFilters, type Filter } from '../filters/filters.js';

/** A protobuf Any: the bare full message name as type URL (typeurl v1 convention). */
export interface AnyMessage {
  typeUrl: string;
  value: Uint8Array;
}

export interface Envelope {
  timestamp: Date;
  namespace: string;
  topic: string;
  event: AnyMessage | undefined;
}

/** Decodes an event payload into plain fields so `event.<field>` filters can match. */
export type EventDecoder = (value: Uint8Array) => Record<string, unknown>;

/** Validates a topic: starts with `/`, every component an identifier. */
export function validateTopic(topic: string): void {
  if (!topic.startsWith('/')) throw new InvalidArgumentError(`must start with '/': ${JSON.stringify(topic)}`);
  const parts = topic.slice(1).split('/');
  if (parts.length === 0 || parts[0] === '') throw new InvalidArgumentError(`must have at least one component: ${JSON.stringify(topic)}`);
  for (const p of parts) {
    if (!isIdentifier(p)) throw new InvalidArgumentError(`failed validation on component ${JSON.stringify(p)} of topic ${JSON.stringify(topic)}`);
  }
}

interface Subscriber {
  filter: Filter;
  push(env: Envelope): void;
}

export class EventExchange {
  private readonly subscribers = new Set<Subscriber>();
  private readonly decoders = new Map<string, EventDecoder>();

  /** Lets `event.<field>` filters see inside payloads of this type. */
  registerDecoder(typeUrl: string, decoder: EventDecoder): void {
    this.decoders.set(typeUrl, decoder);
  }

  /** Publishes an event raised inside the daemon. */
  publish(namespace: string, topic: string, event: AnyMessage): void {
    validateNamespace(namespace);
    validateTopic(topic);
    this.broadcast({ timestamp: new Date(), namespace, topic, event });
  }

  /** Re-publishes an envelope that was created elsewhere (shims, other daemons). */
  forward(envelope: Envelope): void {
    validateNamespace(envelope.namespace);
    validateTopic(envelope.topic);
    this.broadcast(envelope);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /**
   * Streams every envelope matching `filters` until `signal` aborts. Subscribing happens
   * synchronously, so nothing published after this call returns is missed.
   */
  subscribe(filters: readonly string[], signal: AbortSignal): AsyncIterableIterator<Envelope> {
    const filter = parseFilters(filters);
    const queue: Envelope[] = [];
    let wake: (() => void) | undefined;
    const sub: Subscriber = {
      filter,
      push: (env) => {
        queue.push(env);
        wake?.();
      },
    };
    this.subscribers.add(sub);
    const stop = () => {
      this.subscribers.delete(sub);
      wake?.();
    };
    if (signal.aborted) stop();
    else signal.addEventListener('abort', stop, { once: true });
    const iterator: AsyncIterableIterator<Envelope> = {
      [Symbol.asyncIterator]: () => iterator,
      next: async () => {
        while (queue.length === 0) {
          if (signal.aborted) return { done: true, value: undefined };
          await new Promise<void>((r) => (wake = r));
          wake = undefined;
        }
        return { done: false, value: queue.shift()! };
      },
      return: async () => {
        stop();
        return { done: true, value: undefined };
      },
    };
    return iterator;
  }

  private broadcast(env: Envelope): void {
    let decoded: Record<string, unknown> | undefined;
    const decode = () => {
      if (decoded) return decoded;
      const d = env.event && this.decoders.get(env.event.typeUrl);
      try {
        decoded = d && env.event ? d(env.event.value) : {};
      } catch {
        decoded = {};
      }
      return decoded;
    };
    for (const sub of this.subscribers) {
      const matched = sub.filter.match((path) => {
        if (path.length === 1 && path[0] === 'namespace') return { value: env.namespace, present: true };
        if (path.length === 1 && path[0] === 'topic') return { value: env.topic, present: true };
        if (path[0] === 'event' && path.length > 1) {
          let v: unknown = decode();
          for (const p of path.slice(1)) v = v && typeof v === 'object' ? (v as Record<string, unknown>)[p] : undefined;
          return v === undefined ? { value: '', present: false } : { value: String(v), present: true };
        }
        return { value: '', present: false };
      });
      if (matched) sub.push(env);
    }
  }
}
