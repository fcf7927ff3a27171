/**
 * franc's `francAll(value, { only, minLength })`, computed faster with franc's own trigram models and
 * trigram-utils' trigram counts: the same languages, the same scores, in the same order.
 *
 * franc scores a text against each allowed language of its script by walking the text's trigrams
 * and looking each up in that language's dictionary (trigrams × languages lookups, 25 Latin languages
 * here), and it filters its language list on every call. Here the models of the allowed languages are
 * built once into an inverted index, trigram → (language, rank) pairs: a text costs one lookup per
 * trigram plus the languages that actually have it. The distance of a language is franc's: per
 * trigram of the text, |count − rank − 1|, or 300 when the language lacks it; integer sums, so equal
 * to franc's whatever the order. Ties keep franc's language order (a stable sort over the models'
 * order), and the normalisation is franc's formula on the same numbers.
 *
 * The script comes first, as in franc: the one whose expression matches the most characters. franc
 * runs each of its 28 expressions over the text; a text of ASCII characters only (most feedback) is
 * counted here in one pass instead, which gives the same counts as long as no expression but Latin's
 * matches an ASCII character: checked against franc's expressions when the detector is made.
 */
import { data } from 'franc/data.js';
import { expressions } from 'franc/expressions.js';
import { asDictionary } from 'trigram-utils';

/** franc's constants (franc/index.js). */
const MAX_LENGTH = 2048;
const MAX_DIFFERENCE = 300;

export type LanguageScores = Array<[string, number]>;

interface ScriptModel {
  languages: string[];
  /** Per trigram, pairs of (index into languages, the trigram's rank in that language's model). */
  postings: Map<string, Int32Array>;
}

const own = (o: object, key: string) => Object.prototype.hasOwnProperty.call(o, key);

/** A detector equal to `francAll(value, { only, minLength })` (every franc language when `only` is empty). */
export function createLanguageDetector(only: readonly string[], minLength = 10): (value: string) => LanguageScores {
  const allowed = new Set(only);
  const allow = (lang: string) => allowed.size === 0 || allowed.has(lang);
  const models = new Map<string, ScriptModel>();
  for (const [script, languages] of Object.entries(data)) {
    const names = Object.keys(languages).filter(allow);
    const lists = new Map<string, number[]>();
    names.forEach((name, li) => {
      const model = (languages[name] as string).split('|');
      // As franc builds it: a trigram listed twice keeps its first (lowest) rank.
      const ranks = new Map<string, number>();
      for (let w = model.length - 1; w >= 0; w--) ranks.set(model[w] as string, w);
      for (const [t, rank] of ranks) {
        let l = lists.get(t);
        if (!l) lists.set(t, (l = []));
        l.push(li, rank);
      }
    });
    models.set(script, { languages: names, postings: new Map([...lists].map(([t, l]) => [t, Int32Array.from(l)])) });
  }
  const scripts = Object.entries(expressions);
  // Per ASCII code, whether Latin's expression matches it; the one-pass count needs every other to match none.
  const latinAscii = new Uint8Array(128);
  let asciiIsLatinOnly = scripts.some(([s]) => s === 'Latin');
  for (let c = 0; c < 128; c++) {
    const ch = String.fromCharCode(c);
    for (const [script, re] of scripts) {
      if (!ch.match(re)) continue;
      if (script === 'Latin') latinAscii[c] = 1;
      else asciiIsLatinOnly = false;
    }
  }
  const firstScript = scripts[0]?.[0];

  /** franc's getTopScript: the script with the largest share of the text's characters, the first listed on a tie. */
  function topScript(value: string): [string | undefined, number] {
    if (asciiIsLatinOnly) {
      let latin = 0;
      let ascii = true;
      for (let i = 0; i < value.length; i++) {
        const c = value.charCodeAt(i);
        if (c >= 128) {
          ascii = false;
          break;
        }
        latin += latinAscii[c] as number;
      }
      // Every other script counts 0: the first listed leads with 0 until Latin counts more.
      if (ascii) return latin > 0 ? ['Latin', latin / value.length || 0] : [firstScript, 0];
    }
    let top: string | undefined;
    let topShare = -1;
    for (const [script, re] of scripts) {
      const share = (value.match(re)?.length ?? 0) / value.length || 0;
      if (share > topShare) {
        topShare = share;
        top = script;
      }
    }
    return [top, topShare];
  }

  return function detect(input: string): LanguageScores {
    if (!input || input.length < minLength) return [['und', 1]];
    const value = input.slice(0, MAX_LENGTH);
    const [top, topShare] = topScript(value);
    const model = top === undefined ? undefined : models.get(top);
    if (!model) {
      if (top === undefined || topShare === 0 || !allow(top)) return [['und', 1]];
      return [[top, 1]]; // a script of one language (Han, Hangul, Thai...)
    }
    const n = model.languages.length;
    if (n === 0) return [['und', 1]];
    const distance = new Float64Array(n);
    let trigrams = 0;
    const counts = asDictionary(value);
    for (const t in counts) {
      if (!own(counts, t)) continue;
      trigrams++;
      const p = model.postings.get(t);
      if (!p) continue;
      const count = counts[t] as number;
      for (let k = 0; k < p.length; k += 2) {
        const d = count - (p[k + 1] as number) - 1;
        distance[p[k] as number]! += (d < 0 ? -d : d) - MAX_DIFFERENCE;
      }
    }
    const out: LanguageScores = model.languages.map((lang, i) => [lang, trigrams * MAX_DIFFERENCE + (distance[i] as number)]);
    out.sort((a, b) => a[1] - b[1]);
    const min = out[0]![1];
    const max = value.length * MAX_DIFFERENCE - min;
    for (const o of out) o[1] = 1 - (o[1] - min) / max || 0;
    return out;
  };
}
