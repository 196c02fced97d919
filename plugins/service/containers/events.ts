/** Helpers for making event payloads visible to `event.<field>` subscription filters. */

/** Flattens a decoded event into the snake_case top-level fields `event.<field>` filters name. */
export function eventFields(msg: object): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(msg)) {
    if (v === undefined || (typeof v === 'object' && !(v instanceof Date) && !isPlainMap(v))) continue;
    out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v instanceof Date ? v.toISOString() : v;
  }
  return out;
}
const isPlainMap = (v: unknown) => !!v && typeof v === 'object' && Object.values(v as object).every((x) => typeof x === 'string');
