/**
 * Seeded randomness for Jetflow: the same seed gives the same sequence, on every run and platform.
 * Used where output must be reproducible: the model build (libs/models/scripts/build-models.ts, whose
 * committed assets are checked byte for byte), the analyzers' seeded isolation forest and k-means,
 * and the test record batches.
 *
 * Changing this function changes the committed ONNX models: rebuild them and run
 * `npx tsx libs/models/scripts/build-models.ts --check`.
 */

/** A random number generator: each call gives the next number in [0, 1). */
export type Rng = () => number;

/** mulberry32: a small, fast 32-bit generator, good enough for sampling (not for secrets). */
export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
