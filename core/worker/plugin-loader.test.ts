import t from 'tap';
import { definePlugin, type PluginDefinition } from '../plugin-api.js';
import { loadPlugins } from './plugin-loader.js';

const base = () => ({ log: { child: () => base().log, trace() {}, debug() {}, info() {}, warn() {}, error() {} } as never, globalState: {} as never, chargers: {} as never, router: { nodeId: 'n', heartbeatIntervalSec: 300 } });
const p = (def: Partial<PluginDefinition> & { name: string }) => definePlugin({ version: '1.0.0', core: '^0.1.0', setup() {}, ...def });

t.test('contract checks at load', async (t) => {
  await t.rejects(loadPlugins([{ name: 'x', plugin: { name: 'x' } as never }], base), { code: 'OCR_ERR_PLUGIN_INVALID' }, 'not made with definePlugin');
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'Bad Name' }) as never }], base), { code: 'OCR_ERR_PLUGIN_INVALID' });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', core: '^9.0.0' }) as never }], base), { code: 'OCR_ERR_PLUGIN_CORE_VERSION' });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', dependsOn: ['b'] }) as never }, { name: 'b', plugin: p({ name: 'b' }) as never }], base), { code: 'OCR_ERR_PLUGIN_DEP_MISSING' });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a' }) as never }, { name: 'a2', plugin: p({ name: 'a' }) as never }], base), { code: 'OCR_ERR_PLUGIN_DUPLICATE' });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', options: { type: 'object', properties: { n: { type: 'integer' } } } }) as never, options: { n: 'x' } }], base), { code: 'OCR_ERR_PLUGIN_OPTIONS', message: /\/n must be integer/ });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a' }) as never, options: { n: 1 } }], base), { code: 'OCR_ERR_PLUGIN_OPTIONS' }, 'options given to a plugin without a schema');
  const h = (name: string) => p({ name, setup(api) { api.handle('1.6', 'Heartbeat', () => ({ currentTime: '' })); } });
  await t.rejects(loadPlugins([{ name: 'a', plugin: h('a') as never }, { name: 'b', plugin: h('b') as never }], base), { code: 'OCR_ERR_PLUGIN_HANDLER_CONFLICT', message: /"a" and "b" both handle 1\.6 Heartbeat/ });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', setup(api) { api.handle('1.6', 'NoSuch' as never, () => ({}) as never); } }) as never }], base), { code: 'OCR_ERR_PLUGIN_UNKNOWN_ACTION' });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', setup(api) { api.hook('onNothing' as never, (() => undefined) as never); } }) as never }], base), { code: 'OCR_ERR_PLUGIN_UNKNOWN_HOOK' });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', ocpp: ['1.6'], setup(api) { api.handle('2.0.1', 'Heartbeat', () => ({ currentTime: '' })); } }) as never }], base), { code: 'OCR_ERR_PLUGIN_INVALID' }, 'version outside the plugin ocpp list');
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', setup() { throw new Error('boom'); } }) as never }], base), { code: 'OCR_ERR_PLUGIN_SETUP', message: /boom/ });
  await t.rejects(loadPlugins([{ name: 'no-such-plugin-anywhere' }], base), { code: 'OCR_ERR_PLUGIN_NOT_FOUND' });
  // An installed npm package is resolved by name; this one is not a plugin.
  await t.rejects(loadPlugins([{ name: 'semver' }], base), { code: 'OCR_ERR_PLUGIN_INVALID', message: /semver.*definePlugin/ });
  await t.rejects(loadPlugins([{ name: '@clickhouse/client' }], base), { code: 'OCR_ERR_PLUGIN_INVALID' }, 'scoped package names too');
});

t.test('hook tables: filtered by action at load, ordered pre / config / post', async (t) => {
  const order: string[] = [];
  const mk = (name: string, o?: 'pre' | 'post') => p({ name, setup(api) { api.hook('onCall', { order: o, actions: ['Heartbeat'], handler: () => { order.push(name); return undefined; } }); } });
  const table = await loadPlugins([{ name: 'a', plugin: mk('a', 'post') as never }, { name: 'b', plugin: mk('b') as never }, { name: 'c', plugin: mk('c', 'pre') as never }, { name: 'core' }], base);
  t.same(table.byAction['1.6'].get('Heartbeat')!.onCall.map((r) => r.plugin), ['c', 'b', 'a']);
  t.equal(table.byAction['1.6'].get('StatusNotification')!.onCall.length, 0, 'filtered out of other actions');
  t.equal(table.byAction['2.0.1'].get('Heartbeat')!.handler!.plugin, 'core', 'core plugin loaded by name from plugins/');
  t.ok(Object.isFrozen(table.byAction['1.6'].get('Heartbeat')!.onCall));
});
