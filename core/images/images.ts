/** Images: a name pointing at a target descriptor (manifest or index) in a namespace. */
import type { Labels } from '../metadata/metadata.js';
import type { RequestContext } from '../namespaces/namespaces.js';
import { PluginType, serviceRef } from '../plugin/types.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  /** Platform, when the descriptor sits in an index. */
  platform?: Platform;
  urls?: string[];
}

export interface Image {
  name: string;
  labels: Labels;
  target: Descriptor;
  createdAt: Date;
  updatedAt: Date;
}

export type ImageInput = Omit<Image, 'createdAt' | 'updatedAt'>;

export interface ImageStore {
  get(ctx: RequestContext, name: string): Promise<Image>;
  /** Filters: name, target.digest, target.mediatype, labels.<key> (containerd's fields). */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Image[]>;
  /** ALREADY_EXISTS if the name is taken. */
  create(ctx: RequestContext, image: ImageInput): Promise<Image>;
  /**
   * Field paths: labels, labels.<key>, target, annotations, annotations.<key> (none = replace
   * everything but the creation time).
   */
  update(ctx: RequestContext, image: ImageInput, fieldpaths: readonly string[]): Promise<Image>;
  /** `sync` (service level): wait for the garbage collection the deletion triggers. */
  delete(ctx: RequestContext, name: string, sync?: boolean): Promise<void>;
}

/**
 * The images service's local API (io.containerd.service.v1.images-service): the metadata
 * store plus /images/* events and synchronous gc on delete.
 */
export interface ImagesService extends ImageStore {}

export const ImagesServiceRef = serviceRef<ImagesService>(PluginType.Service, 'images-service');

/** The event payload package of /images/* topics (not containerd.events). */
export const ImageEventType = Object.freeze({
  create: 'containerd.services.images.v1.ImageCreate',
  update: 'containerd.services.images.v1.ImageUpdate',
  delete: 'containerd.services.images.v1.ImageDelete',
});

export * from './mediatypes.js';
export * from './identity.js';
