/**
 * containerd's filter language, used by every List call and by event subscriptions:
 *   filters   := filter ('|' filter)*        any of the filters may match (OR)
 *   filter    := selector (',' selector)*    every selector must match (AND)
 *   selector  := fieldpath [op value]        a bare fieldpath tests presence
 *   op        := '==' | '!=' | '~='          equality, inequality, regular expression
 * Field path components and values may be quoted with "…" (escapes allowed) or `…` (raw).
 * Separate filter strings passed to one List call are ORed, as in containerd.
 */
import { InvalidArgumentError } from '../errdefs/errdefs.js';
import { applyRuntimeV8Flags } from '../sys/v8flags.js';

// `~=` patterns come from clients. containerd runs them with Go's linear-time regexps; V8's
// backtracking engine can spend minutes on a pattern like `(a+)+$`, stalling the whole daemon.
// V8's linear-time engine (the `l` flag) is enabled for them when the first one is compiled
// (see filterRegExp): a flag set at start-up would slow every later built-in module's load
// (core/sys/v8flags.ts).
let linearEngine = false;

/** Looks up a field path on an object; `present` false when it has no such field. */
export type Adaptor = (fieldpath: string[]) => { value: string; present: boolean };

export interface Selector {
  fieldpath: string[];
  op?: '==' | '!=' | '~=';
  value?: string;
  re?: RegExp;
}

/** A parsed filter: OR over AND-groups of selectors. An empty filter matches everything. */
export interface Filter {
  readonly groups: Selector[][];
  match(adaptor: Adaptor): boolean;
}

class Scanner {
  pos = 0;
  constructor(readonly input: string) {}
  get done() { return this.pos >= this.input.length; }
  peek() { return this.input[this.pos]; }
  skipSpace() { while (!this.done && /\s/.test(this.peek()!)) this.pos++; }
  /**
   * containerd's wording, which marks where the input went wrong: `filters: parse error:
   * [kind=="a" >|b|< ]: unexpected input: b` (just `[input]` when it ended too early).
   */
  fail(what: string, at = this.pos): never {
    const where = at < this.input.length
      ? `${this.input.slice(0, at)} >|${this.input[at]}|< ${this.input.slice(at + 1)}`
      : this.input;
    throw new InvalidArgumentError(`filters: parse error: [${where}]: ${what}`);
  }
  quoted(): string {
    const q = this.peek()!;
    const start = ++this.pos;
    if (q === '`') {
      const end = this.input.indexOf('`', start);
      if (end < 0) this.fail('unterminated quoted string');
      this.pos = end + 1;
      return this.input.slice(start, end);
    }
    let out = '';
    while (!this.done && this.peek() !== q) {
      let c = this.input[this.pos++]!;
      if (c === '\\') {
        if (this.done) this.fail('unterminated escape');
        const e = this.input[this.pos++]!;
        c = ({ n: '\n', t: '\t', r: '\r' } as Record<string, string>)[e] ?? e;
      }
      out += c;
    }
    if (this.done) this.fail('unterminated quoted string');
    this.pos++;
    return out;
  }
  field(): string {
    this.skipSpace();
    const c = this.peek();
    if (c === '"' || c === '`' || c === "'") return this.quoted();
    const m = /^[A-Za-z_][A-Za-z0-9_/-]*/.exec(this.input.slice(this.pos));
    if (!m) this.fail('expected field or quoted');
    this.pos += m[0].length;
    return m[0];
  }
  value(): string {
    this.skipSpace();
    const c = this.peek();
    if (c === '"' || c === '`' || c === "'") return this.quoted();
    const m = /^[^\s,|]+/.exec(this.input.slice(this.pos));
    if (!m) this.fail('expected value or quoted');
    this.pos += m[0].length;
    return m[0];
  }
}

function parseSelector(s: Scanner): Selector {
  const fieldpath = [s.field()];
  while (s.peek() === '.') {
    s.pos++;
    fieldpath.push(s.field());
  }
  s.skipSpace();
  const op = s.input.slice(s.pos, s.pos + 2);
  if (op === '==' || op === '!=' || op === '~=') {
    s.pos += 2;
    const value = s.value();
    const sel: Selector = { fieldpath, op, value };
    if (op === '~=') {
      try {
        sel.re = filterRegExp(value);
      } catch (err) {
        s.fail(`invalid regular expression ${JSON.stringify(value)}${err instanceof UnsafePatternError ? `: ${err.message}` : ''}`);
      }
    }
    return sel;
  }
  return { fieldpath };
}

