/** Small statistics for repeated runs: median and spread. */

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: number[]): Spread {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length };
}

/** `12.3 (11.9–12.8)` with `digits` decimals; one value prints alone. */
export function fmtSpread(s: Spread, digits = 0, scale = 1): string {
  if (!s.n) return '–';
  const f = (x: number) =>
    (x * scale).toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
  return s.n === 1 ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}
