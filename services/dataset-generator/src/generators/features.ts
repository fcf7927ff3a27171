/**
 * The tabular dataset: a pandas-style profile of the batch (describe() per column, correlations)
 * and, per record, numeric features with their standard scores against the batch.
 *
 * Feature names are paths into the record: `fields.amount` for a submitted field, `text.length` and
 * friends for what is derived from the text. They cannot collide, and a report can name them plainly.
 */
import { mean, sampleCorrelation, sampleStandardDeviation } from 'simple-statistics';
import { tokenize } from '@jetflow/models';
import { CHUNK_SIZE, checkpoint, numericValue, type DatasetGenerator, type DatasetResult, type DatasetRow, type FieldValue, type InputRecord } from './types.js';

export interface FeatureRow extends DatasetRow {
  /** Feature name -> value; null where the record has no usable value. */
  values: Record<string, number | null>;
  /** Feature name -> (value - mean) / std over the batch; null for a missing value or a constant column. */
  z: Record<string, number | null>;
}

export interface NumericProfile {
  count: number;
  nulls: number;
  mean: number | null;
  std: number | null;
  min: number | null;
  p25: number | null;
  p50: number | null;
  p75: number | null;
  max: number | null;
}

export interface CategoricalProfile {
  count: number;
  nulls: number;
  unique: number;
  top: string | null;
  freq: number;
}

/** Derived from the text of every record. */
const TEXT_FEATURES: Record<string, (text: string) => number> = {
  'text.length': (t) => t.trim().length,
  'text.tokens': (t) => tokenize(t).length,
  'text.meanWordLength': (t) => {
    const toks = tokenize(t);
    return toks.length ? toks.reduce((s, w) => s + w.length, 0) / toks.length : 0;
  },
  // Shouting and exclamation marks often go with complaints (and with spam).
  'text.uppercaseRatio': (t) => {
    const letters = t.match(/\p{L}/gu)?.length ?? 0;
    return letters ? (t.match(/\p{Lu}/gu)?.length ?? 0) / letters : 0;
  },
  'text.exclamations': (t) => t.split('!').length - 1,
};

/** Correlations only for this many numeric columns: the matrix grows with the square. */
const MAX_CORRELATED = 16;

/** Linear interpolation between closest ranks: pandas' and numpy's default (R type 7). */
export function quantileSorted(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const a = sorted[lo] as number;
  const b = sorted[Math.min(lo + 1, sorted.length - 1)] as number;
  return a + (b - a) * (pos - lo);
}

const round = (x: number | null, digits = 4): number | null => (x === null || !Number.isFinite(x) ? null : Number(x.toFixed(digits)));

function profileNumeric(values: Array<number | null>): NumericProfile & { meanRaw: number | null; stdRaw: number | null } {
  const present = values.filter((v): v is number => v !== null);
  const sorted = [...present].sort((a, b) => a - b);
  const m = present.length ? mean(present) : null;
  const s = present.length >= 2 ? sampleStandardDeviation(present) : null;
  return {
    count: present.length,
    nulls: values.length - present.length,
    mean: round(m),
    std: round(s),
    min: sorted[0] ?? null,
    p25: round(quantileSorted(sorted, 0.25)),
    p50: round(quantileSorted(sorted, 0.5)),
    p75: round(quantileSorted(sorted, 0.75)),
    max: sorted[sorted.length - 1] ?? null,
    meanRaw: m,
    stdRaw: s,
  };
}

function profileCategorical(values: Array<FieldValue | undefined>): CategoricalProfile {
  const counts = new Map<string, number>();
  let nulls = 0;
  for (const v of values) {
    if (v === null || v === undefined) nulls++;
    else counts.set(String(v), (counts.get(String(v)) ?? 0) + 1);
  }
  const [top, freq] = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0] ?? [null, 0];
  return { count: values.length - nulls, nulls, unique: counts.size, top, freq };
}

/** Field names in first-seen order, split as pandas would: only numbers (or nulls) make a numeric column. */
function fieldColumns(records: readonly InputRecord[]): { numeric: string[]; categorical: string[] } {
  const kinds = new Map<string, 'numeric' | 'categorical'>();
  for (const r of records) {
    for (const [k, v] of Object.entries(r.fields ?? {})) {
      if (v === null || v === undefined) {
        if (!kinds.has(k)) kinds.set(k, 'numeric');
      } else if (typeof v !== 'number') kinds.set(k, 'categorical');
      else if (!kinds.has(k)) kinds.set(k, 'numeric');
    }
  }
  const numeric: string[] = [];
  const categorical: string[] = [];
  for (const [k, kind] of kinds) (kind === 'numeric' ? numeric : categorical).push(k);
  return { numeric, categorical };
}

