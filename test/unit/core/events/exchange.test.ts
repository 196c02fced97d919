import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventExchange, validateTopic } from '../../../../core/events/exchange.js';

const ev = { typeUrl: 'containerd.events.ContainerCreate', value: new Uint8Array([10, 1, 120]) };

test('subscribers receive matching events in order and stop on abort', async () => {
  const x = new EventExchange();
  const ac = new AbortController();
  const it = x.subscribe(['topic~=/containers/', 'namespace==other'], ac.signal);
  x.publish('default', '/containers/create', ev);
  x.publish('default', '/tasks/start', ev);
  x.publish('other', '/tasks/exit', ev);
  const a = await it.next();
  const b = await it.next();
  assert.equal(a.value.topic, '/containers/create');
  assert.equal(b.value.topic, '/tasks/exit');
  ac.abort();
  assert.equal((await it.next()).done, true);
  assert.equal(x.subscriberCount, 0);
});

test('event.<field> filters see decoded payloads', async () => {
  const x = new EventExchange();
  x.registerDecoder(ev.typeUrl, (v) => ({ id: Buffer.from(v.slice(2)).toString() }));
  const ac = new AbortController();
  const it = x.subscribe(['event.id==x'], ac.signal);
  x.publish('default', '/containers/create', { ...ev, value: new Uint8Array([10, 1, 121]) });
  x.publish('default', '/containers/create', ev);
  assert.equal((await it.next()).value.event.value[2], 120);
  ac.abort();
});

test('topics and namespaces are validated', () => {
  assert.throws(() => validateTopic('containers/create'), /must start with '\/'/);
  assert.throws(() => validateTopic('/'), /at least one component/);
  assert.throws(() => validateTopic('/a/../b'), /failed validation on component/);
  assert.throws(() => new EventExchange().publish('bad/ns', '/a', ev), /namespace validation/);
});
