// The float64 reference lives in lib/reference.ts (the CLI's `check` uses it too); tests import it from here.
export * from '../lib/reference';
export * from '../lib/examples';
