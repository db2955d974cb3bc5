/**
 * What every transport's socket handle shares: once closed (by us or by the peer) it is
 * inert, so the router may keep a reference and call it safely after close. Transports
 * implement only the raw operations. Must not: know a library.
 */
import { SendStatus, type Socket } from './transport.js';

export abstract class SocketBase<U> implements Socket<U> {
  closed = false;

  constructor(readonly data: U) {}

  protected abstract rawSend(bytes: Uint8Array | string): SendStatus;
  protected abstract rawCork(fn: () => void): void;
  protected abstract rawClose(code: number, reason: string): void;
  protected abstract rawBuffered(): number;

  send(bytes: Uint8Array | string): SendStatus {
    return this.closed ? SendStatus.Dropped : this.rawSend(bytes);
  }

  cork(fn: () => void): void {
    if (this.closed) return fn();
    this.rawCork(fn);
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.rawClose(code, reason);
    } catch {
      /* already gone */
    }
  }

  bufferedAmount(): number {
    return this.closed ? 0 : this.rawBuffered();
  }
}
