/** Drift check: the generated action-type map matches what scripts/gen-action-types.ts makes now. */
import t from 'tap';
import { readFileSync } from 'node:fs';
import { OUTPUT, generate } from '../../scripts/gen-action-types.js';

t.test('action-types.generated.ts is up to date (run `npm run generate`)', async (t) => {
  t.equal(readFileSync(OUTPUT, 'utf8'), generate());
});
