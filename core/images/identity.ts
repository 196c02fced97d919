/** Chain IDs (OCI image-spec identity): the snapshot name of a stack of layers. */
import { createHash } from 'node:crypto';

/**
 * ChainID(L0) = DiffID(L0); ChainID(L0…Ln) = sha256(ChainID(L0…Ln-1) + " " + DiffID(Ln)).
 * An empty list has no chain id ('').
 */
export function chainID(diffIDs: readonly string[]): string {
  let chain = '';
  for (const d of diffIDs) {
    chain = chain === '' ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
  }
  return chain;
}

/** The chain ids of every prefix: chainIDs([a, b]) = [chainID([a]), chainID([a, b])]. */
export function chainIDs(diffIDs: readonly string[]): string[] {
  const out: string[] = [];
  let chain = '';
  for (const d of diffIDs) {
    chain = chain === '' ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
    out.push(chain);
  }
  return out;
}
