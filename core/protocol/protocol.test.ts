import t from 'tap';
import { execFileSync } from 'node:child_process';
import { isEmptyPayload, peekFrame } from './peek.js';
import { parseFrame, serializeCall, serializeCallError, serializeCallResult, unreadableIdReply } from './frame.js';
import { CallError, semanticCode, wireCode } from './call-error.js';
import { validatorFor, errorCodeOf } from './validate.js';
import { isChargerInitiated, isCsmsInitiated, versionOfSubprotocol } from './dialect.js';
import { loadSchemas } from './schemas.js';

const enc = (s: string) => new TextEncoder().encode(s);

t.test('peek reads type, id and action from bytes', async (t) => {
  t.same(peekFrame(enc('[2,"abc","Heartbeat",{}]')), { type: 2, id: 'abc', action: 'Heartbeat', payloadAt: 20 });
  t.same(peekFrame(enc(' [ 3 , "x-1" , {"a":1}]')), { type: 3, id: 'x-1' });
  t.same(peekFrame(enc('[4,"e","NotSupported","",{}]')), { type: 4, id: 'e' });
  t.same(peekFrame(enc('[6,"s","NotifyPeriodicEventStream",{}]')), {
    type: 6,
    id: 's',
    action: 'NotifyPeriodicEventStream',
    payloadAt: 34,
  });
  for (const bad of [
    '',
    'x',
    '[',
    '["2","a"]',
    '[2,5,"A",{}]',
    '[2,"a\\"b","A",{}]',
    '[2,"é","A",{}]',
    '[2,"a",5,{}]',
    '[2,"a"',
    '{}',
  ]) {
    t.equal(peekFrame(enc(bad)), undefined, `unpeekable: ${bad}`);
  }
  t.equal(peekFrame(enc(`[2,"${'a'.repeat(200)}","A",{}]`)), undefined, 'over-long id left to the parser');
  const hb = (s: string) => {
    const b = enc(s);
    const p = peekFrame(b)!;
    return isEmptyPayload(b, p.payloadAt!);
  };
  t.ok(hb('[2,"a","Heartbeat",{}]'));
  t.ok(hb('[2,"a","Heartbeat" , { } ]\n'));
  t.notOk(hb('[2,"a","Heartbeat",{"customData":{"vendorId":"x"}}]'));
  t.notOk(hb('[2,"a","Heartbeat",{}]x'));
  t.notOk(hb('[2,"a","Heartbeat",{},1]'));
});

t.test('peek: actions of every version, unknown ones, and frames inside a larger buffer', async (t) => {
  t.equal(peekFrame(enc('[2,"1","StatusNotification",{}]'))!.action, 'StatusNotification', '1.6');
  t.equal(peekFrame(enc('[2,"1","NotifyEVChargingNeeds",{}]'))!.action, 'NotifyEVChargingNeeds', '2.0.1');
  t.equal(peekFrame(enc('[2,"1","BatterySwap",{}]'))!.action, 'BatterySwap', '2.1');
  // Not a known action, a prefix of one, one of the same length: read as sent (the pipeline answers NotImplemented).
  for (const a of ['FooBar', 'Heartbea', 'HeartbeaT', 'heartbeat', 'Z'])
    t.equal(peekFrame(enc(`[2,"1","${a}",{}]`))!.action, a, `unknown action ${a}`);
  t.equal(peekFrame(enc('[2,"1","Heart\\u0062eat",{}]')), undefined, 'escaped action left to the parser');
  t.equal(peekFrame(enc('[2,"1","Heartbeaté",{}]')), undefined, 'non-ASCII action left to the parser');
  t.equal(peekFrame(enc('[2,"a\\tb","Heartbeat",{}]')), undefined, 'escape in the id left to the parser');
  t.equal(peekFrame(enc('[2,"a\u0001","Heartbeat",{}]')), undefined, 'control character in the id left to the parser');
  // uWS hands a view: offsets are the view's, not its ArrayBuffer's.
  const big = enc('xxxx[3,"id-7",{}][2,"id-8","Authorize",{"idTag":"T"}]yyyy');
  t.same(peekFrame(big.subarray(4, 17)), { type: 3, id: 'id-7' });
  t.same(peekFrame(big.subarray(17, big.length - 4)), { type: 2, id: 'id-8', action: 'Authorize', payloadAt: 21 });
  t.same(
    peekFrame(Buffer.from('[2,"b","Heartbeat",{}]')),
    { type: 2, id: 'b', action: 'Heartbeat', payloadAt: 18 },
    'a Buffer (Bun transport)',
  );
});

