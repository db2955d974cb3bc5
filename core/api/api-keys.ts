/**
 * API key store: hashes of operator API keys from the config plus a local file
 * (`<dataDir>/api-keys.json`) for keys created with `ocpp-router api-key create`.
 *
 * Owns: loading and first-start bootstrap. On a fresh machine with no key anywhere, one key is
 * generated, its hash stored, and the key printed once on stderr: the API is never open
 * without a key, and the operator can still use it at once. Must not: store a key in clear.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { generateApiKey, matchApiKey, sha256Hex } from '../security/credentials.js';

export interface ApiKeyEntry {
  name: string;
  sha256: string;
  createdAt?: string;
}

export class ApiKeyStore {
  private keys: ApiKeyEntry[] = [];
  constructor(
    private readonly configKeys: ApiKeyEntry[],
    private readonly file: string,
  ) {}

  static fileIn(dataDir: string): string {
    return join(dataDir, 'api-keys.json');
  }

  async load(): Promise<void> {
    let fileKeys: ApiKeyEntry[] = [];
    try {
      fileKeys = (JSON.parse(await readFile(this.file, 'utf8')) as { keys: ApiKeyEntry[] }).keys ?? [];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.keys = [...this.configKeys, ...fileKeys];
  }

  get size(): number {
    return this.keys.length;
  }

  /** Creates a key, stores its hash in the key file, returns the key (shown once). */
  async create(name: string): Promise<string> {
    const key = generateApiKey();
    let fileKeys: ApiKeyEntry[] = [];
    try {
      fileKeys = (JSON.parse(await readFile(this.file, 'utf8')) as { keys: ApiKeyEntry[] }).keys ?? [];
    } catch {
      /* new file */
    }
    fileKeys.push({ name, sha256: sha256Hex(key), createdAt: new Date().toISOString() });
    await mkdir(dirname(this.file), { recursive: true });
    await writeFile(this.file, JSON.stringify({ keys: fileKeys }, null, 2) + '\n', { mode: 0o600 });
    this.keys.push(fileKeys[fileKeys.length - 1]);
    return key;
  }

  /** Name of the key, or null. */
  check(key: string): string | null {
    return matchApiKey(key, this.keys);
  }
}
