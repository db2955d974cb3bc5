#!/usr/bin/env node
// npm `bin` entry: Node 20 cannot run TypeScript by itself, so register tsx (esbuild-based,
// a runtime dependency) and hand over to the TypeScript CLI. Bun runs it natively.
if (!globalThis.Bun) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import('./ocpp-router.ts');
