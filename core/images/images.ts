/** Images: a name pointing at a target descriptor (manifest or index) in a namespace. */
import type { Labels } from '../metadata/metadata.js';
import type { RequestContext } from '../namespaces/namespaces.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  /** Platform, when the descriptor sits in an index. */
  platform?: { os: string; architecture: string; variant?: string };
  urls?: string[];
}

export interface Image {
  name: string;
  labels: Labels;
  target: Descriptor;
  createdAt: Date;
  updatedAt: Date;
}

export interface ImageStore {
  get(ctx: RequestContext, name: string): Promise<Image>;
  /** Filters: name, target.digest, target.mediatype, labels.<key>. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Image[]>;
  /** ALREADY_EXISTS if the name is taken. */
  create(ctx: RequestContext, image: Omit<Image, 'createdAt' | 'updatedAt'>): Promise<Image>;
  /** Field paths: labels, labels.<key>, target, annotations (none = replace all updatable fields). */
  update(ctx: RequestContext, image: Omit<Image, 'createdAt' | 'updatedAt'>, fieldpaths: readonly string[]): Promise<Image>;
  delete(ctx: RequestContext, name: string, sync?: boolean): Promise<void>;
}
