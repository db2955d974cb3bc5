/**
 * Generator of micro/conn-memory.ts: on 'go', opens N OCPP 1.6 connections to the port (at
 * most 200 handshakes pending), boots each once, reports { booted, failed } and keeps them
 * open until killed. Bounded: 60 s for the whole storm.
 */
import WebSocket from 'ws';

const [port, n] = process.argv.slice(2).map(Number) as [number, number];
const sockets: WebSocket[] = [];
let booted = 0;
let failed = 0;

function one(i: number): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ocpp/MEM-${i}`, ['ocpp1.6']);
    const done = (ok: boolean) => {
      if (ok) booted++;
      else failed++;
      resolve();
    };
    ws.once('open', () =>
      ws.send(JSON.stringify([2, 'b', 'BootNotification', { chargePointVendor: 'Bench', chargePointModel: 'Mem' }])),
    );
    ws.once('message', (m) => done(String(m).startsWith('[3,')));
    ws.once('error', () => done(false));
    sockets.push(ws);
  });
}

process.on('message', async () => {
  const deadline = Date.now() + 60_000;
  let next = 0;
  const lanes = Array.from({ length: Math.min(200, n) }, async () => {
    while (next < n && Date.now() < deadline) await one(next++);
  });
  await Promise.all(lanes);
  process.send!({ booted, failed: failed + (n - booted - failed) });
});
