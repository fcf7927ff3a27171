// The tasks this worker serves. Kept apart from worker.mjs so tests import them without connecting.
import { defineTask, TerminalError } from '@jetflow/worker';

/** Counts the words of each record and the most frequent ones. Input: { records: [{ id, text }] }. */
export const tokenize = defineTask({
  subject: 'jetflow.task.custom.tokenize',
  run({ items }, ctx) {
    const counts = new Map();
    const perRecord = [];
    for (const [i, r] of items.entries()) {
      // Bad input fails the same way on every attempt: terminal, no retry, dead-lettered with the reason.
      if (!r || typeof r.text !== 'string') throw new TerminalError(`records[${i}].text must be a string`);
      if (ctx.signal.aborted) throw new Error('soft time limit reached'); // retried with the flow's backoff
      const words = r.text.toLowerCase().match(/[\p{L}\p{N}']+/gu) ?? [];
      for (const w of words) counts.set(w, (counts.get(w) ?? 0) + 1);
      perRecord.push({ id: r.id ?? String(i), words: words.length });
    }
    const top = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, 5);
    return { words: perRecord.reduce((n, r) => n + r.words, 0), perRecord, top };
  },
});

export const tasks = [tokenize];
