/**
 * The GPU suite, run from the compiled tests (dist/test/cuda) so that the GPU machine needs no
 * TypeScript toolchain: `npm run build:ts && npx jest -c jest.gpu.config.js`.
 * @type {import('jest').Config}
 */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test/cuda'],
  testMatch: ['**/*.test.js'],
  transform: {},
  testTimeout: 300000,
  // one file at a time: the out-of-memory test fills the card, which would fail its neighbours
  maxWorkers: 1,
};
