/**
 * Why the replicas' weight fingerprints (indexed by rank) do not agree, or undefined when they
 * all equal each other (and `expected`, when given: the coordinator's own copy of the weights
 * a run starts from). Names the ranks of every group:
 * - without `expected`, smallest group first, so that a lone diverged replica comes first:
 *   "rank 2 holds 0f1e2d3c4b5a…, ranks 0, 1 hold a1b2c3d4e5f6…";
 * - with it, the groups that differ from it, then the coordinator's copy and who matches it:
 *   "rank 1 holds bbbbbbbbbbbb…; the coordinator's copy is a1b2c3d4e5f6… (matched by rank 0)".
 */
export function fingerprintMismatch(
  fingerprints: readonly string[],
  expected?: string,
): string | undefined {
  const groups = new Map<string, number[]>();
  fingerprints.forEach((fingerprint, rank) => {
    const ranks = groups.get(fingerprint) ?? [];
    ranks.push(rank);
    groups.set(fingerprint, ranks);
  });
  const agreed = groups.size === 1 ? fingerprints[0] : undefined;
  if (agreed !== undefined && (expected === undefined || agreed === expected)) return undefined;
  const short = (f: string) => `${f.slice(0, 12)}…`;
  const named = (ranks: number[]) => `rank${ranks.length > 1 ? 's' : ''} ${ranks.join(', ')}`;
  const parts = [...groups.entries()]
    .filter(([f]) => f !== expected)
    .sort((a, b) => a[1].length - b[1].length || a[1][0] - b[1][0])
    .map(([f, ranks]) => `${named(ranks)} ${ranks.length > 1 ? 'hold' : 'holds'} ${short(f)}`)
    .join(', ');
  if (expected === undefined) return parts;
  const matching = groups.get(expected);
  return `${parts}; the coordinator's copy is ${short(expected)} (${matching ? `matched by ${named(matching)}` : 'matched by no rank'})`;
}