class UnsafePatternError extends Error {}

/**
 * Compiles a client's pattern so that matching cannot backtrack catastrophically: on the
 * linear-time engine when it can run the pattern (everything but backreferences, lookarounds
 * and counted repetitions above 16), otherwise on the backtracking engine only if no
 * repeated group itself contains a repetition or an alternation (the shapes that blow up).
 */
export function filterRegExp(pattern: string): RegExp {
  if (!linearEngine) {
    applyRuntimeV8Flags(['--enable-experimental-regexp-engine']);
    linearEngine = true;
  }
  try {
    return new RegExp(pattern, 'l');
  } catch {
    // Not linear-time: checked below.
  }
  const re = new RegExp(pattern);
  if (hasRepeatedComplexGroup(pattern)) throw new UnsafePatternError('a repeated group with a repetition or alternation inside needs linear-time matching, which this pattern does not allow');
  return re;
}

/** Whether a group that contains a quantifier or `|` is itself followed by an unbounded or counted quantifier. */
function hasRepeatedComplexGroup(p: string): boolean {
  const groups: boolean[] = [];
  let complexClosed = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    const counted = c === '{' ? /^\{\d+(?:,\d*)?\}/.exec(p.slice(i))?.[0] : undefined;
    const repeats = c === '*' || c === '+' || (counted !== undefined && !/^\{[01](?:,[01])?\}$/.test(counted));
    if (repeats && complexClosed) return true;
    complexClosed = false;
    if (c === '\\') {
      i++;
    } else if (c === '[') {
      // Skip the class; `]` right after `[` or `[^` is literal.
      let j = i + 1;
      if (p[j] === '^') j++;
      if (p[j] === ']') j++;
      while (j < p.length && p[j] !== ']') j += p[j] === '\\' ? 2 : 1;
      i = j;
    } else if (c === '(') {
      groups.push(false);
    } else if (c === ')') {
      complexClosed = groups.pop() ?? false;
      if (complexClosed && groups.length) groups[groups.length - 1] = true;
    } else if ((c === '*' || c === '+' || c === '?' || c === '{' || c === '|') && groups.length) {
      groups[groups.length - 1] = true;
    }
  }
  return false;
}

function matchSelector(sel: Selector, adaptor: Adaptor): boolean {
  const { value, present } = adaptor(sel.fieldpath);
  if (!sel.op) return present;
  switch (sel.op) {
    case '==': return present && value === sel.value;
    case '!=': return !present || value !== sel.value;
    case '~=': return present && sel.re!.test(value);
  }
}

/** Parses one filter string (may contain `|` and `,`). */
export function parseFilter(input: string): Filter {
  const s = new Scanner(input);
  const groups: Selector[][] = [];
  s.skipSpace();
  if (!s.done) {
    let group: Selector[] = [parseSelector(s)];
    for (;;) {
      s.skipSpace();
      if (s.done) break;
      const c = s.peek();
      if (c !== ',' && c !== '|') s.fail(`unexpected input: ${c}`);
      s.pos++;
      if (c === ',') group.push(parseSelector(s));
      else { groups.push(group); group = [parseSelector(s)]; }
    }
    groups.push(group);
  }
  return makeFilter(groups);
}

function makeFilter(groups: Selector[][]): Filter {
  return {
    groups,
    match: (adaptor) => groups.length === 0 || groups.some((g) => g.every((sel) => matchSelector(sel, adaptor))),
  };
}

/** Parses every filter string and ORs them; no strings (or only empty ones) match everything. */
export function parseFilters(inputs: readonly string[] | undefined): Filter {
  const parsed = (inputs ?? []).filter((i) => i.trim() !== '').map(parseFilter);
  return makeFilter(parsed.flatMap((f) => f.groups));
}

/** Builds an adaptor over a record of top-level fields plus a `labels` map. */
export function recordAdaptor(fields: Record<string, string | undefined>, labels?: Record<string, string>): Adaptor {
  return (path) => {
    if (path.length === 0) return { value: '', present: false };
    if (path[0] === 'labels' && labels) {
      const key = path.slice(1).join('.');
      return key in labels ? { value: labels[key]!, present: true } : { value: '', present: false };
    }
    if (path.length === 1 && fields[path[0]!] !== undefined) return { value: fields[path[0]!]!, present: true };
    return { value: '', present: false };
  };
}
