/**
 * What the batch talks about: TF-IDF keywords and two-word phrases (stopwords of each record's
 * language removed), and topics: k-means over the embeddings (k chosen by silhouette), each topic
 * named by its class-based TF-IDF terms (the BERTopic recipe) with representative records.
 */
import { stopwordsFor, tokenize } from '@jetflow/models';
import { mulberry32 } from '@jetflow/random';
import { byId, checkpoint, type Analyzer } from './types.js';

const TOP_KEYWORDS = 15;
const TOP_PHRASES = 10;
const PER_RECORD = 3;
const TOPIC_TERMS = 6;
const MIN_TOPIC_RECORDS = 20;
const MAX_TOPICS = 8;
const MAX_FIT = 1000;

const r3 = (x: number) => Math.round(x * 1000) / 1000;

interface Doc {
  id: string;
  /** Content unigrams and bigrams of the record, with repeats. */
  terms: string[];
}

function contentTerms(tokens: readonly string[], language: string): string[] {
  const stop = stopwordsFor(language);
  const english = stopwordsFor('eng'); // feedback mixes English into everything
  const isContent = (t: string) => t.length >= 3 && !/^\d+([.,]\d+)?$/.test(t) && !stop.has(t) && !english.has(t);
  const out: string[] = [];
  tokens.forEach((t, i) => {
    if (!isContent(t)) return;
    out.push(t);
    const next = tokens[i + 1];
    if (next !== undefined && isContent(next)) out.push(`${t} ${next}`);
  });
  return out;
}

function counts(terms: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of terms) m.set(t, (m.get(t) ?? 0) + 1);
  return m;
}

// ---- k-means on unit vectors, seeded k-means++ start

function sqDist(a: readonly number[], b: readonly number[]): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += ((a[i] ?? 0) - (b[i] ?? 0)) ** 2;
  return s;
}

function kmeans(xs: number[][], k: number, seed: number): { assign: number[]; centroids: number[][] } {
  const rng = mulberry32(seed);
  // A copy: the centroids move in place, and the first must not move the member's own vector (the dataset's row).
  const centroids: number[][] = [[...(xs[Math.floor(rng() * xs.length)] as number[])]];
  const d2 = xs.map((x) => sqDist(x, centroids[0] as number[]));
  while (centroids.length < k) {
    const total = d2.reduce((s, d) => s + d, 0);
    let r = rng() * total;
    let pick = 0;
    for (; pick < xs.length - 1 && r > (d2[pick] ?? 0); pick++) r -= d2[pick] ?? 0;
    const c = xs[pick] as number[];
    centroids.push([...c]);
    xs.forEach((x, i) => (d2[i] = Math.min(d2[i] ?? Infinity, sqDist(x, c))));
  }
  const assign = new Array<number>(xs.length).fill(-1);
  for (let iter = 0; iter < 30; iter++) {
    let moved = false;
    xs.forEach((x, i) => {
      let best = 0;
      let bestD = Infinity;
      centroids.forEach((c, j) => {
        const d = sqDist(x, c);
        if (d < bestD) {
          bestD = d;
          best = j;
        }
      });
      if (assign[i] !== best) {
        assign[i] = best;
        moved = true;
      }
    });
    if (!moved) break;
    centroids.forEach((c, j) => {
      const members = xs.filter((_, i) => assign[i] === j);
      if (members.length === 0) return;
      for (let d = 0; d < c.length; d++) c[d] = members.reduce((s, m) => s + (m[d] ?? 0), 0) / members.length;
    });
  }
  return { assign, centroids };
}

/** Mean silhouette from a precomputed distance matrix. */
function silhouette(dist: Float64Array, n: number, assign: number[], k: number): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const sum = new Float64Array(k);
    const cnt = new Float64Array(k);
    for (let j = 0; j < n; j++) {
      if (j === i) continue;
      const c = assign[j] as number;
      sum[c]! += dist[i * n + j]!;
      cnt[c]!++;
    }
    const own = assign[i] as number;
    if ((cnt[own] ?? 0) === 0) continue; // singleton: silhouette 0
    const a = sum[own]! / cnt[own]!;
    let b = Infinity;
    for (let c = 0; c < k; c++) if (c !== own && cnt[c]! > 0) b = Math.min(b, sum[c]! / cnt[c]!);
    total += Number.isFinite(b) ? (b - a) / Math.max(a, b) : 0;
  }
  return total / n;
}

// ----

