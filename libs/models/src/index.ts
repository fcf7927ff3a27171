/**
 * Jetflow's own text models: featurizers, and ONNX sessions for sentiment and embeddings.
 *
 * The featurizers here are the single definition of "text -> model input": the build script
 * (libs/models/scripts/build-models.ts) trains on exactly these functions, so a change here
 * needs a rebuild of the assets (the vocab file records a featurizer version to catch drift).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InferenceSession, Tensor } from 'onnxruntime-node';

/** Bumped whenever a featurizer below changes meaning; the assets must then be rebuilt. */
export const FEATURIZER_VERSION = 3;

export const SENTIMENT_LABELS = ['negative', 'neutral', 'positive'] as const;
export type SentimentLabel = (typeof SENTIMENT_LABELS)[number];

// ---------------------------------------------------------------------------------------------
// Text normalisation and tokens (shared by the models, the text generator and keyword extraction)

const APOSTROPHES = /[\u2018\u2019\u02bc`\u00b4]/g;
const WORD_RE = /[\p{L}\p{N}]+(?:'[\p{L}]+)*/gu;

/** NFKC, lower case, one kind of apostrophe, collapsed whitespace. */
export function normalizeText(text: string): string {
  return text.normalize('NFKC').toLowerCase().replace(APOSTROPHES, "'").replace(/\s+/g, ' ').trim();
}

/** Word tokens of normalised text (letters and digits; contractions such as "don't" stay whole). */
export function tokenize(text: string): string[] {
  return normalizeText(text).match(WORD_RE) ?? [];
}

// franc speaks ISO 639-3, stopwords-iso ISO 639-1. These are the languages both know (and franc
// tells apart reliably enough on short texts when limited to them).
const ISO639_3_TO_1: Readonly<Record<string, string>> = {
  eng: 'en',
  spa: 'es',
  fra: 'fr',
  deu: 'de',
  ita: 'it',
  por: 'pt',
  nld: 'nl',
  rus: 'ru',
  pol: 'pl',
  tur: 'tr',
  swe: 'sv',
  dan: 'da',
  nob: 'no',
  fin: 'fi',
  ces: 'cs',
  ron: 'ro',
  hun: 'hu',
  ukr: 'uk',
  ind: 'id',
  vie: 'vi',
  arb: 'ar',
  pes: 'fa',
  hin: 'hi',
  jpn: 'ja',
  kor: 'ko',
  cmn: 'zh',
  ell: 'el',
  bul: 'bg',
  hrv: 'hr',
  slk: 'sk',
  slv: 'sl',
  cat: 'ca',
  heb: 'he',
  tha: 'th',
  lit: 'lt',
  lav: 'lv',
  ekk: 'et',
  zlm: 'ms',
  tgl: 'tl',
  swh: 'sw',
};
/** ISO 639-3 codes of the languages with stopword lists (the language detector's candidates). */
export const TEXT_LANGUAGES: readonly string[] = Object.keys(ISO639_3_TO_1);

const stopwordLists = createRequire(import.meta.url)('stopwords-iso') as Record<string, string[]>;
const stopwordCache = new Map<string, ReadonlySet<string>>();
/** Stopwords of a language given as ISO 639-3 ("eng") or 639-1 ("en"); empty for an unknown one. */
export function stopwordsFor(lang: string): ReadonlySet<string> {
  const code = ISO639_3_TO_1[lang] ?? lang;
  let s = stopwordCache.get(code);
  if (!s) {
    // Lists hold "don't" with a straight apostrophe, as normalizeText produces.
    s = new Set((stopwordLists[code] ?? []).map((w) => normalizeText(w)));
    stopwordCache.set(code, s);
  }
  return s;
}

// Negation: "not good" must not look like "good". Contractions are expanded first so that
// "wasn't", "wasnt" and "was not" all become the same tokens.
const CONTRACTIONS: ReadonlyArray<[RegExp, string]> = [
  [/\bwon'?t\b/g, 'will not'],
  [/\bcan'?t\b/g, 'can not'],
  [/\bain'?t\b/g, 'is not'],
  [/\b(do|does|did|is|are|was|were|has|have|had|could|would|should|must|need)n'?t\b/g, '$1 not'],
  [/\bcannot\b/g, 'can not'],
];
const NEGATORS = new Set(['not', 'no', 'never', 'none', 'nothing', 'nobody', 'nowhere', 'neither', 'nor', 'without', 'hardly', 'barely', 'nah']);
// A negation ends at punctuation, at a contrast word, or after this many tokens.
const CONTRAST = new Set(['but', 'however', 'although', 'though', 'yet', 'except', 'whereas']);
const NEGATION_SCOPE = 3;
const SENT_TOKEN_RE = /[\p{L}\p{N}]+|[.!?;:,()]/gu;

/** Tokens for sentiment: contractions expanded, words in a negation's scope prefixed with "not_". */
export function sentimentTokens(text: string): string[] {
  let t = normalizeText(text);
  for (const [re, to] of CONTRACTIONS) t = t.replace(re, to);
  t = t.replace(/'/g, '');
  const out: string[] = [];
  let scope = 0;
  for (const tok of t.match(SENT_TOKEN_RE) ?? []) {
    if (!/[\p{L}\p{N}]/u.test(tok)) {
      scope = 0;
      continue;
    }
    if (NEGATORS.has(tok)) {
      out.push(tok);
      scope = NEGATION_SCOPE;
    } else if (CONTRAST.has(tok)) {
      out.push(tok);
      scope = 0;
    } else if (scope > 0) {
      out.push(`not_${tok}`);
      scope--;
    } else {
      out.push(tok);
    }
  }
  return out;
}

/** Feature keys of the sentiment model: negation-marked unigrams and bigrams ("a b"), deduplicated. */
export function sentimentFeatureKeys(text: string): string[] {
  const toks = sentimentTokens(text);
  const keys = new Set<string>(toks);
  for (let i = 1; i < toks.length; i++) keys.add(`${toks[i - 1]} ${toks[i]}`);
  return [...keys];
}

/** FNV-1a, 32 bit: fast, stable across platforms and Node versions (unlike any built-in hash). */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Hashed bucket counts of the embedding model's input for one text: words and character trigrams. */
export function embeddingFeatureCounts(text: string, dims: number): Map<number, number> {
  const counts = new Map<number, number>();
  const add = (key: string, w: number) => {
    const b = fnv1a(key) % dims;
    counts.set(b, (counts.get(b) ?? 0) + w);
  };
  for (const word of tokenize(text)) {
    add(`w:${word}`, 1);
    // Trigrams let unseen inflections ("delivered" vs "delivery") land near each other; weighted
    // down so a long word does not outweigh its own identity.
    const padded = `<${word}>`;
    for (let i = 0; i + 3 <= padded.length; i++) add(`c:${padded.slice(i, i + 3)}`, EMBEDDING_TRIGRAM_WEIGHT);
  }
  return counts;
}
export const EMBEDDING_TRIGRAM_WEIGHT = 0.25;

/** Writes the embedding input row for `text` (log(1 + count) per bucket) into `out` at `offset`. */
export function embeddingFeatures(text: string, dims: number, out = new Float32Array(dims), offset = 0): Float32Array {
  for (const [b, c] of embeddingFeatureCounts(text, dims)) out[offset + b] = Math.log1p(c);
  return out;
}

/** The featurizer data written by the build script next to the models. */
export interface ModelVocab {
  featurizerVersion: number;
  sentiment: { labels: string[]; features: string[] };
  embedding: { inputDims: number; dimension: number };
  /** The words of the training corpus (seen at least twice), sorted. */
  words: string[];
  build: Record<string, unknown>;
}

const wordSets = new WeakMap<ModelVocab, Set<string>>();
/**
 * Share of a text's words that the models saw in training, in [0, 1] (0 for an empty text).
 * Low means the models' verdicts on it mean little: another language, another domain, gibberish.
 */
export function knownWordShare(text: string, vocab: ModelVocab): number {
  let known = wordSets.get(vocab);
  if (!known) wordSets.set(vocab, (known = new Set(vocab.words)));
  const words = sentimentTokens(text).filter((t) => !/^\d+$/.test(t));
  if (words.length === 0) return 0;
  return words.filter((w) => known.has(w.replace(/^not_/, ''))).length / words.length;
}

/** Index of each sentiment feature key, built once per vocab. */
const indexCache = new WeakMap<ModelVocab, Map<string, number>>();
function sentimentIndex(vocab: ModelVocab): Map<string, number> {
  let m = indexCache.get(vocab);
  if (!m) {
    m = new Map(vocab.sentiment.features.map((f, i) => [f, i]));
    indexCache.set(vocab, m);
  }
  return m;
}

/** Writes the sentiment input row (1 for each known feature present) into `out` at `offset`. */
export function sentimentFeatures(text: string, vocab: ModelVocab, out?: Float32Array, offset = 0): Float32Array {
  const index = sentimentIndex(vocab);
  const row = out ?? new Float32Array(index.size);
  for (const key of sentimentFeatureKeys(text)) {
    const i = index.get(key);
    if (i !== undefined) row[offset + i] = 1;
  }
  return row;
}

// ---------------------------------------------------------------------------------------------
// Assets and sessions

/**
 * The committed assets directory: ../assets from libs/models/src (tsx) and from libs/models/dist (built;
 * tsc does not copy assets); from anywhere else, the nearest libs/models/assets above.
 */
export function assetsDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const direct = resolve(here, '..', 'assets');
  if (existsSync(join(direct, 'vocab.json'))) return direct;
  for (let d = here; ; d = dirname(d)) {
    const candidate = join(d, 'libs', 'models', 'assets');
    if (existsSync(join(candidate, 'vocab.json'))) return candidate;
    if (dirname(d) === d) break;
  }
  throw new Error(`libs/models/assets not found above ${here}; run: npx tsx libs/models/scripts/build-models.ts`);
}

const vocabCache = new Map<string, ModelVocab>();
export function loadVocab(dir = assetsDir()): ModelVocab {
  let v = vocabCache.get(dir);
  if (!v) {
    v = JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8')) as ModelVocab;
    if (v.featurizerVersion !== FEATURIZER_VERSION) {
      throw new Error(`vocab.json was built for featurizer ${v.featurizerVersion}, code is ${FEATURIZER_VERSION}: rebuild the models`);
    }
    vocabCache.set(dir, v);
  }
  return v;
}

let loads = 0;
/** How many ONNX sessions this thread has created: a worker thread should show 2, however many tasks it ran. */
export function modelLoadCount(): number {
  return loads;
}

export interface LoadOptions {
  /** Defaults to the committed assets (see assetsDir). */
  dir?: string;
  /** ORT threads per session. Default 1: the worker pool already runs one thread per core. */
  intraOpThreads?: number;
  /**
   * Wraps every call into onnxruntime (session creation, session.run). In a pool thread, pass the pool's
   * nativeCall: a thread terminated while such a call is in flight aborts the whole process, so the pool
   * holds a hard limit back until the thread is out of it.
   */
  guard?: <T>(call: () => Promise<T>) => Promise<T>;
}

const unguarded = <T>(call: () => Promise<T>): Promise<T> => call();

async function createSession(file: string, opts: LoadOptions): Promise<{ session: InferenceSession; version: string }> {
  const bytes = readFileSync(file);
  const session = await (opts.guard ?? unguarded)(() =>
    InferenceSession.create(bytes, {
      intraOpNumThreads: opts.intraOpThreads ?? 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    }),
  );
  loads++;
  // Content hash: a report can say exactly which model produced it.
  return { session, version: createHash('sha256').update(bytes).digest('hex').slice(0, 12) };
}

// Rows per session.run: bounds the dense input buffer (128 x 8k floats = 4 MB).
const CHUNK = 128;

export interface SentimentPrediction {
  label: SentimentLabel;
  /** p(positive) - p(negative), in [-1, 1]. */
  score: number;
  probabilities: Record<SentimentLabel, number>;
}

export interface SentimentModel {
  readonly name: 'sentiment';
  readonly version: string;
  predict(texts: readonly string[]): Promise<SentimentPrediction[]>;
}

export interface Embedding {
  /** L2-normalised (all zeros for an empty text). */
  vector: Float32Array;
  /** knownWordShare(): how much of the text the model knows; a low value means the vector means little. */
  coverage: number;
}

export interface EmbeddingModel {
  readonly name: 'embedding';
  readonly version: string;
  readonly dimension: number;
  /** One L2-normalised vector per text (all zeros for an empty text). */
  embed(texts: readonly string[]): Promise<Float32Array[]>;
  /** Vectors with their coverage. */
  embedWithCoverage(texts: readonly string[]): Promise<Embedding[]>;
}

// One session per model per thread: loaders are memoised, so every caller shares it.
const sentimentCache = new Map<string, Promise<SentimentModel>>();
const embeddingCache = new Map<string, Promise<EmbeddingModel>>();

function memo<T>(cache: Map<string, Promise<T>>, key: string, make: () => Promise<T>): Promise<T> {
  let p = cache.get(key);
  if (!p) {
    p = make();
    cache.set(key, p);
    // A failed load must not stay cached: the next caller tries again.
    p.catch(() => cache.delete(key));
  }
  return p;
}

export function loadSentimentModel(opts: LoadOptions = {}): Promise<SentimentModel> {
  const dir = opts.dir ?? assetsDir();
  return memo(sentimentCache, dir, async () => {
    const vocab = loadVocab(dir);
    const { session, version } = await createSession(join(dir, 'sentiment.onnx'), opts);
    const guard = opts.guard ?? unguarded;
    const dims = vocab.sentiment.features.length;
    const [input] = session.inputNames;
    const [output] = session.outputNames;
    if (!input || !output) throw new Error('sentiment.onnx has no input or output');
    return {
      name: 'sentiment',
      version,
      async predict(texts) {
        const out: SentimentPrediction[] = [];
        for (let start = 0; start < texts.length; start += CHUNK) {
          const batch = texts.slice(start, start + CHUNK);
          const x = new Float32Array(batch.length * dims);
          batch.forEach((t, i) => sentimentFeatures(t, vocab, x, i * dims));
          const res = await guard(() => session.run({ [input]: new Tensor('float32', x, [batch.length, dims]) }));
          const p = res[output]?.data as Float32Array;
          for (let i = 0; i < batch.length; i++) {
            const neg = p[i * 3] ?? 0;
            const neu = p[i * 3 + 1] ?? 0;
            const pos = p[i * 3 + 2] ?? 0;
            const label: SentimentLabel = pos >= neg && pos >= neu ? 'positive' : neg >= neu ? 'negative' : 'neutral';
            out.push({ label, score: pos - neg, probabilities: { negative: neg, neutral: neu, positive: pos } });
          }
        }
        return out;
      },
    };
  });
}

export function loadEmbeddingModel(opts: LoadOptions = {}): Promise<EmbeddingModel> {
  const dir = opts.dir ?? assetsDir();
  return memo(embeddingCache, dir, async () => {
    const vocab = loadVocab(dir);
    const { session, version } = await createSession(join(dir, 'embedding.onnx'), opts);
    const guard = opts.guard ?? unguarded;
    const { inputDims, dimension } = vocab.embedding;
    const [input] = session.inputNames;
    const [output] = session.outputNames;
    if (!input || !output) throw new Error('embedding.onnx has no input or output');
    const embedWithCoverage = async (texts: readonly string[]): Promise<Embedding[]> => {
      const out: Embedding[] = [];
      for (let start = 0; start < texts.length; start += CHUNK) {
        const batch = texts.slice(start, start + CHUNK);
        const x = new Float32Array(batch.length * inputDims);
        batch.forEach((t, i) => embeddingFeatures(t, inputDims, x, i * inputDims));
        const res = await guard(() => session.run({ [input]: new Tensor('float32', x, [batch.length, inputDims]) }));
        const y = res[output]?.data as Float32Array;
        batch.forEach((t, i) => out.push({ vector: y.slice(i * dimension, (i + 1) * dimension), coverage: knownWordShare(t, vocab) }));
      }
      return out;
    };
    return {
      name: 'embedding',
      version,
      dimension,
      embedWithCoverage,
      embed: async (texts) => (await embedWithCoverage(texts)).map((e) => e.vector),
    };
  });
}

/** Cosine similarity; 0 when either vector is all zeros. */
export function cosineSimilarity(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
}
