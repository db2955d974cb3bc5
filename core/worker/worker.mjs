/**
 * Worker thread bootstrap (plain JS on purpose). On Node 20, tsx's `--import` loader hooks do
 * not reach worker threads, so each worker registers tsx itself before loading the
 * TypeScript entry. Bun runs TypeScript natively and needs no loader.
 */
if (!globalThis.Bun) {
  const { register } = await import('tsx/esm/api');
  register();
}
const mod = await import('./entry.ts');
export default mod.default;
