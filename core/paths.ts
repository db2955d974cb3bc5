/**
 * Where the running code is: TypeScript sources (tsx, Bun) or compiled JavaScript in dist/
 * (bin/build.mjs), and the project root either way, for files that are not compiled
 * (config/default.json, package.json) and for plugin paths given relative to the project.
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** True when this code was compiled to dist/ (no TypeScript loader needed). */
export const compiled = import.meta.url.endsWith('.js');

/** The directory holding core/ and plugins/ as they run: the project root, or dist/. */
export const codeRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The project root (package.json, config/, node_modules/). */
export const projectRoot = compiled ? resolve(codeRoot, '..') : codeRoot;

/** File extension of the running code's own modules. */
export const codeExt = compiled ? '.js' : '.ts';

let tsxRegistered = false;

/**
 * Imports a module by URL. A TypeScript module (a plugin or config file in TypeScript) imported
 * by compiled code needs a loader: tsx is registered in this thread on first need (Bun and the
 * sources under tsx need none).
 */
export async function importModule(url: string): Promise<unknown> {
  if (compiled && !tsxRegistered && /\.[cm]?tsx?$/.test(new URL(url).pathname) && !('Bun' in globalThis)) {
    const { register } = await import('tsx/esm/api');
    register();
    tsxRegistered = true;
  }
  return import(url);
}
