/**
 * A realistic, seeded batch of customer-feedback records with its ground truth, for unit and
 * end-to-end tests of the `insights` flow: clearly positive and clearly negative texts, numeric
 * fields (rating, amount) with planted outliers, and a planted frequent term.
 *
 * The sentences are written here by hand and differ from the templates the models were trained on
 * (libs/models/scripts/build-models.ts), so tests over them say something about generalisation.
 */
import { mulberry32 } from '@jetflow/random';

export type FieldValue = number | string | null;

export interface FeedbackRecord {
  id: string;
  text: string;
  fields: Record<string, FieldValue>;
}

export type OutlierKind = 'amount-high' | 'rating-invalid' | 'amount-negative';

export interface FeedbackTruth {
  /** The polarity each record was written with. */
  sentiment: Record<string, 'positive' | 'negative'>;
  /** Records whose numeric fields were made extreme, with how. */
  outliers: Array<{ id: string; kind: OutlierKind; field: string }>;
  outlierIds: string[];
  plantedTerm: string | null;
  /** Records whose text contains the planted term. */
  plantedIds: string[];
}

export interface FeedbackBatchOptions {
  /** Records; default 300. */
  n?: number;
  seed?: number;
  /** How many records get an extreme numeric field; default 5. */
  outliers?: number;
  /** A made-up word put into about a quarter of the texts (as a brand name); default none. */
  plantedTerm?: string;
  /** Share of positive records; default 0.5. */
  positiveShare?: number;
}

const PRODUCTS = ['blender', 'headphones', 'rain jacket', 'coffee maker', 'phone case', 'desk lamp', 'backpack', 'kettle', 'vacuum cleaner', 'monitor', 'office chair', 'toaster'];

const POSITIVE = {
  open: [
    'Really happy with my {p}',
    'The {p} is excellent',
    'Great {p}, exactly as described',
    'Very pleased with this {p}',
    'Five stars for the {p}',
    'I love this {p}',
    'Fantastic {p} and lovely service',
    'Wonderful experience from start to finish with the {p}',
    'This {p} is perfect for me',
    'Superb quality {p}',
    'Brilliant {p}, so glad I bought it',
    'Impressed by how good the {p} is',
  ],
  detail: [
    'it arrived quickly and well packed',
    'setup took five minutes',
    'the quality is impressive for the price',
    'customer support was friendly and helpful',
    'it works perfectly every day',
    'the price was fair',
    'delivery was fast',
    'my whole family enjoys it',
    'it looks beautiful in the kitchen',
    'the battery lasts for ages',
    'it is quiet and easy to clean',
    'the staff answered all my questions',
  ],
  close: ['Highly recommend!', 'Will buy again.', 'Thanks a lot!', 'Best purchase this year.', 'Totally worth it.', ''],
};

const NEGATIVE = {
  open: [
    'Very disappointed with the {p}',
    'The {p} is terrible',
    'Worst {p} I have ever bought',
    'Awful experience with this {p}',
    'The {p} broke after a week',
    'Really poor quality {p}',
    'Not happy with this {p} at all',
    'Horrible service and a useless {p}',
    'Regret buying this {p}',
    'The {p} is a complete disaster',
    'Angry about the {p}',
    'Such a bad {p}',
  ],
  detail: [
    'delivery was late and the box was damaged',
    'it stopped working after two days',
    'support never answered my emails',
    'the refund is still missing',
    'it feels cheap and flimsy',
    'the instructions were useless',
    'I was charged twice',
    'it arrived scratched and dirty',
    'the motor makes a horrible noise',
    'it leaks everywhere',
    'nobody could help me',
    'the parts do not fit together',
  ],
  close: ['Never again.', 'Avoid.', 'Waste of money.', 'I want a refund.', 'Very frustrating.', ''],
};

const CHANNELS = ['web', 'app', 'email', 'phone'];

export function makeFeedbackBatch(opts: FeedbackBatchOptions = {}): { records: FeedbackRecord[]; truth: FeedbackTruth } {
  const n = opts.n ?? 300;
  const rng = mulberry32(opts.seed ?? 1);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T;
  const plantedTerm = opts.plantedTerm ?? null;
  const truth: FeedbackTruth = { sentiment: {}, outliers: [], outlierIds: [], plantedTerm, plantedIds: [] };
  const records: FeedbackRecord[] = [];
  const width = String(n).length;

  for (let i = 0; i < n; i++) {
    const id = `r${String(i + 1).padStart(width, '0')}`;
    const positive = rng() < (opts.positiveShare ?? 0.5);
    const t = positive ? POSITIVE : NEGATIVE;
    let product = pick(PRODUCTS);
    if (plantedTerm && rng() < 0.25) {
      product = `${plantedTerm} ${product}`;
      truth.plantedIds.push(id);
    }
    const detail = rng() < 0.5 ? `${pick(t.detail)} and ${pick(t.detail)}` : pick(t.detail);
    const text = `${pick(t.open).replace('{p}', product)}: ${detail}. ${pick(t.close)}`.trim();
    // Ratings agree with the text, mostly; amounts are log-normal around 40.
    const rating = positive ? (rng() < 0.9 ? 4 + Math.round(rng()) : 3) : rng() < 0.9 ? 1 + Math.round(rng()) : 3;
    const amount = rng() < 0.02 ? null : Math.round(Math.exp(3.7 + 0.35 * gaussian(rng)) * 100) / 100;
    records.push({ id, text, fields: { rating, amount, channel: pick(CHANNELS) } });
    truth.sentiment[id] = positive ? 'positive' : 'negative';
  }

  // Outliers on distinct records, far from anything the normal records can produce.
  const kinds: OutlierKind[] = ['amount-high', 'rating-invalid', 'amount-negative'];
  const taken = new Set<number>();
  for (let k = 0; k < Math.min(opts.outliers ?? 5, n); k++) {
    let i = Math.floor(rng() * n);
    while (taken.has(i)) i = (i + 1) % n;
    taken.add(i);
    const r = records[i] as FeedbackRecord;
    const kind = kinds[k % kinds.length] as OutlierKind;
    if (kind === 'amount-high') r.fields.amount = Math.round((20_000 + rng() * 30_000) * 100) / 100;
    else if (kind === 'amount-negative') r.fields.amount = -Math.round((5_000 + rng() * 5_000) * 100) / 100;
    else r.fields.rating = 40 + Math.floor(rng() * 60);
    truth.outliers.push({ id: r.id, kind, field: kind === 'rating-invalid' ? 'rating' : 'amount' });
    truth.outlierIds.push(r.id);
  }
  return { records, truth };
}

function gaussian(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(Math.max(rng(), 1e-12))) * Math.cos(2 * Math.PI * rng());
}
