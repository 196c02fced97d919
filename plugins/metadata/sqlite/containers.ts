/**
 * Container records in the metadata database, with containerd's validation, update field
 * masks and messages. Containers are gc roots: each one keeps its snapshot and whatever its
 * labels reference alive; containers themselves are never collected.
 */
import type { Database } from 'better-sqlite3';
import type { AnyMessage } from '../../../core/events/exchange.js';
import type { Container, ContainerStore } from '../../../core/containers/containers.js';
import { AlreadyExistsError, InvalidArgumentError, messageOf, NotFoundError } from '../../../core/errdefs/errdefs.js';
import { parseFilters, type Adaptor } from '../../../core/filters/filters.js';
import { validateIdentifier } from '../../../core/identifiers/identifiers.js';
import { contentRefs, snapshotRefs, validateLabels } from '../../../core/metadata/labels.js';
import type { GcNode, GcSource, Labels, NamespaceResource, NamespaceStore } from '../../../core/metadata/metadata.js';
import { namespaceRequired, type RequestContext } from '../../../core/namespaces/namespaces.js';
import { parseLabels, stringifyLabels } from './database.js';

interface Row {
  namespace: string;
  id: string;
  labels: string;
  image: string;
  runtime_name: string;
  runtime_options_type: string | null;
  runtime_options: Buffer | null;
  spec_type: string | null;
  spec: Buffer | null;
  snapshotter: string;
  snapshot_key: string;
  extensions: string;
  created_at: number;
  updated_at: number;
}

type ContainerInput = Omit<Container, 'createdAt' | 'updatedAt'>;

/** Field paths a full replace (no mask) updates; runtime and snapshotter are immutable. */
const FULL_REPLACE = ['labels', 'spec', 'extensions', 'image', 'snapshotkey'];

const COLUMNS = 'namespace, id, labels, image, runtime_name, runtime_options_type, runtime_options, spec_type, spec, snapshotter, snapshot_key, extensions, created_at, updated_at';

const toAny = (typeUrl: string | null, value: Buffer | null): AnyMessage | undefined =>
  typeUrl === null ? undefined : { typeUrl, value: value ?? Buffer.alloc(0) };

const anyBytes = (a: AnyMessage | undefined): Buffer | null =>
  a ? Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength) : null;

function encodeExtensions(ext: Record<string, AnyMessage> | undefined): string {
  const out: Record<string, { t: string; v: string }> = {};
  for (const k of Object.keys(ext ?? {}).sort()) {
    const a = ext![k]!;
    out[k] = { t: a.typeUrl, v: Buffer.from(a.value).toString('base64') };
  }
  return JSON.stringify(out);
}

function decodeExtensions(text: string): Record<string, AnyMessage> {
  const raw = JSON.parse(text || '{}') as Record<string, { t: string; v: string }>;
  const out: Record<string, AnyMessage> = {};
  for (const [k, e] of Object.entries(raw)) out[k] = { typeUrl: e.t, value: Buffer.from(e.v, 'base64') };
  return out;
}

function fromRow(r: Row): Container {
  return {
    id: r.id,
    labels: parseLabels(r.labels),
    image: r.image,
    runtime: { name: r.runtime_name, options: toAny(r.runtime_options_type, r.runtime_options) },
    spec: toAny(r.spec_type, r.spec),
    snapshotter: r.snapshotter,
    snapshotKey: r.snapshot_key,
    extensions: decodeExtensions(r.extensions),
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  };
}

/** Drops empty label values: containerd never stores them (an empty value removes a label). */
function storedLabels(labels: Labels | undefined): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels ?? {})) if (v !== '') out[k] = v;
  return out;
}

/** Rewraps an InvalidArgumentError's context under a prefix, keeping the class. */
function invalid(prefix: string, err: unknown): Error {
  const msg = messageOf(err).replace(/: invalid argument$/, '');
  return new InvalidArgumentError(`${prefix}: ${msg}`);
}

