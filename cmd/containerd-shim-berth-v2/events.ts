/**
 * Task events, forwarded to the daemon with `containerd.services.events.ttrpc.v1.Events/Forward`
 * on its ttrpc socket (TTRPC_ADDRESS), with the namespace in `containerd-namespace-ttrpc`.
 *
 * runtime/v2/README.md requires per-task order (create → start → exit → delete, and
 * exec-added → exec-started → exit), so events go out strictly one at a time from a FIFO
 * queue: a failed send is retried in place (1 s, 2 s, … like containerd's publisher, up to 5
 * retries) before it is dropped, and nothing overtakes it. The envelope's timestamp is taken
 * when the event is queued.
 */
import type { Any } from '../../api/gen/google/protobuf/any.js';
import { EventsService } from '../../api/gen/services/ttrpc/events/v1/events.js';
import { TtrpcClient, typedClient, type TypedClient } from '../../api/ttrpc/index.js';
import type { Logger } from './log.js';

export interface Encodable<T> {
  encode(message: T): { finish(): Uint8Array };
}

interface QueuedEvent {
  topic: string;
  event: Any;
  timestamp: Date;
  attempts: number;
}

export interface PublisherOptions {
  /** The daemon's ttrpc address; empty disables forwarding (events are dropped). */
  address: string;
  namespace: string;
  log: Logger;
  /** Per-request timeout (containerd: 5 s). */
  timeoutMs?: number;
  maxRetries?: number;
  /** Delay before retry n is n × this (containerd: 1 s). */
  retryDelayMs?: number;
}

export class Publisher {
  private readonly queue: QueuedEvent[] = [];
  private client: TtrpcClient | undefined;
  private events: TypedClient<typeof EventsService> | undefined;
  private running = false;
  private idleWaiters: Array<() => void> = [];
  private closed = false;

  constructor(private readonly options: PublisherOptions) {}

  /** Queues an event; the message is encoded now, with typeurl's bare-name type URL. */
  publish<T>(topic: string, typeUrl: string, codec: Encodable<T>, message: T): void {
    if (this.closed) return;
    const event: Any = { typeUrl, value: Buffer.from(codec.encode(message).finish()) };
    this.queue.push({ topic, event, timestamp: new Date(), attempts: 0 });
    this.options.log.debug('queued event', { topic });
    if (!this.running) void this.drain();
  }

  get pending(): number {
    return this.queue.length;
  }

  /** Resolves once the queue is empty, or after timeoutMs (false then). */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.queue.length === 0) return true;
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<boolean>((resolve) => this.idleWaiters.push(() => resolve(true)));
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    const result = await Promise.race([idle, late]);
    clearTimeout(timer);
    return result;
  }

  close(): void {
    this.closed = true;
    this.client?.close();
    this.client = undefined;
    this.events = undefined;
  }

  private async drain(): Promise<void> {
    this.running = true;
    const { maxRetries = 5, retryDelayMs = 1000 } = this.options;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const item = this.queue[0]!;
        try {
          await this.forward(item);
          this.queue.shift();
        } catch (err) {
          item.attempts++;
          if (item.attempts > maxRetries) {
            this.options.log.error('evicting event from queue because of retry count', { topic: item.topic, error: err });
            this.queue.shift();
            continue;
          }
          this.options.log.warn('forward event failed; retrying', { topic: item.topic, attempt: item.attempts, error: err });
          this.dropClient();
          await new Promise((resolve) => setTimeout(resolve, retryDelayMs * item.attempts));
        }
      }
    } finally {
      this.running = false;
      if (this.queue.length === 0 || this.closed) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private async forward(item: QueuedEvent): Promise<void> {
    if (!this.options.address) throw new Error('no TTRPC_ADDRESS to forward events to');
    const events = await this.connect();
    await events.forward(
      {
        envelope: {
          timestamp: item.timestamp,
          namespace: this.options.namespace,
          topic: item.topic,
          event: item.event,
        },
      },
      { timeoutMs: this.options.timeoutMs ?? 5000 },
    );
  }

  private async connect(): Promise<TypedClient<typeof EventsService>> {
    if (this.events && this.client && !this.client.closed) return this.events;
    this.dropClient();
    const client = await TtrpcClient.connect(this.options.address, { timeoutMs: this.options.timeoutMs ?? 5000 });
    this.client = client;
    this.events = typedClient(client, EventsService, { namespace: this.options.namespace });
    return this.events;
  }

  private dropClient(): void {
    this.client?.close();
    this.client = undefined;
    this.events = undefined;
  }
}

/** Topics the shim publishes (containerd's runtime/events.go). */
export const Topics = {
  create: '/tasks/create',
  start: '/tasks/start',
  exit: '/tasks/exit',
  delete: '/tasks/delete',
  execAdded: '/tasks/exec-added',
  execStarted: '/tasks/exec-started',
  paused: '/tasks/paused',
  resumed: '/tasks/resumed',
  oom: '/tasks/oom',
} as const;
