/**
 * Type tests of the plugin contract, checked by `tsc --noEmit` in `npm test` (each
 * @ts-expect-error must still be an error, or the typecheck fails).
 */
import { definePlugin, type CallContext } from '../../core/plugin-api.js';

definePlugin({
  name: 'typed',
  version: '1.0.0',
  core: '^0.1.0',
  setup(api) {
    // Payloads and results are typed per (version, action).
    api.handle('1.6', 'Authorize', (_ctx, p) => {
      const tag: string = p.idTag;
      return { idTagInfo: { status: tag ? 'Accepted' : 'Invalid' } };
    });
    // @ts-expect-error -- 'Maybe' is not an AuthorizationStatus
    api.handle('2.0.1', 'Authorize', () => ({ idTokenInfo: { status: 'Maybe' } }));
    // @ts-expect-error -- not an action of 1.6
    api.handle('1.6', 'TransactionEvent', () => ({}));
    // @ts-expect-error -- unknown hook name
    api.hook('onSomething', () => undefined);
    api.hook('after', {
      actions: ['Heartbeat'],
      order: 'post',
      handler: async (ctx: CallContext) => {
        // send is typed by action across the versions a hook may see
        const r = await ctx.send('GetConfiguration', { key: ['HeartbeatInterval'] });
        void r;
        // @ts-expect-error -- payload of Reset needs `type`
        await ctx.send('Reset', {});
        ctx.emit('meter_values', { ts: Date.now(), value: 1 });
        // @ts-expect-error -- not an analytics table
        ctx.emit('nope', {});
      },
    });
  },
});
