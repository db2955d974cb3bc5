/**
 * Log-linear latency histogram (HDR-like): constant memory, O(1) record, ~1.6 % relative
 * precision (64 sub-buckets per power of two), exact below 64. Values are non-negative
 * integers (we record microseconds).
 *
 * Owns: recording and percentiles. Must not: know what is being measured.
 */

const SUB_BITS = 6;
const SUB = 1 << SUB_BITS; // 64
const MAX_EXP = 31;
const BUCKETS = SUB + (MAX_EXP - SUB_BITS + 1) * SUB;

function indexOf(v: number): number {
  if (v < SUB) return v;
  const e = 31 - Math.clz32(v); // v in [2^e, 2^(e+1)), e >= SUB_BITS
  const sub = (v >>> (e - SUB_BITS)) - SUB; // [0, SUB)
  return SUB + (e - SUB_BITS) * SUB + sub;
}

/** Smallest and largest value of bucket `i`. */
function rangeOf(i: number): [number, number] {
  if (i < SUB) return [i, i];
  const e = Math.floor((i - SUB) / SUB) + SUB_BITS;
  const sub = (i - SUB) % SUB;
  const lo = (sub + SUB) * 2 ** (e - SUB_BITS);
  return [lo, lo + 2 ** (e - SUB_BITS) - 1];
}

export interface HistogramSummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** A histogram as plain data (sparse buckets), to send between processes and merge there. */
export interface HistogramData {
  /** [bucket index, count] for every non-empty bucket. */
  buckets: [number, number][];
  count: number;
  sum: number;
  min: number;
  max: number;
}

export class Histogram {
  private counts = new Float64Array(BUCKETS);
  count = 0;
  private sum = 0;
  private minV = Infinity;
  private maxV = 0;

  record(value: number): void {
    let v = Math.round(value);
    if (v < 0) v = 0;
    if (v > 0x7fffffff) v = 0x7fffffff;
    this.counts[indexOf(v)]++;
    this.count++;
    this.sum += v;
    if (v < this.minV) this.minV = v;
    if (v > this.maxV) this.maxV = v;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.sum = 0;
    this.minV = Infinity;
    this.maxV = 0;
  }

  merge(other: Histogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i] += other.counts[i];
    this.count += other.count;
    this.sum += other.sum;
    this.minV = Math.min(this.minV, other.minV);
    this.maxV = Math.max(this.maxV, other.maxV);
  }

  toData(): HistogramData {
    const buckets: [number, number][] = [];
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]) buckets.push([i, this.counts[i]]);
    return { buckets, count: this.count, sum: this.sum, min: this.count ? this.minV : 0, max: this.maxV };
  }

  /** Adds a histogram recorded elsewhere (another process) as if its values were recorded here. */
  mergeData(d: HistogramData): void {
    if (d.count === 0) return;
    for (const [i, n] of d.buckets) if (i >= 0 && i < BUCKETS) this.counts[i] += n;
    this.count += d.count;
    this.sum += d.sum;
    this.minV = Math.min(this.minV, d.min);
    this.maxV = Math.max(this.maxV, d.max);
  }

  /** Value at quantile q (0..1): the midpoint of the bucket holding it, clamped to [min, max]. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i];
      if (seen >= rank) {
        const [lo, hi] = rangeOf(i);
        return Math.min(this.maxV, Math.max(this.minV, Math.round((lo + hi) / 2)));
      }
    }
    return this.maxV;
  }

  summary(): HistogramSummary {
    return {
      count: this.count,
      min: this.count ? this.minV : 0,
      mean: this.count ? Math.round(this.sum / this.count) : 0,
      p50: this.quantile(0.5),
      p90: this.quantile(0.9),
      p99: this.quantile(0.99),
      p999: this.quantile(0.999),
      max: this.maxV,
    };
  }
}
