import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runInNewContext } from 'node:vm';
import { applyDeferredV8Flags, applyRuntimeV8Flags, deferRuntimeV8Flags, onFirstV8FlagChange } from '../../../../core/sys/v8flags.js';

// --expose-gc is observable and harmless: a context created after it is set has `gc`.
const gcExposed = () => runInNewContext('typeof gc') === 'function';

describe('deferred V8 flags', () => {
  it('records deferred flags without setting them, and runs the first-change hook once, before the first flag is set', () => {
    assert.equal(gcExposed(), false, 'this test needs a process started without --expose-gc');
    const seen: boolean[] = [];
    onFirstV8FlagChange(() => seen.push(gcExposed()));

    deferRuntimeV8Flags(['--expose-gc']);
    assert.equal(gcExposed(), false);
    applyRuntimeV8Flags([]);
    assert.deepEqual(seen, [], 'an empty change is no change');

    applyDeferredV8Flags();
    assert.deepEqual(seen, [false], 'the hook ran before the flag was set');
    assert.equal(gcExposed(), true);

    applyRuntimeV8Flags(['--expose-gc']);
    applyDeferredV8Flags();
    assert.deepEqual(seen, [false], 'the hook runs only once');
  });
});