export const analyzer: Analyzer = {
  name: 'keywords',
  description: 'TF-IDF keywords and phrases of the batch (stopwords removed), per-record keywords, and embedding topics named by class-based TF-IDF.',
  async analyze({ records, datasets }, ctx) {
    const textRows = byId(datasets.text);
    const docs: Doc[] = records.map((r) => {
      const row = textRows.get(r.id);
      return { id: r.id, terms: contentTerms(row?.tokens ?? tokenize(r.text ?? ''), row?.language ?? 'eng') };
    });
    await checkpoint(ctx.signal);

    const n = docs.length;
    const tfs = docs.map((d) => counts(d.terms));
    const df = new Map<string, number>();
    for (const tf of tfs) for (const t of tf.keys()) df.set(t, (df.get(t) ?? 0) + 1);
    const idf = (t: string) => Math.log((1 + n) / (1 + (df.get(t) ?? 0))) + 1;
    // Batch score: mean sublinear TF-IDF. Terms in one record only are not the batch's keywords.
    const minDf = n >= 10 ? 2 : 1;
    const score = new Map<string, number>();
    for (const tf of tfs) for (const [t, c] of tf) score.set(t, (score.get(t) ?? 0) + ((1 + Math.log(c)) * idf(t)) / n);
    const ranked = [...score].filter(([t]) => (df.get(t) ?? 0) >= minDf).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const entry = ([term, s]: [string, number]) => ({ term, score: r3(s), documents: df.get(term) ?? 0, share: r3((df.get(term) ?? 0) / Math.max(n, 1)) });
    const keywords = ranked
      .filter(([t]) => !t.includes(' '))
      .slice(0, TOP_KEYWORDS)
      .map(entry);
    const phrases = ranked
      .filter(([t]) => t.includes(' '))
      .slice(0, TOP_PHRASES)
      .map(entry);

    const perRecord: Array<{ id: string; keywords: string[]; topic: number | null }> = docs.map((d, i) => ({
      id: d.id,
      keywords: [...(tfs[i] ?? new Map<string, number>())]
        .filter(([t]) => !t.includes(' '))
        .map(([t, c]) => [t, (1 + Math.log(c)) * idf(t)] as const)
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, PER_RECORD)
        .map(([t]) => t),
      topic: null,
    }));

    await checkpoint(ctx.signal);
    const topics = await findTopics(
      records.map((r) => r.id),
      datasets.embeddings,
      tfs,
      perRecord,
      ctx.signal,
    );
    return {
      headline: keywords.length
        ? `top keywords: ${keywords
            .slice(0, 5)
            .map((k) => k.term)
            .join(', ')}`
        : 'no keywords',
      documents: n,
      keywords,
      phrases,
      topics,
      perRecord,
    };
  },
};

async function findTopics(
  ids: string[],
  embeddings: Array<{ id: string; vector: number[] }> | undefined,
  tfs: Array<Map<string, number>>,
  perRecord: Array<{ topic: number | null }>,
  signal: AbortSignal,
) {
  const emb = byId(embeddings);
  // Records with a (non-zero) vector take part; the others get no topic.
  const members = ids.map((id, i) => ({ i, v: emb.get(id)?.vector })).filter((m): m is { i: number; v: number[] } => !!m.v && m.v.some((x) => x !== 0));
  if (members.length < MIN_TOPIC_RECORDS) return { method: 'k-means over embeddings', k: 0, note: `needs the embeddings dataset and at least ${MIN_TOPIC_RECORDS} records`, items: [] };
  // k is chosen, and the centroids fitted, on an evenly spaced sample: the silhouette needs all
  // pairwise distances, which a large batch cannot afford. Every member is then assigned.
  const stride = Math.max(1, members.length / MAX_FIT);
  const xs = Array.from({ length: Math.min(members.length, MAX_FIT) }, (_, r) => (members[Math.floor(r * stride)] as { v: number[] }).v);
  const m = xs.length;
  const dist = new Float64Array(m * m);
  for (let a = 0; a < m; a++) for (let b = a + 1; b < m; b++) dist[a * m + b] = dist[b * m + a] = Math.sqrt(sqDist(xs[a]!, xs[b]!));

  let fit: { k: number; sil: number; centroids: number[][] } | null = null;
  for (let k = 2; k <= Math.min(MAX_TOPICS, Math.floor(m / 10)); k++) {
    await checkpoint(signal);
    const { assign, centroids } = kmeans(xs, k, 7 + k);
    const sil = silhouette(dist, m, assign, k);
    if (!fit || sil > fit.sil + 1e-9) fit = { k, sil, centroids };
  }
  if (!fit) return { method: 'k-means over embeddings', k: 0, note: 'too few records', items: [] };
  // The first centroid at the smallest distance (each distance computed once).
  const nearest = (v: number[]) => {
    let best = 0;
    let bestD = sqDist(v, fit.centroids[0] ?? []);
    for (let j = 1; j < fit.centroids.length; j++) {
      const d = sqDist(v, fit.centroids[j] as number[]);
      if (d < bestD) {
        best = j;
        bestD = d;
      }
    }
    return best;
  };
  const best = { ...fit, assign: members.map((mem) => nearest(mem.v)) };

  // Class-based TF-IDF: a term names a topic when it is frequent in it and rare in the others.
  const classTf = Array.from({ length: best.k }, () => new Map<string, number>());
  const totalTf = new Map<string, number>();
  const sizes = new Array<number>(best.k).fill(0);
  members.forEach(({ i }, j) => {
    const c = best.assign[j] as number;
    sizes[c]!++;
    perRecord[i]!.topic = c;
    for (const [t, cnt] of tfs[i] ?? []) {
      classTf[c]!.set(t, (classTf[c]!.get(t) ?? 0) + cnt);
      totalTf.set(t, (totalTf.get(t) ?? 0) + cnt);
    }
  });
  const avgWords = [...totalTf.values()].reduce((s, x) => s + x, 0) / best.k;
  const items = classTf.map((tf, c) => {
    const words = [...tf.values()].reduce((s, x) => s + x, 0) || 1;
    const terms = [...tf]
      .filter(([, cnt]) => cnt >= 2)
      .map(([t, cnt]) => [t, (cnt / words) * Math.log(1 + avgWords / (totalTf.get(t) ?? 1))] as const)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .slice(0, TOPIC_TERMS)
      .map(([t]) => t);
    const centroid = best.centroids[c] ?? [];
    const representative = members
      .map((mem, j) => ({ mem, j }))
      .filter(({ j }) => best.assign[j] === c)
      .map(({ mem }) => ({ id: ids[mem.i] as string, d: sqDist(mem.v, centroid) }))
      .sort((a, b) => a.d - b.d)
      .slice(0, 3)
      .map((x) => x.id);
    return { topic: c, size: sizes[c] ?? 0, share: r3((sizes[c] ?? 0) / ids.length), terms, representative };
  });
  items.sort((a, b) => b.size - a.size);
  return { method: 'k-means over embeddings, k by silhouette', k: best.k, silhouette: r3(best.sil), items };
}
