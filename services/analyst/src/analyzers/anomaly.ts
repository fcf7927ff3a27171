/**
 * Outliers in the batch, each with the reason a person can check.
 *
 * Two views: per feature, a robust z-score (distance from the median in units of the median absolute
 * deviation, so the outliers themselves cannot hide by inflating the spread; Iglewicz and Hoaglin's
 * 3.5 cut-off); and over all features together, an isolation forest, which also catches unusual
 * combinations. Features: the numeric fields and text statistics of the `features` dataset, and, from
 * the `embeddings` dataset, how far a text is from its nearest neighbours (a text unlike the others)
 * and the embedding model's coverage of it (low: another language, another domain, gibberish).
 */
import { tokenize } from '@jetflow/models';
import { mulberry32 } from '@jetflow/random';
import { CHUNK_SIZE, byId, checkpoint, snippet, type Analyzer, type InputRecord } from './types.js';

const Z_THRESHOLD = 3.5;
const ISOLATION_THRESHOLD = 0.75;
const NEIGHBOURS = 5;
const MAX_REFERENCE = 1000;
const MAX_LISTED = 50;
const NEIGHBOUR_FEATURE = 'embedding.neighbourDistance';
const COVERAGE_FEATURE = 'embedding.coverage';
// Only one side of these means trouble: far from every neighbour; little of the text known.
const HIGH_ONLY = new Set([NEIGHBOUR_FEATURE]);
const LOW_ONLY = new Set([COVERAGE_FEATURE]);
// A z-score alone is not enough here: coverage clusters tightly near 0.9, so a text with a couple of
// brand names would stand out; it matters only once most words are unknown.
const ABSOLUTE: Record<string, (v: number) => boolean> = { [COVERAGE_FEATURE]: (v) => v < 0.5 };
const HINTS: Record<string, string> = {
  [NEIGHBOUR_FEATURE]: ': the text is unlike the other records',
  [COVERAGE_FEATURE]: ': the models know little of this text (another language or domain, or gibberish?)',
};
// Text statistics worth flagging on their own; the rest of the features dataset is fine-grained
// style (exclamation marks, capitals) that makes noise as a reason.
const TEXT_FEATURES = ['text.length', 'text.tokens'];

export interface Reason {
  feature: string;
  value: number;
  median: number;
  robustZ: number;
  direction: 'high' | 'low';
  logScale: boolean;
}

interface Scale {
  median: number;
  scale: number;
  /** Set for a right-skewed, (almost) always positive feature: positive values are judged on a log axis. */
  log: { median: number; scale: number } | null;
}

function quantile(sorted: readonly number[], q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const a = sorted[lo] ?? 0;
  const b = sorted[Math.min(lo + 1, sorted.length - 1)] ?? a;
  return a + (b - a) * (pos - lo);
}

/** Quartile (Bowley) skewness: 0 for symmetric data, robust to the outliers we are looking for. */
function bowley(sorted: readonly number[]): number {
  const [p25, p50, p75] = [quantile(sorted, 0.25), quantile(sorted, 0.5), quantile(sorted, 0.75)];
  return p75 > p25 ? (p75 + p25 - 2 * p50) / (p75 - p25) : 0;
}

/**
 * Median and a robust spread: 1.4826 MAD (= sigma for normal data), falling back to IQR / 1.349 and
 * then to the mean absolute deviation when over half the values are equal (ratings often are).
 */
function medianSpread(sorted: readonly number[]): { median: number; scale: number } | null {
  const median = quantile(sorted, 0.5);
  const dev = sorted.map((v) => Math.abs(v - median)).sort((a, b) => a - b);
  const mad = quantile(dev, 0.5) * 1.4826;
  const iqr = (quantile(sorted, 0.75) - quantile(sorted, 0.25)) / 1.349;
  const meanAbs = (dev.reduce((s, d) => s + d, 0) / dev.length) * 1.2533;
  const scale = mad > 0 ? mad : iqr > 0 ? iqr : meanAbs;
  return scale > 0 ? { median, scale } : null;
}

/**
 * Amounts, prices and lengths are right-skewed: on a linear axis their ordinary long tail looks
 * like a string of outliers. When nearly all values are positive and the log makes the quartiles
 * more symmetric, positive values are judged on the log axis (a non-positive one keeps the linear
 * verdict, which for such a feature is an outlier in itself).
 */
function robustScale(values: readonly number[]): Scale | null {
  if (values.length < 5) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const linear = medianSpread(sorted);
  if (!linear) return null;
  const positive = sorted.filter((v) => v > 0);
  let log: Scale['log'] = null;
  if (positive.length >= 0.98 * sorted.length) {
    const logs = positive.map(Math.log);
    const skewLinear = bowley(sorted);
    if (skewLinear > 0.02 && Math.abs(bowley(logs)) < skewLinear) log = medianSpread(logs);
  }
  return { ...linear, log };
}

