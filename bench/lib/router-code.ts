/**
 * The router's core as the CLI runs it: the compiled JavaScript in dist/ (bin/build.mjs
 * builds it first when a source is newer), or the TypeScript sources when it cannot be built
 * (said on stderr; `required` makes that an error instead).
 */
import { join } from 'node:path';

type Core = typeof import('../../core/index.js');
type Build = { ensureBuilt: (report?: (why: string) => void) => boolean };

export async function importRouterCore(label: string, opts: { required?: boolean } = {}): Promise<Core> {
  const { ensureBuilt } = (await import(join(import.meta.dirname, '../../bin/build.mjs'))) as Build;
  let why = '';
  // `as string` keeps TypeScript from resolving dist/ (absent before a build, no declarations).
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
  if (ensureBuilt((reason) => (why = reason))) return (await import('../../dist/core/index.js' as string)) as Core;
  if (opts.required) throw new Error(`${label}: dist/ could not be built: ${why}`);
  process.stderr.write(`${label}: running the TypeScript sources: ${why}\n`);
  return import('../../core/index.js');
}
