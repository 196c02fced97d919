/**
 * Milliseconds on the monotonic clock. Unlike `performance.now()` it loads nothing: the first
 * use of the `performance` global loads perf_hooks and the modules behind it, which a daemon
 * would otherwise pay for while it boots.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
