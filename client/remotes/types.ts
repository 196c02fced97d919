/**
 * Shared shapes of the registry client: OCI descriptors, media types, and the per-host settings
 * the resolver, fetcher and pusher use.
 */
import type { Agent as HttpAgent } from 'node:http';
import type { Authorizer } from './auth.js';

/** An OCI content descriptor (the subset the registry client reads). */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: { architecture: string; os: string; variant?: string; 'os.version'?: string; 'os.features'?: string[] };
  artifactType?: string;
}

export const MediaTypes = {
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_LAYER_ZSTD: 'application/vnd.oci.image.layer.v1.tar+zstd',
  DOCKER_MANIFEST_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_SCHEMA1_MANIFEST: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_GZIP: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DOCKER_FOREIGN_LAYER_GZIP: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

/** Media types that live under /manifests/ rather than /blobs/. */
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([
  MediaTypes.OCI_INDEX,
  MediaTypes.OCI_MANIFEST,
  MediaTypes.DOCKER_MANIFEST_LIST,
  MediaTypes.DOCKER_MANIFEST,
  MediaTypes.DOCKER_SCHEMA1_MANIFEST,
]);

/** Index-like media types (their children are manifests). */
export const INDEX_MEDIA_TYPES: ReadonlySet<string> = new Set([MediaTypes.OCI_INDEX, MediaTypes.DOCKER_MANIFEST_LIST]);

export function isManifestMediaType(mediaType: string): boolean {
  return MANIFEST_MEDIA_TYPES.has(mediaType);
}

export function isIndexMediaType(mediaType: string): boolean {
  return INDEX_MEDIA_TYPES.has(mediaType);
}

/** Label/annotation prefix naming the repositories a blob is known to exist in, per registry host. */
export const DISTRIBUTION_SOURCE_PREFIX = 'containerd.io/distribution.source';

/** The label key naming source repositories on `host`: containerd.io/distribution.source.<host>. */
export function distributionSourceKey(host: string): string {
  return `${DISTRIBUTION_SOURCE_PREFIX}.${host}`;
}

/** What a host may be used for. */
export type HostCapability = 'pull' | 'resolve' | 'push';
export const ALL_CAPABILITIES: readonly HostCapability[] = Object.freeze(['pull', 'resolve', 'push'] as HostCapability[]);

/** TLS settings of one host. */
export interface HostTls {
  /** Extra trusted CA certificates (PEM text), added to the system roots. */
  ca?: string[];
  /** Client certificate/key pairs (PEM text). */
  clientCerts?: { cert: string; key: string }[];
  /** Accept any server certificate. */
  skipVerify?: boolean;
}

/** One endpoint serving a registry namespace: the registry itself or a mirror. */
export interface RegistryHost {
  scheme: 'http' | 'https';
  /** host[:port] */
  host: string;
  /** API root path, normally "/v2". */
  path: string;
  capabilities: readonly HostCapability[];
  /** Extra request headers for this host. */
  header: Record<string, string[]>;
  tls?: HostTls;
  /** Connection pool (with the host's TLS settings); a default one is used when absent. */
  agent?: HttpAgent;
  /** Attaches and refreshes credentials; anonymous when absent. */
  authorizer?: Authorizer;
}

/** Looks up the hosts serving a registry namespace (the domain of a reference), in order. */
export type RegistryHosts = (namespace: string) => Promise<RegistryHost[]>;

/** Credentials for a registry host; an empty username with a secret means an identity (refresh) token. */
export interface Credentials {
  username: string;
  secret: string;
}

export type CredentialsCallback = (host: string) => Credentials | undefined | Promise<Credentials | undefined>;