/** Robust z of a value, and whether it was taken on the log axis. */
function zOf(v: number, s: Scale): { z: number; logScale: boolean } {
  if (s.log && v > 0) return { z: (Math.log(v) - s.log.median) / s.log.scale, logScale: true };
  return { z: (v - s.median) / s.scale, logScale: false };
}

// ---- a small seeded isolation forest (Liu, Ting and Zhou 2008): deterministic, so one batch gives one report

/** Average path length of an unsuccessful search in a binary search tree of n points. */
function c(n: number): number {
  return n > 2 ? 2 * (Math.log(n - 1) + 0.5772156649) - (2 * (n - 1)) / n : n === 2 ? 1 : 0;
}

type Tree = { size: number } | { feature: number; split: number; left: Tree; right: Tree };

function grow(rows: number[][], depth: number, maxDepth: number, rng: () => number): Tree {
  if (depth >= maxDepth || rows.length <= 1) return { size: rows.length };
  const dims = rows[0]?.length ?? 0;
  // Pick a feature that is not constant among these rows (give up after a few tries).
  for (let attempt = 0; attempt < dims * 2; attempt++) {
    const f = Math.floor(rng() * dims);
    let lo = Infinity;
    let hi = -Infinity;
    for (const r of rows) {
      const v = r[f] ?? 0;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    if (hi <= lo) continue;
    const split = lo + rng() * (hi - lo);
    const left = rows.filter((r) => (r[f] ?? 0) < split);
    const right = rows.filter((r) => (r[f] ?? 0) >= split);
    return { feature: f, split, left: grow(left, depth + 1, maxDepth, rng), right: grow(right, depth + 1, maxDepth, rng) };
  }
  return { size: rows.length };
}

function pathLength(t: Tree, x: number[], depth = 0): number {
  if ('size' in t) return depth + c(t.size);
  return pathLength((x[t.feature] ?? 0) < t.split ? t.left : t.right, x, depth + 1);
}

function isolationScores(data: number[][], trees = 100, seed = 42): number[] {
  const rng = mulberry32(seed);
  const psi = Math.min(256, data.length);
  const maxDepth = Math.ceil(Math.log2(Math.max(psi, 2)));
  const forest: Tree[] = [];
  for (let t = 0; t < trees; t++) {
    const sample: number[][] = [];
    const idx = data.map((_, i) => i);
    for (let i = 0; i < psi; i++) {
      const j = i + Math.floor(rng() * (idx.length - i));
      [idx[i], idx[j]] = [idx[j] as number, idx[i] as number];
      sample.push(data[idx[i] as number] as number[]);
    }
    forest.push(grow(sample, 0, maxDepth, rng));
  }
  const cn = c(psi);
  return data.map((x) => 2 ** (-(forest.reduce((s, t) => s + pathLength(t, x), 0) / trees) / (cn || 1)));
}

// ----

/** Numeric features per record: from the features dataset when there is one, else the basics from the records. */
function featureTable(records: readonly InputRecord[], rows: Map<string, { values: Record<string, number | null> }>): Map<string, Array<number | null>> {
  const table = new Map<string, Array<number | null>>();
  const put = (name: string, i: number, v: number | null | undefined) => {
    let col = table.get(name);
    if (!col) table.set(name, (col = new Array<number | null>(records.length).fill(null)));
    col[i] = typeof v === 'number' && Number.isFinite(v) ? v : null;
  };
  records.forEach((r, i) => {
    const row = rows.get(r.id);
    if (row) {
      for (const [name, v] of Object.entries(row.values)) if (name.startsWith('fields.') || TEXT_FEATURES.includes(name)) put(name, i, v);
    } else {
      put('text.length', i, (r.text ?? '').trim().length);
      put('text.tokens', i, tokenize(r.text ?? '').length);
      for (const [k, v] of Object.entries(r.fields ?? {})) if (typeof v === 'number' || v === null) put(`fields.${k}`, i, v);
    }
  });
  return table;
}

/**
 * 1 - mean cosine similarity to the k nearest other records; 1 for an empty vector. Large batches
 * compare against an evenly spaced sample of MAX_REFERENCE records, so the cost stays linear.
 *
 * The reference vectors sit in one flat array, and four records go through it against two references
 * at a time: eight dot products from six loads per dimension (the loads, not the multiplications,
 * were the cost). Each dot product still adds its terms in dimension order from 0, and is divided by
 * the same product of norms, so every similarity is the same double a pairwise loop gives
 * (analyzers.test.ts checks it against one).
 */
export function neighbourDistances(vectors: ReadonlyArray<readonly number[] | undefined>, k: number, maxReference = MAX_REFERENCE): Array<number | null> {
  const norms = vectors.map((v) => (v ? Math.hypot(...v) : 0));
  const candidates = vectors.map((_, j) => j).filter((j) => (norms[j] ?? 0) > 0);
  const stride = Math.max(1, candidates.length / maxReference);
  const refs = Int32Array.from({ length: Math.min(candidates.length, maxReference) }, (_, r) => candidates[Math.floor(r * stride)] as number);
  const dim = vectors.reduce((m, v) => Math.max(m, v?.length ?? 0), 0);
  const nRefs = refs.length;
  const width = nRefs + (nRefs % 2); // an even count: a zero reference pads the last pair, its products unread
  const mat = new Float64Array(width * dim);
  const refNorms = new Float64Array(nRefs);
  refs.forEach((j, r) => {
    const w = vectors[j] as readonly number[];
    for (let d = 0; d < dim; d++) mat[r * dim + d] = w[d] ?? 0;
    refNorms[r] = norms[j] as number;
  });

  const out: Array<number | null> = vectors.map((v) => (v ? 1 : null));
  const rows = candidates; // the records with a non-empty vector; the others keep null (none) or 1 (empty)
  const BLOCK = 4;
  const xs = new Float64Array(BLOCK * dim);
  const dots = new Float64Array(BLOCK * width);
  const top = new Float64Array(Math.max(1, k)); // the k largest similarities, descending
  const x1 = dim;
  const x2 = 2 * dim;
  const x3 = 3 * dim;
  for (let b = 0; b < rows.length; b += BLOCK) {
    const m = Math.min(BLOCK, rows.length - b);
    xs.fill(0);
    for (let q = 0; q < m; q++) {
      const v = vectors[rows[b + q] as number] as readonly number[];
      for (let d = 0; d < dim; d++) xs[q * dim + d] = v[d] ?? 0;
    }
    for (let r = 0; r < width; r += 2) {
      const at = r * dim;
      const bt = at + dim;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      let b0 = 0;
      let b1 = 0;
      let b2 = 0;
      let b3 = 0;
      for (let d = 0; d < dim; d++) {
        const w = mat[at + d] as number;
        const u = mat[bt + d] as number;
        const p0 = xs[d] as number;
        const p1 = xs[x1 + d] as number;
        const p2 = xs[x2 + d] as number;
        const p3 = xs[x3 + d] as number;
        a0 += p0 * w;
        a1 += p1 * w;
        a2 += p2 * w;
        a3 += p3 * w;
        b0 += p0 * u;
        b1 += p1 * u;
        b2 += p2 * u;
        b3 += p3 * u;
      }
      dots[r] = a0;
      dots[width + r] = a1;
      dots[2 * width + r] = a2;
      dots[3 * width + r] = a3;
      dots[r + 1] = b0;
      dots[width + r + 1] = b1;
      dots[2 * width + r + 1] = b2;
      dots[3 * width + r + 1] = b3;
    }
    for (let q = 0; q < m; q++) {
      const i = rows[b + q] as number;
      const ni = norms[i] as number;
      let found = 0;
      for (let r = 0; r < nRefs; r++) {
        if (refs[r] === i) continue;
        const sim = (dots[q * width + r] as number) / (ni * (refNorms[r] as number));
        if (found < k || sim > (top[found - 1] as number)) {
          let at = found < k ? found++ : k - 1;
          while (at > 0 && (top[at - 1] as number) < sim) {
            top[at] = top[at - 1] as number;
            at--;
          }
          top[at] = sim;
        }
      }
      let sum = 0;
      for (let t = 0; t < found; t++) sum += top[t] as number;
      out[i] = found ? 1 - sum / found : null;
    }
  }
  return out;
}

const r2 = (x: number) => Math.round(x * 100) / 100;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

export const analyzer: Analyzer = {
  name: 'anomaly',
  description: 'Outlying records by robust z-score per feature (numeric fields, text length, distance to similar texts) and isolation forest, with the reason.',
  async analyze({ records, datasets }, ctx) {
    const featureRows = byId(datasets.features);
    const table = featureTable(records, featureRows);
    await checkpoint(ctx.signal);

    if (datasets.embeddings?.length) {
      const emb = byId(datasets.embeddings);
      const vectors = records.map((r) => emb.get(r.id)?.vector);
      table.set(NEIGHBOUR_FEATURE, neighbourDistances(vectors, NEIGHBOURS));
      const coverage = records.map((r) => emb.get(r.id)?.coverage ?? null);
      if (coverage.some((c) => c !== null)) table.set(COVERAGE_FEATURE, coverage);
      await checkpoint(ctx.signal);
    }

    const names = [...table.keys()];
    const scales = new Map<string, Scale>();
    for (const name of names) {
      const s = robustScale((table.get(name) ?? []).filter((v): v is number => v !== null));
      if (s) scales.set(name, s);
    }
    const used = names.filter((n) => scales.has(n));

    // Robust z per record and feature; the embedding distance only counts when large.
    const zs: number[][] = records.map(() => []);
    const reasons: Reason[][] = records.map(() => []);
    // Per record, the largest |z| that could be a reason (a gated feature within its limit cannot).
    const maxZ = records.map(() => 0);
    for (let start = 0; start < records.length; start += CHUNK_SIZE) {
      await checkpoint(ctx.signal);
      for (let i = start; i < Math.min(records.length, start + CHUNK_SIZE); i++) {
        for (const name of used) {
          const s = scales.get(name) as Scale;
          const v = table.get(name)?.[i] ?? null;
          const zz = v === null ? { z: 0, logScale: false } : zOf(v, s);
          const z = HIGH_ONLY.has(name) ? Math.max(0, zz.z) : LOW_ONLY.has(name) ? Math.min(0, zz.z) : zz.z;
          zs[i]!.push(z);
          const eligible = v !== null && (ABSOLUTE[name]?.(v) ?? true);
          if (eligible) maxZ[i] = Math.max(maxZ[i] ?? 0, Math.abs(z));
          if (eligible && Math.abs(z) >= Z_THRESHOLD) {
            reasons[i]!.push({ feature: name, value: v, median: r3(s.median), robustZ: r2(z), direction: z > 0 ? 'high' : 'low', logScale: zz.logScale });
          }
        }
        reasons[i]!.sort((a, b) => Math.abs(b.robustZ) - Math.abs(a.robustZ));
      }
    }

    await checkpoint(ctx.signal);
    // The forest sees clipped z-scores: scale-free, and one absurd value cannot squeeze the rest together.
    const iso = used.length && records.length >= 8 ? isolationScores(zs.map((row) => row.map((z) => Math.max(-50, Math.min(50, z))))) : records.map(() => 0);

    const perRecord = records.map((r, i) => {
      const isolationScore = r3(iso[i] ?? 0);
      return {
        id: r.id,
        score: r2(maxZ[i] ?? 0),
        isolationScore,
        outlier: (maxZ[i] ?? 0) >= Z_THRESHOLD || isolationScore >= ISOLATION_THRESHOLD,
      };
    });
    const textOf = new Map(records.map((r) => [r.id, r.text ?? '']));
    const outliers = perRecord
      .map((p, i) => ({ ...p, i }))
      .filter((p) => p.outlier)
      .sort((a, b) => b.score - a.score || b.isolationScore - a.isolationScore || a.id.localeCompare(b.id))
      .map(({ i, outlier: _o, ...p }) => {
        const rs = reasons[i] ?? [];
        return {
          ...p,
          reasons: rs,
          explanation: rs.length
            ? rs
                .map(
                  (x) =>
                    `${x.feature} = ${r3(x.value)} is ${x.direction === 'high' ? 'far above' : 'far below'} the typical ${x.median} (robust z ${x.robustZ}${x.logScale ? ', log scale' : ''})${HINTS[x.feature] ?? ''}`,
                )
                .join('; ')
            : `an unusual combination of values (isolation forest), mostly ${used
                .map((name, j) => ({ name, z: Math.abs(zs[i]?.[j] ?? 0) }))
                .sort((a, b) => b.z - a.z)
                .slice(0, 2)
                .map((x) => x.name)
                .join(' and ')}`,
          text: snippet(textOf.get(p.id) ?? ''),
        };
      });

    const first = outliers[0];
    return {
      method: {
        perFeature: `robust z-score |x - median| / (1.4826 MAD) >= ${Z_THRESHOLD}`,
        combined: `isolation forest (100 trees, seeded) score >= ${ISOLATION_THRESHOLD}`,
      },
      inputs: { features: featureRows.size ? 'dataset' : 'records', embeddings: table.has(NEIGHBOUR_FEATURE) },
      headline: first ? `${outliers.length} of ${records.length} records look anomalous; the strongest is ${first.id}: ${first.explanation}` : `no anomalies among ${records.length} records`,
      count: records.length,
      outlierCount: outliers.length,
      outlierShare: records.length ? r3(outliers.length / records.length) : 0,
      features: used.map((name) => {
        const s = scales.get(name) as Scale;
        return {
          name,
          median: r3(s.median),
          logScale: s.log !== null,
          outliers: reasons.filter((rs) => rs.some((x) => x.feature === name)).length,
        };
      }),
      outliers: outliers.slice(0, MAX_LISTED),
      perRecord,
    };
  },
};
