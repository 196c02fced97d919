/**
 * What registry connections trust: Node's roots, plus the NODE_EXTRA_CA_CERTS file when the
 * launcher deferred it (core/sys/extra-ca.ts), plus a host's own CAs.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { deferredExtraCaFile } from '../../core/sys/extra-ca.js';

let loaded: { path: string; pems: string[] } | undefined;

/** The deferred file's certificates (PEM blocks); none when nothing was deferred or it cannot be read. */
function deferredCertificates(): string[] {
  const path = deferredExtraCaFile();
  if (!path) return [];
  if (loaded?.path !== path) {
    let pems: string[] = [];
    try {
      pems = readFileSync(path, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
    } catch (err) {
      // What Node itself does with an unreadable NODE_EXTRA_CA_CERTS: warn and go on.
      process.emitWarning(`Ignoring extra certs from \`${path}\`, load failed: ${(err as Error).message}`);
    }
    loaded = { path, pems };
  }
  return loaded.pems;
}

/**
 * The `ca` option for a connection that also trusts `extra` (PEM): Node's roots, the deferred
 * extra certificates and `extra`; undefined (Node's own defaults) when there is nothing to add.
 */
export function trustedCertificates(extra: readonly string[] = []): string[] | undefined {
  const deferred = deferredCertificates();
  if (!deferred.length && !extra.length) return undefined;
  return [...rootCertificates, ...deferred, ...extra];
}

let defaultContext: SecureContext | null | undefined;

/**
 * The secure context for connections without TLS settings of their own: one built with the
 * deferred certificates, or undefined (Node's default context, which has them already).
 * Built once, since a `ca` list given as an option is parsed again for every connection.
 */
export function defaultSecureContext(): SecureContext | undefined {
  if (defaultContext === undefined) {
    const ca = trustedCertificates();
    defaultContext = ca ? createSecureContext({ ca }) : null;
  }
  return defaultContext ?? undefined;
}
