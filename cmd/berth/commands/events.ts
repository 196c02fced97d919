/** `berth events [filters...]`: prints every event as ctr does (`time namespace topic json`). */
import type { Command } from 'commander';
import { action } from '../action.js';
import { goRFC3339, goTimeString } from './tasks.js';

type Decoder = { decode(b: Uint8Array): object };

async function decoders(): Promise<Map<string, Decoder>> {
  const [task, container, content, image, namespace, snapshot] = await Promise.all([
    import('../../../api/gen/events/task.js'),
    import('../../../api/gen/events/container.js'),
    import('../../../api/gen/events/content.js'),
    import('../../../api/gen/events/image.js'),
    import('../../../api/gen/events/namespace.js'),
    import('../../../api/gen/events/snapshot.js'),
  ]);
  const map = new Map<string, Decoder>();
  const add = (pkg: string, mod: Record<string, unknown>) => {
    for (const [name, codec] of Object.entries(mod)) {
      if (!name.includes('_') && codec && typeof (codec as Decoder).decode === 'function') map.set(`${pkg}.${name}`, codec as Decoder);
    }
  };
  add('containerd.events', task);
  add('containerd.events', container);
  add('containerd.events', content);
  add('containerd.events', namespace);
  add('containerd.events', snapshot);
  add('containerd.services.images.v1', image);
  return map;
}

const snake = (k: string) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * A decoded message as Go's encoding/json prints a gogo-generated struct: snake_case keys,
 * zero values omitted, times in RFC 3339, Any as {type_url, value(base64)}.
 */
export function goEventJson(v: unknown): unknown {
  if (v instanceof Date) return goRFC3339(v);
  if (v instanceof Uint8Array) return v.length ? Buffer.from(v).toString('base64') : undefined;
  if (Array.isArray(v)) return v.length ? v.map(goEventJson) : undefined;
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.typeUrl === 'string' && (o.value instanceof Uint8Array || o.value === undefined) && Object.keys(o).length <= 2) {
      const out: Record<string, unknown> = {};
      if (o.typeUrl) out.type_url = o.typeUrl;
      if (o.value && (o.value as Uint8Array).length) out.value = Buffer.from(o.value as Uint8Array).toString('base64');
      return out;
    }
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(o)) {
      if (k === 'labels' || k === 'annotations') {
        if (val && Object.keys(val).length) out[k] = val;
        continue;
      }
      const j = goEventJson(val);
      if (j === undefined || j === '' || j === 0 || j === false) continue;
      if (j && typeof j === 'object' && !Array.isArray(j) && Object.keys(j).length === 0 && !(val instanceof Date)) continue;
      out[snake(k)] = j;
    }
    return out;
  }
  return v;
}

export function register(program: Command): void {
  program.command('events')
    .alias('event')
    .description('display containerd events')
    .argument('[filters...]')
    .action(action(async (ctx, filters) => {
      const { EventsDefinition } = await import('../../../api/gen/services/events/v1/events.js');
      const codecs = await decoders();
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      for await (const e of ctx.connection.service(EventsDefinition).subscribe({ filters }, { signal: stop.signal })) {
        let out = '';
        if (e.event) {
          const codec = codecs.get(e.event.typeUrl);
          out = codec ? JSON.stringify(goEventJson(codec.decode(e.event.value)) ?? {}) : JSON.stringify({ type_url: e.event.typeUrl });
        }
        process.stdout.write(`${goTimeString(e.timestamp ?? new Date(0))} ${e.namespace} ${e.topic} ${out}\n`);
      }
    }));
}
