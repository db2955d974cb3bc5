/**
 * The JSON Schema `date-time` format (RFC 3339 §5.6, a UTC offset required), as ajv-formats'
 * full `date-time` judges it, without allocating.
 *
 * Why hand-written: every OCPP message with a timestamp is checked against it (the
 * StatusNotification, MeterValues, transaction messages…), and ajv-formats' version splits the
 * string and runs two capturing regular expressions: ≈ 340 bytes of garbage per timestamp
 * and the socket thread's largest allocation inside validation at 10,000 StatusNotifications
 * a second (bench/trace-report.ts). This reads the characters in place. Its answers are
 * ajv-formats' answers: date-time.test.ts compares the two on valid, invalid and randomly
 * mutated timestamps.
 *
 * Owns: whether a string is a date-time. Must not: parse it (Date.parse does, in handlers).
 */

const DAYS = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const two = (s: string, i: number): number => (s.charCodeAt(i) - 0x30) * 10 + (s.charCodeAt(i + 1) - 0x30);
const twoDigits = (s: string, i: number): boolean => isDigit(s.charCodeAt(i)) && isDigit(s.charCodeAt(i + 1));

/** JavaScript's `\s`: what ajv-formats accepts between date and time besides T and t. */
function isJsWhitespace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    c === 0x20 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

export function isDateTime(s: string): boolean {
  // full-date "YYYY-MM-DD", then T, t or a whitespace character.
  if (s.length < 20) return false; // shortest: 2024-01-01T00:00:00Z
  if (
    !twoDigits(s, 0) ||
    !twoDigits(s, 2) ||
    s.charCodeAt(4) !== 0x2d ||
    !twoDigits(s, 5) ||
    s.charCodeAt(7) !== 0x2d ||
    !twoDigits(s, 8)
  )
    return false;
  const year = two(s, 0) * 100 + two(s, 2);
  const month = two(s, 5);
  const day = two(s, 8);
  if (month < 1 || month > 12 || day < 1) return false;
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  if (day > (month === 2 && leap ? 29 : DAYS[month])) return false;
  const sep = s.charCodeAt(10);
  if (sep !== 0x54 && sep !== 0x74 && !isJsWhitespace(sep)) return false;

  // partial-time "HH:MM:SS[.fraction]"
  if (
    !twoDigits(s, 11) ||
    s.charCodeAt(13) !== 0x3a ||
    !twoDigits(s, 14) ||
    s.charCodeAt(16) !== 0x3a ||
    !twoDigits(s, 17)
  )
    return false;
  const hr = two(s, 11);
  const min = two(s, 14);
  const secWhole = two(s, 17);
  let i = 19;
  if (s.charCodeAt(i) === 0x2e) {
    const start = ++i;
    while (isDigit(s.charCodeAt(i))) i++;
    if (i === start) return false;
  }
  // time-offset "Z" | "z" | ("+" / "-") HH [[":"] MM]
  let tzSign = 1;
  let tzH = 0;
  let tzM = 0;
  const c = s.charCodeAt(i);
  if (c === 0x5a || c === 0x7a) {
    if (i + 1 !== s.length) return false;
  } else if (c === 0x2b || c === 0x2d) {
    tzSign = c === 0x2d ? -1 : 1;
    if (!twoDigits(s, i + 1)) return false;
    tzH = two(s, i + 1);
    i += 3;
    if (i !== s.length) {
      if (s.charCodeAt(i) === 0x3a) i++;
      if (i + 2 !== s.length || !twoDigits(s, i)) return false;
      tzM = two(s, i);
    }
  } else return false;
  if (tzH > 23 || tzM > 59) return false;
  // Seconds compare by their whole part: a fraction never carries one past 60 or 61.
  if (hr <= 23 && min <= 59 && secWhole < 60) return true;
  // A leap second: 23:59:60 UTC, whatever the offset says locally (ajv-formats' rule).
  const utcMin = min - tzM * tzSign;
  const utcHr = hr - tzH * tzSign - (utcMin < 0 ? 1 : 0);
  return (utcHr === 23 || utcHr === -1) && (utcMin === 59 || utcMin === -1) && secWhole < 61;
}
