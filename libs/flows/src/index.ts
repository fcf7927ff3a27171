export * from './definitions.js';
export * from './submission.js';
export * from './state.js';
export * from './callback-policy.js';
