import { test } from 'node:test';
import assert from 'node:assert/strict';
import { validateIdentifier } from '../../../../core/identifiers/identifiers.js';
import { namespaceRequired, validateNamespace } from '../../../../core/namespaces/namespaces.js';
import { codeOf, Code } from '../../../../core/errdefs/errdefs.js';

test('valid identifiers', () => {
  for (const s of ['a', 'default', 'k8s.io', 'my-ns_1', 'A1.b2-c3', 'x'.repeat(76)]) validateIdentifier(s);
});

test('invalid identifiers are invalid arguments', () => {
  for (const s of ['', '..', '../x', 'a/b', 'a..b', '-a', 'a-', 'a\u0000b', 'a b', 'x'.repeat(77), '.hidden']) {
    assert.throws(() => validateIdentifier(s), (e: unknown) => codeOf(e) === Code.INVALID_ARGUMENT, s);
  }
});

test('namespace errors use containerd wording', () => {
  assert.throws(() => validateNamespace('a/b'), /namespace validation: identifier "a\/b" must match/);
  assert.throws(() => namespaceRequired({}), (e: Error) => codeOf(e) === Code.FAILED_PRECONDITION && e.message === 'namespace is required: failed precondition');
  assert.equal(namespaceRequired({ namespace: 'default' }), 'default');
});
