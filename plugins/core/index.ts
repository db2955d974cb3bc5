/**
 * Built-in core plugin: the messages every charger sends, for OCPP 1.6, 2.0.1 and 2.1.
 * See README.md for the contract card. Imports only core/plugin-api.ts.
 */
import { definePlugin } from '../../core/plugin-api.js';
import { onBootNotification } from './handlers/boot-notification.js';
import { onHeartbeat } from './handlers/heartbeat.js';
import { onStatusNotification } from './handlers/status-notification.js';
import { onMeterValues } from './handlers/meter-values.js';
import { onDataTransfer } from './handlers/data-transfer.js';
import { onSecurityEventNotification } from './handlers/security-event-notification.js';
import { onNotifyEvent } from './handlers/notify-event.js';

export interface CoreOptions {
  /** Boot status for chargers without a per-charger `bootPolicy` in the registry. @default 'Accepted' */
  defaultBootStatus: 'Accepted' | 'Pending';
  /** Heartbeat interval returned on Accepted; 0 = the router's boot.heartbeatIntervalSec. @default 0 */
  heartbeatIntervalSec: number;
  /** Retry interval returned on Pending / Rejected. @default 60 */
  retryIntervalSec: number;
}

const ALL = ['1.6', '2.0.1', '2.1'] as const;
const V2 = ['2.0.1', '2.1'] as const;

export default definePlugin<CoreOptions>({
  name: 'core',
  version: '0.1.0',
  core: '^0.1.0',
  ocpp: [...ALL],
  // Every handler is a few µs of synchronous work plus awaited state I/O: safe on the socket thread.
  inline: true,
  options: {
    type: 'object',
    additionalProperties: false,
    properties: {
      defaultBootStatus: { enum: ['Accepted', 'Pending'], default: 'Accepted' },
      heartbeatIntervalSec: { type: 'integer', minimum: 0, maximum: 86400, default: 0 },
      retryIntervalSec: { type: 'integer', minimum: 1, maximum: 86400, default: 60 },
    },
  },
  setup(api, opts) {
    const interval = opts.heartbeatIntervalSec || api.router.heartbeatIntervalSec;
    api.handle([...ALL], 'BootNotification', onBootNotification({ ...opts, heartbeatIntervalSec: interval }));
    api.handle([...ALL], 'Heartbeat', onHeartbeat);
    api.handle([...ALL], 'StatusNotification', onStatusNotification);
    api.handle([...ALL], 'MeterValues', onMeterValues);
    api.handle([...ALL], 'DataTransfer', onDataTransfer);
    api.handle([...ALL], 'SecurityEventNotification', onSecurityEventNotification);
    api.handle([...V2], 'NotifyEvent', onNotifyEvent);
  },
});
