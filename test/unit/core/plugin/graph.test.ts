import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootOrder, PluginGraphError, validateRegistrations } from '../../../../core/plugin/graph.js';
import { uriOf, type Registration } from '../../../../core/plugin/types.js';

const reg = (type: string, id: string, requires: string[] = []): Registration => ({ type, id, requires, init: () => ({}) });
const order = (regs: Registration[], disabled: string[] = []) => bootOrder(regs, new Set(disabled)).map(uriOf);

test('dependencies are placed before their dependents, ties in listed order', () => {
  const regs = [
    reg('t.grpc', 'a', ['t.service']),
    reg('t.service', 's1', ['t.meta']),
    reg('t.meta', 'm', ['t.content', 't.snap']),
    reg('t.snap', 'overlay'),
    reg('t.content', 'c'),
    reg('t.snap', 'native'),
    reg('t.service', 's2'),
  ];
  assert.deepEqual(order(regs), ['t.snap.overlay', 't.content.c', 't.snap.native', 't.meta.m', 't.service.s1', 't.service.s2', 't.grpc.a']);
});

test('the same input always gives the same order', () => {
  const regs = [reg('b', 'x', ['a']), reg('a', 'y'), reg('a', 'z'), reg('c', 'w', ['b'])];
  assert.deepEqual(order(regs), order([...regs]));
  assert.deepEqual(order(regs), ['a.y', 'a.z', 'b.x', 'c.w']);
});

test('"*" places a plugin after every other one', () => {
  const regs = [reg('x', 'last', ['*']), reg('a', '1'), reg('b', '2', ['a'])];
  assert.deepEqual(order(regs), ['a.1', 'b.2', 'x.last']);
});

test('a cycle is an error naming every plugin on it', () => {
  const regs = [reg('a', '1', ['b']), reg('b', '2', ['c']), reg('c', '3', ['a'])];
  assert.throws(() => order(regs), (err: Error) => {
    assert.ok(err instanceof PluginGraphError);
    assert.match(err.message, /circular plugin dependency: a\.1 -> b\.2 -> c\.3 -> a\.1/);
    return true;
  });
});

test('disabled plugins are left out but their dependents stay', () => {
  const regs = [reg('a', '1'), reg('b', '2', ['a']), reg('c', '3')];
  assert.deepEqual(order(regs, ['a.1']), ['b.2', 'c.3']);
});

test('registrations are validated', () => {
  assert.throws(() => validateRegistrations([reg('a', 'x'), reg('a', 'x')]), /a\.x: id already registered/);
  assert.throws(() => validateRegistrations([reg('', 'x')]), /has no type/);
  assert.throws(() => validateRegistrations([reg('a', '')]), /has no id/);
  assert.throws(() => validateRegistrations([reg('a', 'x', ['*', 'b'])]), /"\*" must be the only entry/);
  assert.throws(() => validateRegistrations([reg('a', 'x', ['a'])]), /requires its own type/);
});
