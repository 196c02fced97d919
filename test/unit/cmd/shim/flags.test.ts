import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFlags, serveArgs, UsageError } from '../../../../cmd/containerd-shim-berth-v2/flags.js';

test('start invocation as containerd runs it', () => {
  const flags = parseFlags(['-namespace', 'default', '-address', '/run/c.sock', '-publish-binary', '/usr/bin/containerd', '-id', 'c1', '-debug', 'start']);
  assert.equal(flags.namespace, 'default');
  assert.equal(flags.address, '/run/c.sock');
  assert.equal(flags.publishBinary, '/usr/bin/containerd');
  assert.equal(flags.id, 'c1');
  assert.equal(flags.debug, true);
  assert.equal(flags.action, 'start');
});

test('delete invocation carries the bundle', () => {
  const flags = parseFlags(['-namespace', 'ns', '-address', 'a', '-publish-binary', 'b', '-id', 'x', '-bundle', '/b/x', 'delete']);
  assert.equal(flags.bundle, '/b/x');
  assert.equal(flags.action, 'delete');
  assert.equal(flags.debug, false);
});

test('Go flag syntax: -name=value, --name, -bool=false; no action means serve', () => {
  const flags = parseFlags(['--namespace=ns', '-id=c', '-debug=false', '--address', 'a']);
  assert.deepEqual([flags.namespace, flags.id, flags.debug, flags.address, flags.action], ['ns', 'c', false, 'a', '']);
  assert.equal(parseFlags(['-v']).version, true);
});

test('unknown flags and missing values are usage errors', () => {
  assert.throws(() => parseFlags(['-nope']), UsageError);
  assert.throws(() => parseFlags(['-namespace']), UsageError);
  assert.throws(() => parseFlags(['-debug=maybe']), UsageError);
});

test('serve mode argv matches the runc shim re-exec', () => {
  assert.deepEqual(serveArgs({ namespace: 'n', id: 'i', address: 'a', debug: true }), ['-namespace', 'n', '-id', 'i', '-address', 'a', '-debug']);
  assert.deepEqual(serveArgs({ namespace: 'n', id: 'i', address: 'a', debug: false }), ['-namespace', 'n', '-id', 'i', '-address', 'a']);
});
