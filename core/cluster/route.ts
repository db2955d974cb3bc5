/**
 * Command routing: send a CSMS-initiated CALL to a charger wherever it is connected.
 *
 * Owns: the choice between this node's CommandApi (LocalRoute) and the node bus
 * (RemoteRoute), from the registry's record of which node holds the charger. Must not:
 * validate payloads (the owning node does, knowing the charger's version).
 */
import { errors } from '../errors.js';
import type { CommandApi, CommandOptions } from '../command/command-api.js';
import type { ConnectionRegistry } from '../registry/connection-registry.js';
import type { StoreChargerRegistry } from '../state/registry.js';
import type { NodeBus } from './node-bus.js';

export class CommandRoute {
  constructor(
    private readonly nodeId: string,
    private readonly connections: ConnectionRegistry,
    private readonly commands: CommandApi,
    private readonly registry: StoreChargerRegistry,
    private readonly bus: NodeBus | null,
    private readonly defaultTimeoutMs: number,
  ) {}

  async call(
    cpId: string,
    action: string,
    payload: Record<string, unknown>,
    opts: CommandOptions = {},
  ): Promise<Record<string, unknown>> {
    if (this.connections.get(cpId) || !this.bus) return this.commands.call(cpId, action, payload, opts);
    const rec = await this.registry.get(cpId);
    if (!rec?.nodeId || rec.nodeId === this.nodeId) throw new errors.OCR_ERR_CMD_NOT_CONNECTED(cpId);
    return this.bus.request(rec.nodeId, { cpId, action, payload, timeoutMs: opts.timeoutMs ?? this.defaultTimeoutMs });
  }
}
