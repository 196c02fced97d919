/**
 * Differs: apply a layer (a content blob) onto mounts, and compute the layer between two
 * mounted trees. The walking differ (io.containerd.differ.v1.walking) implements both; the
 * diff service (io.containerd.service.v1.diff-service) tries its configured differs in order,
 * moving to the next one when a differ answers NOT_IMPLEMENTED.
 */
import type { AnyMessage } from '../events/exchange.js';
import type { Descriptor } from '../images/images.js';
import type { Labels } from '../metadata/metadata.js';
import type { Mount } from '../mount/types.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import { PluginType, serviceRef } from '../plugin/types.js';

export interface ApplyOptions {
  /** Stream processor payloads (ApplyRequest.payloads); berth has no processors that use them. */
  payloads?: Record<string, AnyMessage>;
}

export interface DiffOptions {
  /** Media type of the layer to write: ...layer.v1.tar+gzip (default) or ...layer.v1.tar. */
  mediaType?: string;
  /** Content ingest ref (default: a unique one). */
  ref?: string;
  /** Labels committed with the blob (containerd.io/uncompressed is added for compressed layers). */
  labels?: Labels;
}

export interface Applier {
  /**
   * Applies the layer blob `desc` (read from content) onto `mounts` and returns the
   * uncompressed layer's descriptor: media type ...layer.v1.tar, digest = diff id, size =
   * uncompressed length. NOT_IMPLEMENTED when this applier cannot handle the media type.
   */
  apply(ctx: RequestContext, desc: Descriptor, mounts: readonly Mount[], opts?: ApplyOptions): Promise<Descriptor>;
}

export interface Comparer {
  /** Writes the changes from `lower` to `upper` as a layer into content and returns its descriptor. */
  compare(ctx: RequestContext, lower: readonly Mount[], upper: readonly Mount[], opts?: DiffOptions): Promise<Descriptor>;
}

export interface Differ extends Applier, Comparer {}

declare module '../plugin/types.js' {
  interface PluginTypeMap {
    [PluginType.Differ]: Differ;
  }
}

/** The diff service: the configured differs in order. */
export const DiffServiceRef = serviceRef<Differ>(PluginType.Service, 'diff-service');

/** Media type of what Apply returns (the uncompressed layer). */
export const UNCOMPRESSED_LAYER = 'application/vnd.oci.image.layer.v1.tar';