t.test('parseFrame and serializers', async (t) => {
  t.match(parseFrame('[2,"a","Heartbeat",{}]', '1.6'), { type: 2, id: 'a', action: 'Heartbeat', payload: {} });
  t.match(parseFrame('[3,"a",{"x":1}]', '2.0.1'), { type: 3, id: 'a', payload: { x: 1 } });
  t.match(parseFrame('[4,"a","NotSupported","d",{"k":1}]', '2.0.1'), {
    type: 4,
    id: 'a',
    code: 'NotSupported',
    description: 'd',
    details: { k: 1 },
  });
  t.match(parseFrame('[4,"a",5,null,null]', '1.6'), { type: 4, code: 'GenericError', description: '', details: {} });
  t.match(parseFrame('[6,"a","NotifyPeriodicEventStream",{}]', '2.1'), { type: 6 });
  t.match(parseFrame('[5,"a","InternalError","",{}]', '2.1'), { type: 5 });
  t.match(parseFrame('[6,"a","X",{}]', '2.0.1'), { type: 0, answer: true, error: { code: 'MessageTypeNotSupported' } });
  t.match(parseFrame('[3,"a"]', '1.6'), { type: 0, answer: false, id: 'a' });
  t.match(parseFrame('[3,"a",[]]', '1.6'), { type: 0, answer: false, error: { code: 'FormatViolation' } });
  t.match(parseFrame('[2.5,"a","X",{}]', '1.6'), { type: 0, error: { code: 'RpcFrameworkError' } });
  t.equal(serializeCall('1', 'Reset', { type: 'Soft' }), '[2,"1","Reset",{"type":"Soft"}]');
  t.equal(serializeCallResult('1', {}), '[3,"1",{}]');
  const long = serializeCallError('1', new CallError('GenericError', 'x'.repeat(400)), '2.0.1');
  t.equal((JSON.parse(long) as string[])[3].length, 255, 'description capped at 255');
  t.equal(unreadableIdReply('1.6'), null);
  t.equal(unreadableIdReply('2.0.1'), '-1');
});

t.test('CallError spelling per dialect (STYLE.md §6)', async (t) => {
  const rows: Array<[Parameters<typeof wireCode>[0], string, string]> = [
    ['FormatViolation', 'FormationViolation', 'FormatViolation'],
    ['OccurrenceConstraintViolation', 'OccurenceConstraintViolation', 'OccurrenceConstraintViolation'],
    ['RpcFrameworkError', 'FormationViolation', 'RpcFrameworkError'],
    ['MessageTypeNotSupported', 'FormationViolation', 'MessageTypeNotSupported'],
    ['NotImplemented', 'NotImplemented', 'NotImplemented'],
    ['NotSupported', 'NotSupported', 'NotSupported'],
    ['InternalError', 'InternalError', 'InternalError'],
    ['SecurityError', 'SecurityError', 'SecurityError'],
    ['PropertyConstraintViolation', 'PropertyConstraintViolation', 'PropertyConstraintViolation'],
    ['TypeConstraintViolation', 'TypeConstraintViolation', 'TypeConstraintViolation'],
  ];
  for (const [code, w16, w201] of rows) {
    t.equal(wireCode(code, '1.6'), w16, `${code} in 1.6`);
    t.equal(wireCode(code, '2.0.1'), w201, `${code} in 2.0.1`);
    t.equal(wireCode(code, '2.1'), w201, `${code} in 2.1`);
  }
  t.equal(semanticCode('OccurenceConstraintViolation'), 'OccurrenceConstraintViolation');
  t.equal(semanticCode('Whatever'), 'GenericError');
});

t.test('schema keyword → CallError code', async (t) => {
  t.equal(errorCodeOf('type'), 'TypeConstraintViolation');
  t.equal(errorCodeOf('required'), 'OccurrenceConstraintViolation');
  t.equal(errorCodeOf('minItems'), 'OccurrenceConstraintViolation');
  t.equal(errorCodeOf('maxItems'), 'OccurrenceConstraintViolation');
  for (const k of ['enum', 'maxLength', 'minimum', 'maximum', 'pattern'])
    t.equal(errorCodeOf(k), 'PropertyConstraintViolation', k);
  t.equal(errorCodeOf('additionalProperties'), 'FormatViolation');
});

