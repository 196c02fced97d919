/**
 * Image records in the metadata database with containerd's validation, update field masks
 * and messages. Only what containerd stores of the target is kept (media type, digest, size,
 * annotations). Images are gc roots: each keeps its target blob and whatever its labels
 * reference alive; images themselves are never collected.
 */
import type { Database } from 'better-sqlite3';
import { digestProblem } from '../../../core/content/content.js';
import { AlreadyExistsError, InvalidArgumentError, messageOf, NotFoundError } from '../../../core/errdefs/errdefs.js';
import { parseFilters, type Adaptor } from '../../../core/filters/filters.js';
import type { Descriptor, Image, ImageInput, ImageStore } from '../../../core/images/images.js';
import { contentRefs, snapshotRefs, validateLabels } from '../../../core/metadata/labels.js';
import type { GcNode, GcSource, Labels, NamespaceResource, NamespaceStore } from '../../../core/metadata/metadata.js';
import { namespaceRequired, type RequestContext } from '../../../core/namespaces/namespaces.js';
import { parseLabels, stringifyLabels } from './database.js';

interface Row {
  namespace: string;
  name: string;
  media_type: string;
  digest: string;
  size: number;
  annotations: string;
  labels: string;
  created_at: number;
  updated_at: number;
}

const COLUMNS = 'namespace, name, media_type, digest, size, annotations, labels, created_at, updated_at';

