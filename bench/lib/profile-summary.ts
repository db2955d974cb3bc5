/**
 * Top self-time functions of V8 .cpuprofile files (from `--cpu-prof`, e.g.
 * `node --import tsx bench/e2e-throughput.ts --servers=router --profile`).
 *
 *   node --import tsx bench/lib/profile-summary.ts <file.cpuprofile[.gz] | dir> [top=25]
 *
 * Per profile: self time by module (core/<dir>, plugins/<dir>, npm:<package>, node
 * internals, GC), then the top functions. `.gz` files (the profiles kept in
 * bench/results/hot-path-profiles/) are read as they are.
 *
 * Owns: reading profiles. Must not: run anything.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { basename, join, relative } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export function summarize(file: string, top = 25): string {
  const raw = readFileSync(file);
  const p = JSON.parse((file.endsWith('.gz') ? gunzipSync(raw) : raw).toString('utf8')) as Profile;
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++)
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
  const byFn = new Map<string, number>();
  const byModule = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const n of p.nodes) {
    const us = self.get(n.id) ?? 0;
    total += us;
    const name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += us;
      continue;
    }
    const url = n.callFrame.url.replace(/^file:\/\//, '');
    const where = url ? `${relative(process.cwd(), url)}:${n.callFrame.lineNumber + 1}` : '';
    const key = `${name} ${where}`.trim();
    byFn.set(key, (byFn.get(key) ?? 0) + us);
    const mod = url === '' ? name : moduleOf(relative(process.cwd(), url));
    byModule.set(mod, (byModule.get(mod) ?? 0) + us);
  }
  const busy = total - idle;
  const rows = [...byFn.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  const out = [
    `${basename(file)}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s busy`,
    '  by module:',
  ];
  for (const [k, us] of [...byModule.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12))
    out.push(`  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${k}`);
  out.push('  by function:');
  for (const [k, us] of rows)
    out.push(`  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`);
  return out.join('\n');
}

function moduleOf(path: string): string {
  const npm = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
  if (npm) return `npm:${npm[1]}`;
  if (path.startsWith('node:')) return 'node internals';
  const own = /^((?:core|plugins|bench)\/[^/]+)\//.exec(path);
  return own ? own[1] : path;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const target = process.argv[2];
  if (!target) {
    console.error('usage: profile-summary <file.cpuprofile | dir> [top]');
    process.exit(1);
  }
  const top = Number(process.argv[3] ?? 25);
  const files = statSync(target).isDirectory()
    ? readdirSync(target)
        .filter((f) => /\.cpuprofile(\.gz)?$/.test(f))
        .map((f) => join(target, f))
        .sort()
    : [target];
  for (const f of files) console.log(summarize(f, top) + '\n');
}