t.test('validator: every version compiles every schema', async (t) => {
  for (const v of ['1.6', '2.0.1', '2.1'] as const) {
    const s = loadSchemas(v);
    const val = validatorFor(v);
    t.ok(s.actions.length > 20, `${v}: ${s.actions.length} actions`);
    for (const a of s.actions) {
      t.doesNotThrow(() => val.validate(a, 'request', {}), `${v} ${a} request compiles`);
      t.doesNotThrow(() => val.validate(a, 'response', {}), `${v} ${a} response compiles`);
    }
  }
  t.equal(loadSchemas('1.6').actions.length, 39, '1.6 incl. the security extension');
});

t.test('action catalog: the names read without keeping the schemas are those of the schemas', async (t) => {
  // In a fresh process, so the catalog is read from the files (here loadSchemas already ran).
  const code = `
    import { actionCatalog, loadSchemas } from ${JSON.stringify(new URL('./schemas.ts', import.meta.url).href)};
    const out = {};
    for (const v of ['1.6', '2.0.1', '2.1']) {
      const c = actionCatalog(v);
      const s = loadSchemas(v);
      out[v] = { catalog: [c.actions, [...c.request].sort(), [...c.response].sort()], schemas: [s.actions, [...s.request.keys()].sort(), [...s.response.keys()].sort()] };
    }
    process.stdout.write(JSON.stringify(out));`;
  const out = JSON.parse(
    execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8' }),
  ) as Record<string, { catalog: unknown; schemas: unknown }>;
  for (const v of ['1.6', '2.0.1', '2.1'])
    t.same(out[v].catalog, out[v].schemas, `${v}: same actions, requests and responses`);
  t.equal((out['2.1'].catalog as string[][])[0].length, loadSchemas('2.1').actions.length);
});

t.test('validator: multipleOf tolerates float error; lenient fixes timestamps', async (t) => {
  const v = validatorFor('1.6');
  const profile = (limit: number) => ({
    connectorId: 1,
    csChargingProfiles: {
      chargingProfileId: 1,
      stackLevel: 0,
      chargingProfilePurpose: 'TxDefaultProfile',
      chargingProfileKind: 'Absolute',
      chargingSchedule: { chargingRateUnit: 'A', chargingSchedulePeriod: [{ startPeriod: 0, limit }] },
    },
  });
  t.ok(v.validate('SetChargingProfile', 'request', profile(7.3)).ok, '7.3 is a multiple of 0.1');
  t.notOk(v.validate('SetChargingProfile', 'request', profile(7.35)).ok, '7.35 is not');
  const p = { connectorId: 1, errorCode: 'NoError', status: 'Available', timestamp: '2026-01-01T10:00:00.5' };
  t.notOk(v.validate('StatusNotification', 'request', p).ok);
  t.same(v.validate('StatusNotification', 'request', p, true), { ok: true, deviations: ['timestampWithoutOffset'] });
  t.equal(p.timestamp, '2026-01-01T10:00:00.5Z');
  const typeErr = v.validate(
    'StatusNotification',
    'request',
    { connectorId: 'x', errorCode: 'NoError', status: 'Available' },
    true,
  );
  t.match(typeErr, { ok: false, error: { code: 'TypeConstraintViolation' } }, 'lenient never tolerates a wrong type');
});

t.test('dialects', async (t) => {
  t.equal(versionOfSubprotocol('OCPP1.6'), '1.6');
  t.equal(versionOfSubprotocol('ocpp2.0'), undefined);
  t.ok(isChargerInitiated('1.6', 'StartTransaction'));
  t.ok(isCsmsInitiated('1.6', 'RemoteStartTransaction'));
  t.ok(isCsmsInitiated('2.0.1', 'DataTransfer') && isChargerInitiated('2.0.1', 'DataTransfer'));
  t.notOk(isCsmsInitiated('2.0.1', 'TransactionEvent'));
  for (const v of ['1.6', '2.0.1', '2.1'] as const) {
    const known = new Set(loadSchemas(v).actions);
    for (const a of ['Authorize', 'BootNotification', 'Heartbeat', 'StatusNotification', 'MeterValues'])
      t.ok(known.has(a) && isChargerInitiated(v, a), `${v} ${a}`);
  }
});
