export * from './definitions.js';
export * from './submission.js';
export * from './state.js';
export * from './callback-policy.js';
export * from './catalogue.js';
export * from './load.js';
export * from './routing.js';
export * from './versions.js';
