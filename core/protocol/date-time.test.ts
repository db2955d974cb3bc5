import t from 'tap';
import { fullFormats } from 'ajv-formats/dist/formats.js';
import { isDateTime } from './date-time.js';

const reference = (fullFormats['date-time'] as { validate: (s: string) => boolean }).validate;

t.test('the same answers as ajv-formats on chosen timestamps', async (t) => {
  const cases = [
    '2024-05-01T10:00:00Z',
    '2024-05-01T10:00:00.123Z',
    '2024-05-01t10:00:00z',
    '2024-05-01 10:00:00+02:00',
    '2024-05-01\t10:00:00-0130',
    '2024-05-01\u00a010:00:00+05',
    '2024-02-29T00:00:00Z',
    '2023-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z',
    '2000-02-29T00:00:00Z',
    '2024-04-31T00:00:00Z',
    '2024-13-01T00:00:00Z',
    '2024-00-10T00:00:00Z',
    '2024-01-00T00:00:00Z',
    '2024-12-31T23:59:60Z',
    '2024-12-31T23:59:60.999Z',
    '2024-12-31T23:59:61Z',
    '2025-01-01T00:59:60+01:00',
    '2024-12-31T22:59:60-01:00',
    '2024-06-30T23:59:60+00:30',
    '2024-05-01T24:00:00Z',
    '2024-05-01T10:60:00Z',
    '2024-05-01T10:00:00',
    '2024-05-01T10:00:00.Z',
    '2024-05-01T10:00Z',
    '2024-05-01T10:00:00+24:00',
    '2024-05-01T10:00:00+23:60',
    '2024-05-01T10:00:00+1',
    '2024-05-01T10:00:00+01:0',
    '2024-05-01T10:00:00+0100',
    '2024-05-01T10:00:00Zx',
    '2024-05-01T10:00:00Z\n',
    ' 2024-05-01T10:00:00Z',
    '2024-05-01TT10:00:00Z',
    '2024-05-01X10:00:00Z',
    '24-05-01T10:00:00Z',
    '2024-5-01T10:00:00Z',
    '２０２４-05-01T10:00:00Z',
    '2024-05-01T10:00:00.0000000001+00:00',
    '',
  ];
  for (const s of cases) t.equal(isDateTime(s), reference(s), JSON.stringify(s));
});

t.test('the same answers as ajv-formats on 200,000 random mutations', async (t) => {
  // Deterministic (a linear congruential generator), so a failure reproduces.
  let seed = 12345;
  const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
  const alphabet = '0123456789-:.+TtZz \u00a0\u2028x9';
  const bases = [
    '2024-02-29T23:59:60.5+00:00',
    '2023-12-31T23:59:59Z',
    '2024-06-30 23:59:60-00:30',
    '2000-02-29t12:34:56.789z',
    '1999-01-01T00:00:00+0000',
  ];
  let mismatches = 0;
  let valid = 0;
  for (let n = 0; n < 200_000; n++) {
    let s = bases[rnd(bases.length)];
    for (let m = rnd(3) + 1; m > 0; m--) {
      const at = rnd(s.length + 1);
      const ch = alphabet[rnd(alphabet.length)];
      const op = rnd(3);
      s =
        op === 0
          ? s.slice(0, at) + ch + s.slice(at + 1)
          : op === 1
            ? s.slice(0, at) + ch + s.slice(at)
            : s.slice(0, at) + s.slice(at + 1);
    }
    const want = reference(s);
    if (want) valid++;
    if (isDateTime(s) !== want && mismatches++ < 5) t.fail(`${JSON.stringify(s)}: ajv-formats says ${want}`);
  }
  t.equal(mismatches, 0, 'no disagreement');
  t.ok(valid > 5000, `valid and invalid strings both tried (${valid} valid)`);
});
