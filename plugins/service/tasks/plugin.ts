/**
 * io.containerd.service.v1.tasks-service — tasks over the runtimes (v2, and v1 when present),
 * the container records in the metadata store, and the event exchange.
 */
import { DEFAULT_TIMEOUTS } from '../../../core/config/config.js';
import { parseDuration } from '../../../core/config/duration.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import type { PlatformRuntime } from '../../../core/runtime/runtime.js';
import type { TasksService } from '../../../core/runtime/tasks.js';
import { eventFields } from '../containers/events.js';

const STATE_TIMEOUT = 'io.containerd.timeout.task.state';

export const tasksServicePlugin = definePlugin<Record<string, never>, TasksService>({
  type: PluginType.Service,
  id: 'tasks-service',
  requires: [PluginType.RuntimeV1, PluginType.RuntimeV2, PluginType.Metadata, PluginType.Event],
  async init(ctx) {
    const metadata = await ctx.get(PluginType.Metadata);
    const v2 = await ctx.get(PluginType.RuntimeV2);
    const runtimes = new Map<string, PlatformRuntime>();
    try {
      for (const r of (await ctx.getByType(PluginType.RuntimeV1)).values()) runtimes.set(r.id, r);
    } catch {
      // No v1 runtime on this daemon: every runtime name goes to v2.
    }
    const ev = await import('../../../api/gen/events/task.js');
    const decoders: [string, { decode(b: Uint8Array): object }][] = [
      ['TaskCreate', ev.TaskCreate], ['TaskStart', ev.TaskStart], ['TaskExit', ev.TaskExit], ['TaskDelete', ev.TaskDelete],
      ['TaskOOM', ev.TaskOOM], ['TaskExecAdded', ev.TaskExecAdded], ['TaskExecStarted', ev.TaskExecStarted],
      ['TaskPaused', ev.TaskPaused], ['TaskResumed', ev.TaskResumed], ['TaskCheckpointed', ev.TaskCheckpointed],
    ];
    for (const [name, codec] of decoders) ctx.events.registerDecoder(`containerd.events.${name}`, (v) => eventFields(codec.decode(v)));
    const { LocalTasksService } = await import('./service.js');
    return new LocalTasksService({
      metadata,
      containers: metadata.containers,
      v2,
      runtimes,
      stateTimeoutMs: parseDuration(ctx.daemon.timeouts[STATE_TIMEOUT] ?? DEFAULT_TIMEOUTS[STATE_TIMEOUT] ?? '2s', STATE_TIMEOUT),
      log: ctx.log,
    });
  },
});