/** A record as a chunk of `prepare` leaves it for the features dataset: its fields, and the text features computed from it. */
export interface FeaturePartRow {
  id: string;
  fields?: Record<string, FieldValue>;
  text: Record<string, number>;
}

/** The per-record half: the features derived from the text (tokenizing is the cost), with the fields kept for the batch. */
export async function featurePartsOf(records: readonly InputRecord[], signal: AbortSignal): Promise<FeaturePartRow[]> {
  const out: FeaturePartRow[] = [];
  for (let start = 0; start < records.length; start += CHUNK_SIZE) {
    await checkpoint(signal);
    for (const r of records.slice(start, start + CHUNK_SIZE)) {
      const t = r.text ?? '';
      const text: Record<string, number> = {};
      for (const [name, f] of Object.entries(TEXT_FEATURES)) text[name] = f(t);
      out.push({ id: r.id, ...(r.fields ? { fields: r.fields } : {}), text });
    }
  }
  return out;
}

/**
 * The batch-wide half, over every record's part in record order: which fields are numeric, the
 * profiles, the z-scores against the batch and the correlations.
 */
export async function finishFeatures(parts: readonly FeaturePartRow[], signal: AbortSignal): Promise<DatasetResult<FeatureRow>> {
  const records = parts;
  const { numeric, categorical } = fieldColumns(parts as unknown as InputRecord[]);
  const names = [...Object.keys(TEXT_FEATURES), ...numeric.map((f) => `fields.${f}`)];
  const columns = new Map<string, Array<number | null>>(names.map((n) => [n, []]));
  for (let start = 0; start < parts.length; start += CHUNK_SIZE) {
    await checkpoint(signal);
    for (const r of parts.slice(start, start + CHUNK_SIZE)) {
      for (const name of Object.keys(TEXT_FEATURES)) columns.get(name)?.push(r.text[name] ?? null);
      for (const f of numeric) columns.get(`fields.${f}`)?.push(numericValue(r.fields?.[f]));
    }
  }
  const ctx = { signal };

  await checkpoint(ctx.signal);
  const profiles = new Map([...columns].map(([name, vals]) => [name, profileNumeric(vals)]));
  const rows: FeatureRow[] = records.map((r, i) => {
    const values: Record<string, number | null> = {};
    const z: Record<string, number | null> = {};
    for (const name of names) {
      const v = columns.get(name)?.[i] ?? null;
      const p = profiles.get(name);
      values[name] = v === null ? null : round(v, 6);
      z[name] = v === null || !p?.stdRaw || p.meanRaw === null ? null : round((v - p.meanRaw) / p.stdRaw);
    }
    return { id: r.id, values, z };
  });

  // Pearson correlations over the records where both columns have a value.
  await checkpoint(ctx.signal);
  const corrNames = names.filter((n) => (profiles.get(n)?.stdRaw ?? 0) > 0).slice(0, MAX_CORRELATED);
  const matrix = corrNames.map((a) =>
    corrNames.map((b) => {
      if (a === b) return 1;
      const xa: number[] = [];
      const xb: number[] = [];
      const ca = columns.get(a) ?? [];
      const cb = columns.get(b) ?? [];
      ca.forEach((v, i) => {
        const w = cb[i];
        if (v !== null && w !== null && w !== undefined) {
          xa.push(v);
          xb.push(w);
        }
      });
      if (xa.length < 3) return null;
      const r = sampleCorrelation(xa, xb);
      return Number.isFinite(r) ? round(r, 3) : null;
    }),
  );

  const numericProfiles: Record<string, NumericProfile> = {};
  for (const [name, { meanRaw: _m, stdRaw: _s, ...p }] of profiles) numericProfiles[name] = p;
  const categoricalProfiles: Record<string, CategoricalProfile> = {};
  for (const f of categorical) categoricalProfiles[`fields.${f}`] = profileCategorical(records.map((r) => r.fields?.[f]));
  return {
    rows,
    summary: {
      rows: records.length,
      features: names,
      numeric: numericProfiles,
      categorical: categoricalProfiles,
      correlations: { columns: corrNames, matrix },
    },
  };
}

export const generator: DatasetGenerator<FeatureRow> = {
  name: 'features',
  description: 'Profile per column (count, nulls, mean, std, min, quartiles, max; categorical top values; correlations) and numeric features with z-scores per record.',
  async generate(records, ctx) {
    return finishFeatures(await featurePartsOf(records, ctx.signal), ctx.signal);
  },
};
