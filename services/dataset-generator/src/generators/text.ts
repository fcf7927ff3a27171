/**
 * The NLP dataset: per record the normalised text, word tokens, bigrams and language.
 */
import { TEXT_LANGUAGES, normalizeText, stopwordsFor, tokenize } from '@jetflow/models';
import { createLanguageDetector } from './language.js';
import { CHUNK_SIZE, checkpoint, type DatasetGenerator, type DatasetResult, type DatasetRow, type InputRecord } from './types.js';

export interface TextRow extends DatasetRow {
  normalized: string;
  tokens: string[];
  /** Adjacent token pairs, "a b". */
  bigrams: string[];
  /** ISO 639-3 ("eng"), or "und" when the text is too short to tell. */
  language: string;
  /** False when the detector hesitated and the batch's main language was used to decide. */
  languageReliable: boolean;
  chars: number;
  tokenCount: number;
}

const MIN_LETTERS = 10;
// Languages whose trigram score comes this close to the best one are weighed again with stopwords.
const CANDIDATE_SCORE = 0.8;
const RELIABLE_MARGIN = 0.1;
// franc's scores over the candidate languages (francAll with `only` and `minLength`), from an index built once: see language.ts.
const languageScores = createLanguageDetector(TEXT_LANGUAGES, MIN_LETTERS);

interface Detection {
  language: string;
  reliable: boolean;
  candidates: string[];
}

/**
 * franc alone often calls a short English review French or Scots. Among its close candidates, the
 * one whose stopwords cover more of the tokens wins; a still-ambiguous text is decided later by the
 * batch's main language.
 */
function detect(normalized: string, tokens: string[]): Detection {
  if (normalized.replace(/[^\p{L}]/gu, '').length < MIN_LETTERS) return { language: 'und', reliable: false, candidates: [] };
  const ranked = languageScores(normalized)
    .filter(([lang, score]) => lang !== 'und' && score >= CANDIDATE_SCORE)
    .slice(0, 4)
    .map(([lang, score]) => {
      const stop = stopwordsFor(lang);
      const share = tokens.length ? tokens.filter((t) => stop.has(t)).length / tokens.length : 0;
      return { lang, score: score + 0.5 * share };
    })
    .sort((a, b) => b.score - a.score);
  const [best, second] = ranked;
  if (!best) return { language: 'und', reliable: false, candidates: [] };
  return {
    language: best.lang,
    reliable: !second || best.score - second.score >= RELIABLE_MARGIN,
    candidates: ranked.map((r) => r.lang),
  };
}

/** A text row as a chunk of `prepare` stores it: the detector's close candidates travel with it until the batch's language is known. */
export interface TextPartRow extends TextRow {
  candidates: string[];
}

/** The per-record half: normalised text, tokens, bigrams and the language as the record alone tells it. */
export async function textRowsOf(records: readonly InputRecord[], signal: AbortSignal): Promise<TextPartRow[]> {
  const rows: TextPartRow[] = [];
  for (let start = 0; start < records.length; start += CHUNK_SIZE) {
    await checkpoint(signal);
    for (const r of records.slice(start, start + CHUNK_SIZE)) {
      const normalized = normalizeText(r.text ?? '');
      const tokens = tokenize(normalized);
      const d = detect(normalized, tokens);
      rows.push({
        id: r.id,
        normalized,
        tokens,
        bigrams: tokens.slice(1).map((t, i) => `${tokens[i]} ${t}`),
        language: d.language,
        languageReliable: d.reliable,
        chars: normalized.length,
        tokenCount: tokens.length,
        candidates: d.candidates,
      });
    }
  }
  return rows;
}

/**
 * The batch-wide half, over the rows of every record in record order (one call, or the parts of every
 * chunk concatenated): the batch's main language settles the hesitant rows, then the summary.
 */
export async function finishText(parts: readonly TextPartRow[], signal: AbortSignal): Promise<DatasetResult<TextRow>> {
  const rows: TextRow[] = parts.map(({ candidates: _c, ...row }) => row);
  // The batch's main language settles the hesitant cases it is a candidate for.
  const votes = new Map<string, number>();
  for (const p of parts) if (p.languageReliable) votes.set(p.language, (votes.get(p.language) ?? 0) + 1);
  const primary = [...votes].sort((a, b) => b[1] - a[1])[0]?.[0];
  if (primary) {
    parts.forEach((p, i) => {
      const row = rows[i];
      if (row && !p.languageReliable && p.candidates.includes(primary)) row.language = primary;
    });
  }

  await checkpoint(signal);
  const languages: Record<string, number> = {};
  const tokenCounts = new Map<string, number>();
  const docCounts = new Map<string, number>();
  const bigramCounts = new Map<string, number>();
  let totalTokens = 0;
  for (const row of rows) {
    languages[row.language] = (languages[row.language] ?? 0) + 1;
    totalTokens += row.tokens.length;
    const stop = stopwordsFor(row.language === 'und' ? (primary ?? 'eng') : row.language);
    const content = (t: string) => t.length > 1 && !stop.has(t) && !/^\d+$/.test(t);
    for (const t of row.tokens) tokenCounts.set(t, (tokenCounts.get(t) ?? 0) + 1);
    for (const t of new Set(row.tokens)) if (content(t)) docCounts.set(t, (docCounts.get(t) ?? 0) + 1);
    for (let i = 1; i < row.tokens.length; i++) {
      const a = row.tokens[i - 1] as string;
      const b = row.tokens[i] as string;
      if (content(a) && content(b)) bigramCounts.set(`${a} ${b}`, (bigramCounts.get(`${a} ${b}`) ?? 0) + 1);
    }
  }
  const top = <K>(m: Map<K, number>, n: number) => [...m].sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0]))).slice(0, n);
  return {
    rows,
    summary: {
      rows: rows.length,
      emptyTexts: rows.filter((r) => r.tokenCount === 0).length,
      primaryLanguage: primary ?? 'und',
      languages,
      tokens: totalTokens,
      meanTokens: rows.length ? Math.round((totalTokens / rows.length) * 10) / 10 : 0,
      vocabularySize: tokenCounts.size,
      // Content words only: stopwords of each record's language and bare numbers are left out.
      topTokens: top(docCounts, 20).map(([token, documents]) => ({ token, count: tokenCounts.get(token) ?? 0, documents })),
      topBigrams: top(bigramCounts, 10).map(([bigram, count]) => ({ bigram, count })),
    },
  };
}

export const generator: DatasetGenerator<TextRow> = {
  name: 'text',
  description: 'Normalised text, tokens, bigrams and language per record; vocabulary and language summary.',
  async generate(records, ctx) {
    return finishText(await textRowsOf(records, ctx.signal), ctx.signal);
  },
};