function fromRow(r: Row): Image {
  const annotations = parseLabels(r.annotations);
  const target: Descriptor = { mediaType: r.media_type, digest: r.digest, size: r.size };
  if (Object.keys(annotations).length) target.annotations = annotations;
  return {
    name: r.name,
    labels: parseLabels(r.labels),
    target,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

/** containerd never stores empty values: an empty value in a map removes the key. */
function nonEmpty(m: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (v !== '' && v !== undefined) out[k] = v;
  return out;
}

/** Validates what is stored, with containerd's messages. */
export function validateImage(image: ImageInput): void {
  if (!image.name) throw new InvalidArgumentError('image name must not be empty');
  try {
    validateLabels(image.labels);
  } catch (err) {
    throw new InvalidArgumentError(`image.Labels: ${messageOf(err).replace(/: invalid argument$/, '')}`);
  }
  const t = image.target;
  const problem = digestProblem(t?.digest ?? '');
  if (problem) throw new InvalidArgumentError(`Target.Digest ${JSON.stringify(t?.digest ?? '')} invalid: ${problem}`);
  if (!(t.size > 0)) throw new InvalidArgumentError('Target.Size must be greater than zero');
  if (!t.mediaType) throw new InvalidArgumentError('Target.MediaType must be set');
}

/** Filter fields, exactly containerd's: name, target.digest, target.mediatype, labels.<key>. */
export function imageAdaptor(image: Image): Adaptor {
  return (path) => {
    const none = { value: '', present: false };
    const str = (v: string) => ({ value: v, present: v.length > 0 });
    const inMap = (m: Record<string, string> | undefined) => {
      const key = path.slice(1).join('.');
      return m && Object.prototype.hasOwnProperty.call(m, key) ? { value: m[key]!, present: true } : none;
    };
    switch (path[0]) {
      case 'name':
        return str(image.name);
      case 'target':
        if (path.length < 2) return none;
        if (path[1] === 'digest') return str(image.target.digest);
        if (path[1] === 'mediatype') return str(image.target.mediaType);
        return none;
      case 'labels':
        return inMap(image.labels);
      default:
        return none;
    }
  };
}

export class SqliteImageStore implements ImageStore, NamespaceResource, GcSource {
  readonly kind = 'image' as const;
  private readonly q;

  constructor(private readonly db: Database, private readonly namespaces: NamespaceStore) {
    this.q = {
      get: db.prepare<[string, string], Row>(`SELECT ${COLUMNS} FROM images WHERE namespace = ? AND name = ?`),
      list: db.prepare<[string], Row>(`SELECT ${COLUMNS} FROM images WHERE namespace = ? ORDER BY name`),
      all: db.prepare<[], Row>(`SELECT ${COLUMNS} FROM images`),
      any: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM images WHERE namespace = ? LIMIT 1'),
      insert: db.prepare(`INSERT INTO images (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      update: db.prepare(`UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ?, labels = ?, updated_at = ?
        WHERE namespace = ? AND name = ?`),
      delete: db.prepare<[string, string]>('DELETE FROM images WHERE namespace = ? AND name = ?'),
    };
  }

  async get(ctx: RequestContext, name: string): Promise<Image> {
    const ns = namespaceRequired(ctx);
    const row = this.q.get.get(ns, name);
    if (!row) throw new NotFoundError(`image ${JSON.stringify(name)}`);
    return fromRow(row);
  }

  async list(ctx: RequestContext, filters: readonly string[]): Promise<Image[]> {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(filters);
    return this.q.list.all(ns).map(fromRow).filter((i) => filter.match(imageAdaptor(i)));
  }

  async create(ctx: RequestContext, image: ImageInput): Promise<Image> {
    const ns = namespaceRequired(ctx);
    validateImage(image);
    const labels = nonEmpty(image.labels);
    const annotations = nonEmpty(image.target.annotations);
    const now = Date.now();
    this.db.transaction(() => {
      this.namespaces.ensure(ns);
      try {
        this.q.insert.run(ns, image.name, image.target.mediaType, image.target.digest, image.target.size,
          stringifyLabels(annotations), stringifyLabels(labels), now, now);
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new AlreadyExistsError(`image ${JSON.stringify(image.name)}`);
        throw err;
      }
    })();
    return this.get(ctx, image.name);
  }

  async update(ctx: RequestContext, image: ImageInput, fieldpaths: readonly string[]): Promise<Image> {
    const ns = namespaceRequired(ctx);
    if (!image.name) throw new InvalidArgumentError('image name is required for update');
    this.db.transaction(() => {
      const row = this.q.get.get(ns, image.name);
      if (!row) throw new NotFoundError(`image ${JSON.stringify(image.name)}`);
      const cur = fromRow(row);
      let next: ImageInput;
      if (fieldpaths.length === 0) {
        next = { name: image.name, labels: { ...(image.labels ?? {}) }, target: { ...image.target, annotations: { ...(image.target?.annotations ?? {}) } } };
      } else {
        next = { name: cur.name, labels: { ...cur.labels }, target: { ...cur.target, annotations: { ...(cur.target.annotations ?? {}) } } };
        for (const p of fieldpaths) {
          if (p.startsWith('labels.')) {
            const key = p.slice('labels.'.length);
            next.labels[key] = image.labels?.[key] ?? '';
            continue;
          }
          if (p.startsWith('annotations.')) {
            const key = p.slice('annotations.'.length);
            next.target.annotations![key] = image.target?.annotations?.[key] ?? '';
            continue;
          }
          switch (p) {
            case 'labels':
              next.labels = { ...(image.labels ?? {}) };
              break;
            case 'target':
              // The target is replaced as a unit (annotations included), as containerd does.
              next.target = { ...image.target, annotations: { ...(image.target?.annotations ?? {}) } };
              break;
            case 'annotations':
              next.target.annotations = { ...(image.target?.annotations ?? {}) };
              break;
            default:
              throw new InvalidArgumentError(`cannot update ${JSON.stringify(p)} field on image ${JSON.stringify(image.name)}`);
          }
        }
      }
      validateImage(next);
      this.q.update.run(
        next.target.mediaType, next.target.digest, next.target.size,
        stringifyLabels(nonEmpty(next.target.annotations)), stringifyLabels(nonEmpty(next.labels)),
        Math.max(Date.now(), cur.updatedAt.getTime()), ns, image.name,
      );
    })();
    return this.get(ctx, image.name);
  }

  async delete(ctx: RequestContext, name: string): Promise<void> {
    const ns = namespaceRequired(ctx);
    const res = this.q.delete.run(ns, name);
    if (res.changes === 0) throw new NotFoundError(`image ${JSON.stringify(name)}`);
  }

  // NamespaceResource
  holdings(namespace: string): string[] {
    return this.q.any.get(namespace) ? ['images'] : [];
  }

  // GcSource: every image is a root; its edges are its target blob and its label references.
  *roots(): Iterable<GcNode> {
    for (const r of this.q.all.all()) yield { kind: 'image', namespace: r.namespace, id: r.name };
  }

  *references(node: GcNode): Iterable<GcNode> {
    const r = this.q.get.get(node.namespace, node.id);
    if (!r) return;
    yield { kind: 'content', namespace: r.namespace, id: r.digest };
    const labels: Labels = parseLabels(r.labels);
    for (const digest of contentRefs(labels)) yield { kind: 'content', namespace: r.namespace, id: digest };
    for (const s of snapshotRefs(labels)) yield { kind: 'snapshot', namespace: r.namespace, id: `${s.snapshotter}/${s.key}` };
  }

  *all(): Iterable<GcNode> {
    // Images are only removed by clients, never collected.
  }

  remove(): void {
    // Nothing to sweep: see all().
  }
}
