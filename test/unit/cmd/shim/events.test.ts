import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { TaskExit, TaskStart } from '../../../../api/gen/events/task.js';
import { EventsService, type Envelope } from '../../../../api/gen/services/ttrpc/events/v1/events.js';
import { TtrpcServer } from '../../../../api/ttrpc/index.js';
import { UnavailableError } from '../../../../core/errdefs/errdefs.js';
import { Publisher, Topics } from '../../../../cmd/containerd-shim-berth-v2/events.js';
import { createLogger } from '../../../../cmd/containerd-shim-berth-v2/log.js';
import { tempDir } from '../../../helpers/tmp.js';

const quiet = createLogger({ fd: -1 });
const dir = tempDir('shim-events-');
const servers: TtrpcServer[] = [];
after(async () => {
  for (const s of servers) await s.close({ graceMs: 10 });
});

async function sink(name: string, failFirst = 0): Promise<{ address: string; received: Array<{ envelope: Envelope; namespace?: string }> }> {
  const address = `unix://${join(dir, name)}`;
  const received: Array<{ envelope: Envelope; namespace?: string }> = [];
  let failures = failFirst;
  const server = new TtrpcServer();
  server.register(EventsService, {
    forward: async (req, ctx) => {
      if (failures-- > 0) throw new UnavailableError('daemon busy');
      received.push({ envelope: req.envelope!, namespace: ctx.namespace });
      return {};
    },
  });
  await server.listen(address);
  servers.push(server);
  return { address, received };
}

test('events are forwarded in order with the namespace, retried in place on failure', async () => {
  const { address, received } = await sink('a.sock', 2);
  const publisher = new Publisher({ address, namespace: 'ns1', log: quiet, retryDelayMs: 5 });
  publisher.publish(Topics.start, 'containerd.events.TaskStart', TaskStart, { containerId: 'c', pid: 1 });
  publisher.publish(Topics.exit, 'containerd.events.TaskExit', TaskExit, { containerId: 'c', id: 'c', pid: 1, exitStatus: 3, exitedAt: new Date(5000) });
  assert.equal(await publisher.flush(5000), true);
  assert.deepEqual(received.map((r) => r.envelope.topic), ['/tasks/start', '/tasks/exit']);
  assert.ok(received.every((r) => r.namespace === 'ns1' && r.envelope.namespace === 'ns1'));
  assert.equal(received[1]!.envelope.event?.typeUrl, 'containerd.events.TaskExit');
  assert.equal(TaskExit.decode(received[1]!.envelope.event!.value).exitStatus, 3);
  assert.ok(received[0]!.envelope.timestamp!.getTime() <= received[1]!.envelope.timestamp!.getTime());
  publisher.close();
});

test('an event failing past the retry limit is dropped and the rest still go out', async () => {
  const { address, received } = await sink('b.sock', 3);
  const publisher = new Publisher({ address, namespace: 'ns', log: quiet, retryDelayMs: 1, maxRetries: 2 });
  publisher.publish('/tasks/start', 'containerd.events.TaskStart', TaskStart, { containerId: 'dropped', pid: 1 });
  publisher.publish('/tasks/start', 'containerd.events.TaskStart', TaskStart, { containerId: 'kept', pid: 2 });
  assert.equal(await publisher.flush(5000), true);
  assert.deepEqual(received.map((r) => TaskStart.decode(r.envelope.event!.value).containerId), ['kept']);
  publisher.close();
});

test('an unreachable daemon: flush gives up after its timeout', async () => {
  const publisher = new Publisher({ address: `unix://${join(dir, 'nobody.sock')}`, namespace: 'ns', log: quiet, retryDelayMs: 1000 });
  publisher.publish('/tasks/start', 'containerd.events.TaskStart', TaskStart, { containerId: 'x', pid: 1 });
  assert.equal(await publisher.flush(50), false);
  assert.equal(publisher.pending, 1);
  publisher.close();
});
