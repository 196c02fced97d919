/** ttrpc request metadata: a multimap sent as repeated key/value pairs in the request envelope. */
import type { KeyValue } from '../gen/ttrpc/ttrpc.js';

/** Metadata key containerd reads the namespace from on ttrpc (namespaces/ttrpc.go). */
export const NAMESPACE_METADATA_KEY = 'containerd-namespace-ttrpc';

export type Metadata = Record<string, string[]>;
export type MetadataInit = Record<string, string | readonly string[]>;

/** Keys are lower-cased on the way out, as containerd's own ttrpc metadata type does. */
export function toKeyValues(metadata: MetadataInit): KeyValue[] {
  const pairs: KeyValue[] = [];
  for (const [key, values] of Object.entries(metadata)) {
    for (const value of typeof values === 'string' ? [values] : values) pairs.push({ key: key.toLowerCase(), value });
  }
  return pairs;
}

export function fromKeyValues(pairs: readonly KeyValue[]): Metadata {
  // No prototype, so keys such as "__proto__" or "constructor" stay plain entries.
  const metadata: Metadata = Object.create(null) as Metadata;
  for (const { key, value } of pairs) (metadata[key] ??= []).push(value);
  return metadata;
}
