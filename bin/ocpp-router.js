#!/usr/bin/env node
// npm `bin` entry. Node runs the compiled JavaScript in dist/ (built on first start, and again
// after a source changed: bin/build.mjs); where it cannot be built (no compiler installed,
// read-only install) it registers tsx and runs the TypeScript sources. Bun runs them natively.
if (globalThis.Bun) {
  await import('./ocpp-router.ts');
} else {
  const { ensureBuilt } = await import('./build.mjs');
  let why = '';
  if (ensureBuilt((reason) => (why = reason))) {
    await import('../dist/bin/ocpp-router.js');
  } else {
    process.stderr.write(`ocpp-router: running the TypeScript sources through tsx (≈ 40 MB more per thread): ${why}\n`);
    const { register } = await import('tsx/esm/api');
    register();
    await import('./ocpp-router.ts');
  }
}