function validateContainer(c: ContainerInput): void {
  try {
    validateIdentifier(c.id);
  } catch (err) {
    throw invalid('container.ID', err);
  }
  for (const k of Object.keys(c.extensions ?? {})) {
    if (k === '') throw new InvalidArgumentError('container.Extension keys must not be zero-length');
  }
  try {
    validateLabels(c.labels);
  } catch (err) {
    throw invalid('containers.Labels', err);
  }
  if (!c.runtime?.name) throw new InvalidArgumentError('container.Runtime.Name must be set');
  if (!c.spec) throw new InvalidArgumentError('container.Spec must be set');
  if (c.snapshotKey && !c.snapshotter) throw new InvalidArgumentError('container.Snapshotter must be set if container.SnapshotKey is set');
}

/**
 * Filter fields, exactly containerd's (metadata/adaptors.go): id, image, runtime.name,
 * labels.<key>. Anything else (snapshotter, say) is absent, so `==` never matches it.
 */
export function containerAdaptor(c: Container): Adaptor {
  return (path) => {
    const none = { value: '', present: false };
    const str = (v: string) => ({ value: v, present: v.length > 0 });
    switch (path[0]) {
      case 'id': return str(c.id);
      case 'image': return str(c.image);
      case 'runtime': return path[1] === 'name' ? str(c.runtime.name) : none;
      case 'labels': {
        const key = path.slice(1).join('.');
        return Object.prototype.hasOwnProperty.call(c.labels, key) ? { value: c.labels[key]!, present: true } : none;
      }
      default: return none;
    }
  };
}

export class SqliteContainerStore implements ContainerStore, NamespaceResource, GcSource {
  readonly kind = 'container' as const;
  private readonly q;

