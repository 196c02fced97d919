/**
 * Boot ordering. Follows containerd's plugin.Graph: registrations are walked in the order
 * they were listed, and before each one every registration of a type it requires is placed
 * first (recursively, again in listed order). Listing order therefore decides ties, which
 * keeps the boot order deterministic. Unlike containerd, a dependency cycle is reported
 * with its full path instead of a bare panic.
 */
import { InvalidArgumentError } from '../errdefs/errdefs.js';
import { uriOf, type Registration } from './types.js';

/** A registration list that cannot boot: duplicate ids, bad requires, cycles. */
export class PluginGraphError extends InvalidArgumentError {}

/** Checks each registration on its own and the list for duplicate URIs. */
export function validateRegistrations(regs: readonly Registration<any, any>[]): void {
  const seen = new Set<string>();
  for (const r of regs) {
    if (!r.type) throw new PluginGraphError(`plugin registration ${JSON.stringify(r.id)} has no type`);
    if (!r.id) throw new PluginGraphError(`plugin registration of type ${r.type} has no id`);
    const uri = uriOf(r);
    if (seen.has(uri)) throw new PluginGraphError(`plugin ${uri}: id already registered`);
    seen.add(uri);
    const req = r.requires ?? [];
    if (req.includes('*') && req.length > 1) {
      throw new PluginGraphError(`plugin ${uri}: "*" must be the only entry in requires`);
    }
    if (req.includes(r.type)) throw new PluginGraphError(`plugin ${uri} requires its own type ${r.type}`);
  }
}

/**
 * Orders the registrations for init. `disabled` URIs are left out (their dependents stay and
 * fail at lookup time, as in containerd). Throws PluginGraphError naming every plugin on a cycle.
 */
export function bootOrder<R extends Registration<any, any>>(regs: readonly R[], disabled: ReadonlySet<string> = new Set()): R[] {
  validateRegistrations(regs);
  const enabled = regs.filter((r) => !disabled.has(uriOf(r)));
  const ordered: R[] = [];
  const placed = new Set<R>();
  const onPath: R[] = [];

  const depsOf = (r: R): R[] => {
    const req = r.requires ?? [];
    if (req.includes('*')) return enabled.filter((o) => o !== r && !(o.requires ?? []).includes('*'));
    return enabled.filter((o) => o !== r && req.includes(o.type));
  };

  const place = (r: R) => {
    if (placed.has(r)) return;
    const at = onPath.indexOf(r);
    if (at >= 0) {
      const cycle = [...onPath.slice(at), r].map(uriOf).join(' -> ');
      throw new PluginGraphError(`circular plugin dependency: ${cycle}`);
    }
    onPath.push(r);
    for (const d of depsOf(r)) place(d);
    onPath.pop();
    placed.add(r);
    ordered.push(r);
  };
  for (const r of enabled) place(r);
  return ordered;
}

/** A node of the dependency graph as `berth plugins graph` renders it. */
export interface GraphNode {
  uri: string;
  dependsOn: string[];
}

/** The resolved dependency edges (type requires expanded to the URIs that satisfy them). */
export function dependencyEdges(regs: readonly { type: string; id: string; requires: string[] }[]): GraphNode[] {
  return regs.map((r) => ({
    uri: uriOf(r),
    dependsOn: r.requires.includes('*')
      ? regs.filter((o) => o !== r && !o.requires.includes('*')).map(uriOf)
      : regs.filter((o) => o !== r && r.requires.includes(o.type)).map(uriOf),
  }));
}
