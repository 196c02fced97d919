/**
 * io.containerd.grpc.v1.events — Events.Publish/Forward/Subscribe over gRPC, and
 * Events.Forward over ttrpc for shims (served on the daemon's ttrpc socket).
 */
import { InvalidArgumentError } from '../../../core/errdefs/errdefs.js';
import { namespaceRequired } from '../../../core/namespaces/namespaces.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';
import type { TtrpcPlugin } from '../../../core/server/ttrpc-plugin.js';
import type { Envelope } from '../../../core/events/exchange.js';

const ZERO_TIME = new Date(-62135596800000);

export const eventsGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin & TtrpcPlugin>({
  type: PluginType.GRPC,
  id: 'events',
  requires: [PluginType.Event],
  async init(ctx) {
    const exchange = await ctx.get(PluginType.Event);
    const { EventsService } = await import('../../../api/gen/services/events/v1/events.js');
    const { EventsService: TtrpcEventsService } = await import('../../../api/gen/services/ttrpc/events/v1/events.js');
    const toEnvelope = (e: { timestamp?: Date; namespace: string; topic: string; event?: { typeUrl: string; value: Uint8Array } } | undefined): Envelope => {
      if (!e) throw new InvalidArgumentError('envelope is required');
      return { timestamp: e.timestamp ?? new Date(), namespace: e.namespace, topic: e.topic, event: e.event };
    };
    return {
      grpcServices: () => [
        implement(EventsService, {
          publish: async (req, call) => {
            const ns = namespaceRequired(call);
            if (!req.event) throw new InvalidArgumentError('event is required');
            exchange.publish(ns, req.topic, req.event);
            return {};
          },
          forward: async (req) => {
            exchange.forward(toEnvelope(req.envelope));
            return {};
          },
          subscribe: async (req, call, send) => {
            for await (const env of exchange.subscribe(req.filters, call.signal)) {
              await send({
                timestamp: env.timestamp ?? ZERO_TIME,
                namespace: env.namespace,
                topic: env.topic,
                event: env.event ? { typeUrl: env.event.typeUrl, value: Buffer.from(env.event.value) } : undefined,
              });
            }
          },
        }, ctx.log),
      ],
      ttrpcServices: () => [
        {
          definition: TtrpcEventsService,
          handlers: {
            forward: async (req: { envelope?: Parameters<typeof toEnvelope>[0] }) => {
              exchange.forward(toEnvelope(req.envelope));
              return {};
            },
          },
        },
      ],
    };
  },
});
