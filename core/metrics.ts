/**
 * Prometheus metrics (prom-client), owned by the socket thread.
 *
 * Owns: metric names (`ocr_*`) and label sets. Workers do not register metrics: each batch
 * result carries per-frame outcome, action and handler time, and the socket thread counts
 * them here, so one /metrics covers all threads. Must not: use unbounded label values
 * (unknown action names are folded into "(unknown)").
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ocr_process_' });
  const m = {
    registry,
    connections: new Gauge({ name: 'ocr_connections', help: 'Connected chargers on this node', labelNames: ['version'], registers: [registry] }),
    upgrades: new Counter({ name: 'ocr_upgrades_total', help: 'WebSocket upgrade attempts by outcome', labelNames: ['outcome'], registers: [registry] }),
    messages: new Counter({ name: 'ocr_messages_total', help: 'Charger-initiated messages by action and outcome', labelNames: ['version', 'action', 'outcome'], registers: [registry] }),
    callErrors: new Counter({ name: 'ocr_call_errors_total', help: 'CALLERRORs sent to chargers by semantic code', labelNames: ['version', 'code'], registers: [registry] }),
    deviations: new Counter({ name: 'ocr_lenient_deviations_total', help: 'Spec deviations tolerated in lenient mode', labelNames: ['kind'], registers: [registry] }),
    dropped: new Counter({ name: 'ocr_frames_dropped_total', help: 'Frames dropped without processing, by reason', labelNames: ['reason'], registers: [registry] }),
    outbox: new Counter({ name: 'ocr_outbox_total', help: 'Socket send results other than sent', labelNames: ['result'], registers: [registry] }),
    commands: new Counter({ name: 'ocr_commands_total', help: 'CSMS-initiated CALLs by action and outcome', labelNames: ['action', 'outcome'], registers: [registry] }),
    queueDepth: new Gauge({ name: 'ocr_pool_pending_frames', help: 'Frames waiting for a free batch slot (load is shed at pool.maxPendingFrames)', registers: [registry] }),
    inFlight: new Gauge({ name: 'ocr_pool_batches_in_flight', help: 'Batches being processed by workers', registers: [registry] }),
    backlog: new Gauge({ name: 'ocr_lane_backlog_frames', help: 'Frames waiting behind their charger\'s in-flight frames', registers: [registry] }),
    batchSize: new Histogram({ name: 'ocr_batch_items', help: 'Items per batch', buckets: [1, 4, 16, 64, 256, 1024, 4096], registers: [registry] }),
    batchSeconds: new Histogram({ name: 'ocr_batch_round_trip_seconds', help: 'Batch round trip, socket thread to worker and back', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1], registers: [registry] }),
    handlerSeconds: new Histogram({ name: 'ocr_handler_seconds', help: 'Pipeline time per frame in the worker', labelNames: ['action'], buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.25, 1], registers: [registry] }),
    workerCrashes: new Counter({ name: 'ocr_worker_crashes_total', help: 'Batches lost to a worker crash (each item answered with InternalError)', registers: [registry] }),
  };
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;
