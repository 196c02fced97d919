import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Code, codeOf, fromStatus, isNotFound, NotFoundError, AlreadyExistsError, ConflictError } from '../../../../core/errdefs/errdefs.js';

test('classes carry codes and containerd message suffixes', () => {
  const e = new NotFoundError('content digest sha256:abc');
  assert.equal(e.message, 'content digest sha256:abc: not found');
  assert.equal(codeOf(e), Code.NOT_FOUND);
  assert.equal(codeOf(new ConflictError('x')), Code.FAILED_PRECONDITION);
  assert.equal(codeOf(new Error('plain')), Code.UNKNOWN);
});

test('codes are found through the cause chain and for system errors', () => {
  const wrapped = new Error('outer', { cause: new AlreadyExistsError('image "x"') });
  assert.equal(codeOf(wrapped), Code.ALREADY_EXISTS);
  assert.ok(isNotFound(Object.assign(new Error('open'), { code: 'ENOENT' })));
});

test('statuses from the wire become classes without a doubled suffix', () => {
  const e = fromStatus(Code.NOT_FOUND, 'image "x": not found');
  assert.ok(e instanceof NotFoundError);
  assert.equal(e.message, 'image "x": not found');
  assert.equal(fromStatus(Code.OUT_OF_RANGE, 'write @5').code, Code.OUT_OF_RANGE);
});
