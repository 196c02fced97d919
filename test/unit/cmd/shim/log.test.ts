import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createLogger, formatLine } from '../../../../cmd/containerd-shim-berth-v2/log.js';
import { tempDir } from '../../../helpers/tmp.js';

test('lines use the logrus text layout', () => {
  const line = formatLine('warning', 'failed to x', { id: 'c1', error: new Error('boom: bad'), n: 3, skip: undefined }, new Date(0));
  assert.equal(line, 'time="1970-01-01T00:00:00.000Z" level=warning msg="failed to x" id=c1 error="boom: bad" n=3\n');
});

test('debug lines only with -debug; a write failure never throws', () => {
  const file = join(tempDir('shim-log-'), 'log');
  const fd = openSync(file, 'w');
  createLogger({ fd }).debug('hidden');
  createLogger({ fd, debug: true }).child({ id: 'x' }).debug('shown');
  closeSync(fd);
  assert.match(readFileSync(file, 'utf8'), /^time="[^"]+" level=debug msg="shown" id=x\n$/);
  // EBADF (fd -1): the line is dropped.
  createLogger({ fd: -1 }).error('nowhere');
});
