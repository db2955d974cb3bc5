import t from 'tap';
import { definePlugin, type PluginDefinition } from '../plugin-api.js';
import { inlineSupport, loadPlugins } from './plugin-loader.js';

const base = () => ({
  log: { child: () => base().log, trace() {}, debug() {}, info() {}, warn() {}, error() {} } as never,
  globalState: {} as never,
  chargers: {} as never,
  router: { nodeId: 'n', heartbeatIntervalSec: 300 },
});
const p = (def: Partial<PluginDefinition> & { name: string }) =>
  definePlugin({ version: '1.0.0', core: '^0.1.0', setup() {}, ...def });

t.test('contract checks at load', async (t) => {
  await t.rejects(
    loadPlugins([{ name: 'x', plugin: { name: 'x' } as never }], base),
    { code: 'OCR_ERR_PLUGIN_INVALID' },
    'not made with definePlugin',
  );
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'Bad Name' }) }], base), {
    code: 'OCR_ERR_PLUGIN_INVALID',
  });
  await t.rejects(loadPlugins([{ name: 'a', plugin: p({ name: 'a', core: '^9.0.0' }) }], base), {
    code: 'OCR_ERR_PLUGIN_CORE_VERSION',
  });
  await t.rejects(
    loadPlugins(
      [
        { name: 'a', plugin: p({ name: 'a', dependsOn: ['b'] }) },
        { name: 'b', plugin: p({ name: 'b' }) },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_DEP_MISSING' },
  );
  await t.rejects(
    loadPlugins(
      [
        { name: 'a', plugin: p({ name: 'a' }) },
        { name: 'a2', plugin: p({ name: 'a' }) },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_DUPLICATE' },
  );
  await t.rejects(
    loadPlugins(
      [
        {
          name: 'a',
          plugin: p({ name: 'a', options: { type: 'object', properties: { n: { type: 'integer' } } } }),
          options: { n: 'x' },
        },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_OPTIONS', message: /\/n must be integer/ },
  );
  await t.rejects(
    loadPlugins([{ name: 'a', plugin: p({ name: 'a' }), options: { n: 1 } }], base),
    { code: 'OCR_ERR_PLUGIN_OPTIONS' },
    'options given to a plugin without a schema',
  );
  const h = (name: string) =>
    p({
      name,
      setup(api) {
        api.handle('1.6', 'Heartbeat', () => ({ currentTime: '' }));
      },
    });
  await t.rejects(
    loadPlugins(
      [
        { name: 'a', plugin: h('a') },
        { name: 'b', plugin: h('b') },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_HANDLER_CONFLICT', message: /"a" and "b" both handle 1\.6 Heartbeat/ },
  );
  await t.rejects(
    loadPlugins(
      [
        {
          name: 'a',
          plugin: p({
            name: 'a',
            setup(api) {
              api.handle('1.6', 'NoSuch' as never, () => ({}) as never);
            },
          }),
        },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_UNKNOWN_ACTION' },
  );
  await t.rejects(
    loadPlugins(
      [
        {
          name: 'a',
          plugin: p({
            name: 'a',
            setup(api) {
              api.hook('onNothing' as never, (() => undefined) as never);
            },
          }),
        },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_UNKNOWN_HOOK' },
  );
  await t.rejects(
    loadPlugins(
      [
        {
          name: 'a',
          plugin: p({
            name: 'a',
            ocpp: ['1.6'],
            setup(api) {
              api.handle('2.0.1', 'Heartbeat', () => ({ currentTime: '' }));
            },
          }),
        },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_INVALID' },
    'version outside the plugin ocpp list',
  );
  await t.rejects(
    loadPlugins(
      [
        {
          name: 'a',
          plugin: p({
            name: 'a',
            setup() {
              throw new Error('boom');
            },
          }),
        },
      ],
      base,
    ),
    { code: 'OCR_ERR_PLUGIN_SETUP', message: /boom/ },
  );
  await t.rejects(loadPlugins([{ name: 'no-such-plugin-anywhere' }], base), { code: 'OCR_ERR_PLUGIN_NOT_FOUND' });
  // An installed npm package is resolved by name; this one is not a plugin.
  await t.rejects(loadPlugins([{ name: 'semver' }], base), {
    code: 'OCR_ERR_PLUGIN_INVALID',
    message: /semver.*definePlugin/,
  });
  await t.rejects(
    loadPlugins([{ name: '@clickhouse/client' }], base),
    { code: 'OCR_ERR_PLUGIN_INVALID' },
    'scoped package names too',
  );
});

t.test('hook tables: filtered by action at load, ordered pre / config / post', async (t) => {
  const order: string[] = [];
  const mk = (name: string, o?: 'pre' | 'post') =>
    p({
      name,
      setup(api) {
        api.hook('onCall', {
          order: o,
          actions: ['Heartbeat'],
          handler: () => {
            order.push(name);
            return undefined;
          },
        });
      },
    });
  const table = await loadPlugins(
    [
      { name: 'a', plugin: mk('a', 'post') },
      { name: 'b', plugin: mk('b') },
      { name: 'c', plugin: mk('c', 'pre') },
      { name: 'core' },
    ],
    base,
  );
  t.same(
    table.byAction['1.6'].get('Heartbeat')!.onCall.map((r) => r.plugin),
    ['c', 'b', 'a'],
  );
  t.equal(table.byAction['1.6'].get('StatusNotification')!.onCall.length, 0, 'filtered out of other actions');
  t.equal(
    table.byAction['2.0.1'].get('Heartbeat')!.handler!.plugin,
    'core',
    'core plugin loaded by name from plugins/',
  );
  t.ok(Object.isFrozen(table.byAction['1.6'].get('Heartbeat')!.onCall));
});

t.test("inline: what the socket thread may run, from the plugins' declarations", async (t) => {
  const spec = (def: PluginDefinition<never>) => ({ name: def.name, plugin: def });
  const dt = (
    name: string,
    inline: boolean,
    hook: 'onCall' | 'after' | 'onConnect' | 'onError' | 'onCallResult' = 'onCall',
    extra: Partial<PluginDefinition> = {},
  ) =>
    p({
      name,
      inline,
      ...extra,
      setup(api) {
        api.hook(hook, {
          actions: hook === 'onConnect' || hook === 'onError' ? undefined : ['DataTransfer'],
          versions: ['1.6'],
          handler: () => undefined,
        });
      },
    }) as PluginDefinition<never>;

  const coreOnly = inlineSupport(await loadPlugins([{ name: 'core' }], base));
  t.ok(
    coreOnly.actions['1.6']!.includes('StatusNotification') && coreOnly.actions['2.1']!.includes('MeterValues'),
    'the core plugin declares inline: its actions qualify',
  );
  t.ok(
    coreOnly.actions['1.6']!.includes('Authorize'),
    'an action nobody handles qualifies (NotSupported is answered by core code)',
  );
  t.same(
    [coreOnly.connection, coreOnly.replies],
    [
      ['1.6', '2.0.1', '2.1'],
      ['1.6', '2.0.1', '2.1'],
    ],
  );

  const mixed = inlineSupport(await loadPlugins([{ name: 'core' }, spec(dt('slow', false))], base));
  t.notOk(mixed.actions['1.6']!.includes('DataTransfer'), 'a non-inline onCall hook keeps its action in the workers');
  t.ok(mixed.actions['1.6']!.includes('StatusNotification'), 'other actions are unaffected');
  t.ok(mixed.actions['2.0.1']!.includes('DataTransfer'), 'and so are other versions');
  t.notOk(
    inlineSupport(await loadPlugins([{ name: 'core' }, spec(dt('slow', false, 'after'))], base)).actions[
      '1.6'
    ]!.includes('DataTransfer'),
    'after hooks count too',
  );
  t.ok(
    inlineSupport(await loadPlugins([{ name: 'core' }, spec(dt('quick', true))], base)).actions['1.6']!.includes(
      'DataTransfer',
    ),
    'an inline hook keeps it inline',
  );
  t.same(
    inlineSupport(await loadPlugins([{ name: 'core' }, spec(dt('slow', false, 'onConnect'))], base)).connection,
    ['2.0.1', '2.1'],
    'a non-inline onConnect hook keeps connection events in the workers',
  );
  t.same(
    inlineSupport(await loadPlugins([{ name: 'core' }, spec(dt('slow', false, 'onCallResult'))], base)).replies,
    ['2.0.1', '2.1'],
    'a non-inline onCallResult hook keeps charger replies in the workers',
  );
  const onError = inlineSupport(await loadPlugins([{ name: 'core' }, spec(dt('watcher', false, 'onError'))], base));
  t.equal(onError.actions['1.6'], undefined, 'a non-inline onError hook keeps its whole version in the workers');
  t.notOk(onError.connection.includes('1.6'));
  t.ok(onError.actions['2.0.1']!.length > 0);

  // An inline plugin needing a non-inline one cannot run without it.
  const needs = p({
    name: 'needs',
    inline: true,
    dependsOn: ['slow'],
    setup(api) {
      api.hook('onCall', { actions: ['Heartbeat'], handler: () => undefined });
    },
  }) as PluginDefinition<never>;
  const full = await loadPlugins([{ name: 'core' }, spec(dt('slow', false)), spec(needs)], base);
  t.same(
    full.plugins.map((x) => [x.name, x.inline]),
    [
      ['core', true],
      ['slow', false],
      ['needs', false],
    ],
  );
  t.notOk(inlineSupport(full).actions['1.6']!.includes('Heartbeat'), 'its actions stay in the workers');
  const socket = await loadPlugins([{ name: 'core' }, spec(dt('slow', false)), spec(needs)], base, {
    inlineOnly: true,
  });
  t.same(
    [socket.plugins.map((x) => x.name), socket.skipped],
    [['core'], ['slow', 'needs']],
    'the socket thread sets up only what may run there',
  );
  t.equal(socket.byAction['1.6'].get('DataTransfer')?.onCall.length ?? 0, 0);
  await t.rejects(loadPlugins([spec(p({ name: 'x', inline: 'yes' as never }) as PluginDefinition<never>)], base), {
    code: 'OCR_ERR_PLUGIN_INVALID',
    message: /inline/,
  });
});