  constructor(private readonly db: Database, private readonly namespaces: NamespaceStore) {
    this.q = {
      get: db.prepare<[string, string], Row>(`SELECT ${COLUMNS} FROM containers WHERE namespace = ? AND id = ?`),
      list: db.prepare<[string], Row>(`SELECT ${COLUMNS} FROM containers WHERE namespace = ? ORDER BY id`),
      all: db.prepare<[], Row>(`SELECT ${COLUMNS} FROM containers`),
      any: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM containers WHERE namespace = ? LIMIT 1'),
      insert: db.prepare(`INSERT INTO containers (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      update: db.prepare(`UPDATE containers SET labels = ?, image = ?, spec_type = ?, spec = ?, snapshot_key = ?, extensions = ?, updated_at = ?
        WHERE namespace = ? AND id = ?`),
      delete: db.prepare<[string, string]>('DELETE FROM containers WHERE namespace = ? AND id = ?'),
    };
  }

  async get(ctx: RequestContext, id: string): Promise<Container> {
    const ns = namespaceRequired(ctx);
    const row = this.q.get.get(ns, id);
    if (!row) throw new NotFoundError(`container ${JSON.stringify(id)} in namespace ${JSON.stringify(ns)}`);
    return fromRow(row);
  }

  async list(ctx: RequestContext, filters: readonly string[]): Promise<Container[]> {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(filters);
    return this.q.list.all(ns).map(fromRow).filter((c) => filter.match(containerAdaptor(c)));
  }

  async create(ctx: RequestContext, c: ContainerInput): Promise<Container> {
    const ns = namespaceRequired(ctx);
    try {
      validateContainer(c);
    } catch (err) {
      throw invalid('create container failed validation', err);
    }
    const now = Date.now();
    const labels = storedLabels(c.labels);
    this.db.transaction(() => {
      this.namespaces.ensure(ns);
      try {
        this.q.insert.run(
          ns, c.id, stringifyLabels(labels), c.image ?? '', c.runtime.name,
          c.runtime.options?.typeUrl ?? null, anyBytes(c.runtime.options),
          c.spec!.typeUrl, anyBytes(c.spec),
          c.snapshotter ?? '', c.snapshotKey ?? '', encodeExtensions(c.extensions), now, now,
        );
      } catch (err) {
        if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new AlreadyExistsError(`container ${JSON.stringify(c.id)}`);
        throw err;
      }
    })();
    return this.get(ctx, c.id);
  }

  async update(ctx: RequestContext, c: ContainerInput, fieldpaths: readonly string[]): Promise<Container> {
    const ns = namespaceRequired(ctx);
    if (!c.id) throw new InvalidArgumentError('must specify a container id');
    this.db.transaction(() => {
      const row = this.q.get.get(ns, c.id);
      if (!row) throw new NotFoundError(`container ${JSON.stringify(c.id)}`);
      const cur = fromRow(row);
      let paths = fieldpaths;
      if (paths.length === 0) {
        paths = FULL_REPLACE;
        if (cur.snapshotter !== (c.snapshotter ?? '')) throw new InvalidArgumentError('container.Snapshotter field is immutable');
        if (cur.runtime.name !== (c.runtime?.name ?? '')) throw new InvalidArgumentError('container.Runtime.Name field is immutable');
      }
      const next: Container = { ...cur, labels: { ...cur.labels }, extensions: { ...cur.extensions } };
      for (const p of paths) {
        if (p.startsWith('labels.')) {
          const key = p.slice('labels.'.length);
          next.labels[key] = c.labels?.[key] ?? '';
          continue;
        }
        if (p.startsWith('extensions.')) {
          const key = p.slice('extensions.'.length);
          const v = c.extensions?.[key];
          if (v) next.extensions[key] = v;
          else delete next.extensions[key];
          continue;
        }
        switch (p) {
          case 'labels': next.labels = { ...(c.labels ?? {}) }; break;
          case 'spec': next.spec = c.spec; break;
          case 'extensions': next.extensions = { ...(c.extensions ?? {}) }; break;
          case 'image': next.image = c.image ?? ''; break;
          case 'snapshotkey': next.snapshotKey = c.snapshotKey ?? ''; break;
          default: throw new InvalidArgumentError(`cannot update ${JSON.stringify(p)} field on ${JSON.stringify(c.id)}`);
        }
      }
      next.labels = storedLabels(next.labels);
      try {
        validateContainer(next);
      } catch (err) {
        throw invalid('update failed validation', err);
      }
      this.q.update.run(
        stringifyLabels(next.labels), next.image, next.spec!.typeUrl, anyBytes(next.spec), next.snapshotKey,
        encodeExtensions(next.extensions), Math.max(Date.now(), cur.updatedAt.getTime()), ns, c.id,
      );
    })();
    return this.get(ctx, c.id);
  }

  async delete(ctx: RequestContext, id: string): Promise<void> {
    const ns = namespaceRequired(ctx);
    const res = this.q.delete.run(ns, id);
    if (res.changes === 0) throw new NotFoundError(`container ${id}`);
  }

  // NamespaceResource
  holdings(namespace: string): string[] {
    return this.q.any.get(namespace) ? ['containers'] : [];
  }

  // GcSource: every container is a root; its edges are its snapshot and its label references.
  *roots(): Iterable<GcNode> {
    for (const r of this.q.all.all()) yield { kind: 'container', namespace: r.namespace, id: r.id };
  }

  *references(node: GcNode): Iterable<GcNode> {
    const r = this.q.get.get(node.namespace, node.id);
    if (!r) return;
    if (r.snapshotter) yield { kind: 'snapshot', namespace: r.namespace, id: `${r.snapshotter}/${r.snapshot_key}` };
    const labels = parseLabels(r.labels);
    for (const digest of contentRefs(labels)) yield { kind: 'content', namespace: r.namespace, id: digest };
    for (const s of snapshotRefs(labels)) yield { kind: 'snapshot', namespace: r.namespace, id: `${s.snapshotter}/${s.key}` };
  }

  *all(): Iterable<GcNode> {
    // Containers are only ever removed by their owners, never collected.
  }

  remove(): void {
    // Nothing to sweep: see all().
  }
}
