/** io.containerd.grpc.v1.tasks — the Tasks gRPC service over tasks-service. */
import type { AnyMessage } from '../../../core/events/exchange.js';
import { definePlugin, PluginType } from '../../../core/plugin/types.js';
import { TasksServiceRef, type ProcessView } from '../../../core/runtime/tasks.js';
import { implement, type GrpcPlugin } from '../../../core/server/grpc-adapter.js';

const anyOut = (a: AnyMessage | undefined) => (a ? { typeUrl: a.typeUrl, value: Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength) } : undefined);
const processOut = (p: ProcessView) => ({ ...p, status: p.status as number });

export const tasksGrpcPlugin = definePlugin<Record<string, never>, GrpcPlugin>({
  type: PluginType.GRPC,
  id: 'tasks',
  requires: [PluginType.Service],
  async init(ctx) {
    const service = await ctx.service(TasksServiceRef);
    const { TasksService } = await import('../../../api/gen/services/tasks/v1/tasks.js');
    return {
      grpcServices: () => [
        implement(TasksService, {
          create: (req, call) => service.create(call, {
            containerId: req.containerId,
            rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target || undefined, options: m.options })),
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            terminal: req.terminal,
            checkpoint: req.checkpoint,
            options: req.options,
            runtimePath: req.runtimePath,
          }),
          start: (req, call) => service.start(call, req.containerId, req.execId),
          delete: (req, call) => service.delete(call, req.containerId),
          deleteProcess: (req, call) => service.deleteProcess(call, req.containerId, req.execId),
          get: async (req, call) => ({ process: processOut(await service.get(call, req.containerId, req.execId)) }),
          list: async (req, call) => ({ tasks: (await service.list(call, req.filter)).map(processOut) }),
          kill: async (req, call) => {
            await service.kill(call, req.containerId, req.execId, req.signal, req.all);
            return {};
          },
          exec: async (req, call) => {
            await service.exec(call, {
              containerId: req.containerId,
              execId: req.execId,
              stdin: req.stdin,
              stdout: req.stdout,
              stderr: req.stderr,
              terminal: req.terminal,
              spec: req.spec,
            });
            return {};
          },
          resizePty: async (req, call) => {
            await service.resizePty(call, req.containerId, req.execId, req.width, req.height);
            return {};
          },
          closeIo: async (req, call) => {
            await service.closeIO(call, req.containerId, req.execId, req.stdin);
            return {};
          },
          pause: async (req, call) => {
            await service.pause(call, req.containerId);
            return {};
          },
          resume: async (req, call) => {
            await service.resume(call, req.containerId);
            return {};
          },
          listPids: async (req, call) => ({
            processes: (await service.listPids(call, req.containerId)).map((p) => ({ pid: p.pid, info: anyOut(p.info) })),
          }),
          checkpoint: (req, call) => service.checkpoint(call, req.containerId),
          update: async (req, call) => {
            await service.update(call, req.containerId, req.resources, req.annotations);
            return {};
          },
          metrics: async (req, call) => ({
            metrics: (await service.metrics(call, req.filters)).map((m) => ({ timestamp: m.timestamp, id: m.id, data: anyOut(m.data) })),
          }),
          wait: (req, call) => service.wait(call, req.containerId, req.execId),
        }, ctx.log),
      ],
    };
  },
});
