// The page's one websocket to the local `yonder web` process.
//
// Requests are JSON `{id, op, ...args}`; answers carry the id: `ok` (one
// answer), `ev` (a stream event), `end` (stream over) or `err` (either
// fails). The reference for every op is `Op` in crates/yonder-web/src/bridge.rs.
//
// The connection is a small state machine: connecting → connected →
// (socket closed) reconnecting → connected again, or lost after the retry
// budget. On a drop, pending requests fail with kind "disconnected" and
// every stream gets that error; their owners re-subscribe from
// `onReconnect` (terminals resume at the last byte they showed).

export type ConnState = 'connecting' | 'connected' | 'reconnecting' | 'lost';

/** What the connection needs of a WebSocket (a fake in unit tests). */
export interface SocketLike {
  send(data: string): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

/** The link from yonder web to the target, as the server reports it. */
export interface TargetState {
  state: 'connecting' | 'failed' | 'connected' | 'reconnecting' | 'lost';
  generation?: number;
  attempt?: number;
  /** Why the first connection failed (state "failed"). */
  message?: string;
}

/** A question ssh asks while connecting (password, passphrase, 2FA code,
 * unknown host key); answer with `answer(id, text | null)`. */
export interface SshPrompt {
  id: number;
  text: string;
  /** A password or code (hidden input), not a yes/no question. */
  secret: boolean;
}

export class RemoteError extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
  }
}

export interface StreamHandlers<E> {
  onEvent(ev: E): void;
  onEnd?(): void;
  onError?(err: RemoteError): void;
}

export interface StreamHandle {
  cancel(): void;
}

interface Pending {
  resolve?(v: unknown): void;
  reject?(e: RemoteError): void;
  stream?: StreamHandlers<unknown>;
}

/**
 * Delays between reconnect attempts, in ms; the last one repeats until
 * `RECONNECT_BUDGET_MS` has passed since the drop, then the state is
 * "lost". Two minutes covers a laptop waking up or a restarted network.
 */
export const RECONNECT_DELAYS = [100, 250, 500, 1000, 2000, 4000];
export const RECONNECT_BUDGET_MS = 120_000;

export interface ConnectionOptions {
  delays?: number[];
  budgetMs?: number;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
}

export class Connection {
  state: ConnState = 'connecting';
  private socket: SocketLike | null = null;
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private stateListeners: ((s: ConnState) => void)[] = [];
  private reconnectListeners: (() => void)[] = [];
  private targetListeners: ((t: TargetState) => void)[] = [];
  private promptListeners: ((p: SshPrompt[]) => void)[] = [];
  /** ssh's questions waiting for an answer, as last reported. */
  prompts: SshPrompt[] = [];
  /** The target link's generation last seen: a higher one means the
   * server reconnected to the target and streams must be re-opened. */
  private generation = 0;
  target: TargetState | null = null;
  private attempt = 0;
  private droppedAt = 0;
  private everConnected = false;
  private readonly delays: number[];
  private readonly budgetMs: number;
  private readonly now: () => number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;

  constructor(
    private readonly makeSocket: () => SocketLike,
    opts: ConnectionOptions = {},
  ) {
    this.delays = opts.delays ?? RECONNECT_DELAYS;
    this.budgetMs = opts.budgetMs ?? RECONNECT_BUDGET_MS;
    this.now = opts.now ?? (() => Date.now());
    this.setTimer = opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.open();
  }

  onState(cb: (s: ConnState) => void): void {
    this.stateListeners.push(cb);
    cb(this.state);
  }

  /** Called on every change of the target link's state. */
  onTarget(cb: (t: TargetState) => void): void {
    this.targetListeners.push(cb);
    if (this.target) cb(this.target);
  }

  /** Called with the waiting ssh questions whenever they change. */
  onPrompts(cb: (p: SshPrompt[]) => void): void {
    this.promptListeners.push(cb);
    cb(this.prompts);
  }

  /** Answers ssh's question `id`; `null` cancels it. */
  answer(id: number, answer: string | null): Promise<boolean> {
    return this.request<boolean>('answer', answer === null ? { prompt: id } : { prompt: id, answer });
  }

  /** Called after every successful reconnect (not the first connect), of
   * the page to yonder web or of yonder web to the target. */
  onReconnect(cb: () => void): void {
    this.reconnectListeners.push(cb);
  }

  private setState(s: ConnState): void {
    if (s === this.state) return;
    this.state = s;
    for (const cb of this.stateListeners) cb(s);
  }

  private open(): void {
    const sock = this.makeSocket();
    this.socket = sock;
    sock.onopen = () => {
      const again = this.everConnected;
      this.everConnected = true;
      this.attempt = 0;
      this.setState('connected');
      if (again) for (const cb of this.reconnectListeners) cb();
    };
    sock.onmessage = (ev) => {
      // For the benchmark (e2e/bench.mjs): when the last message arrived.
      (globalThis as { __yonderLastMessage?: number }).__yonderLastMessage = performance.now();
      this.receive(String(ev.data));
    };
    sock.onerror = () => {};
    sock.onclose = () => {
      if (this.socket !== sock) return;
      this.socket = null;
      this.dropped();
    };
  }

  private dropped(): void {
    const err = new RemoteError('disconnected', 'the connection to yonder web was lost');
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      if (p.stream) p.stream.onError?.(err);
      else p.reject?.(err);
    }
    if (this.state === 'connected' || this.state === 'connecting') {
      this.droppedAt = this.now();
    }
    if (this.now() - this.droppedAt >= this.budgetMs) {
      this.setState('lost');
      return;
    }
    this.setState('reconnecting');
    const delay = this.delays[Math.min(this.attempt, this.delays.length - 1)];
    this.attempt++;
    this.setTimer(() => this.open(), delay);
  }

  private receive(text: string): void {
    let msg: {
      id?: number;
      ok?: unknown;
      ev?: unknown;
      end?: boolean;
      err?: { kind: string; message: string };
      target?: TargetState;
      prompts?: SshPrompt[];
    };
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.target) {
      this.targetChanged(msg.target);
      return;
    }
    if (Array.isArray(msg.prompts)) {
      this.prompts = msg.prompts;
      for (const cb of this.promptListeners) cb(msg.prompts);
      return;
    }
    if (typeof msg.id !== 'number') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.err) {
      this.pending.delete(msg.id);
      const e = new RemoteError(msg.err.kind, msg.err.message);
      if (p.stream) p.stream.onError?.(e);
      else p.reject?.(e);
    } else if ('ok' in msg) {
      this.pending.delete(msg.id);
      p.resolve?.(msg.ok);
    } else if ('ev' in msg) {
      p.stream?.onEvent(msg.ev);
    } else if (msg.end) {
      this.pending.delete(msg.id);
      p.stream?.onEnd?.();
    }
  }

  private targetChanged(t: TargetState): void {
    this.target = t;
    for (const cb of this.targetListeners) cb(t);
    const g = t.generation ?? 0;
    const newer = t.state === 'connected' && this.generation !== 0 && g > this.generation;
    if (t.state === 'connected') this.generation = g;
    if (newer) for (const cb of this.reconnectListeners) cb();
  }

  private sendRaw(obj: object): boolean {
    if (!this.socket || this.state !== 'connected') return false;
    this.socket.send(JSON.stringify(obj));
    return true;
  }

  /** One request, one answer. */
  request<T>(op: string, args: object = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (!this.sendRaw({ id, op, ...args })) {
        reject(new RemoteError('disconnected', 'not connected to yonder web'));
        return;
      }
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    });
  }

  /** A request whose answer is a stream of events. */
  stream<E>(op: string, args: object, handlers: StreamHandlers<E>): StreamHandle {
    const id = this.nextId++;
    if (!this.sendRaw({ id, op, ...args })) {
      const e = new RemoteError('disconnected', 'not connected to yonder web');
      queueMicrotask(() => handlers.onError?.(e));
      return { cancel() {} };
    }
    this.pending.set(id, { stream: handlers as StreamHandlers<unknown> });
    return {
      cancel: () => {
        if (this.pending.delete(id)) this.sendRaw({ op: 'cancel', id: 0, target: id });
      },
    };
  }

  /** Fire and forget (terminal input and resizes): no answer comes. */
  send(op: string, args: object): boolean {
    return this.sendRaw({ id: 0, op, ...args });
  }

  /** Pending requests and streams (for tests and leak checks). */
  get inFlight(): number {
    return this.pending.size;
  }
}

/** The websocket URL of the page's own server. */
export function websocketUrl(loc: { protocol: string; host: string }): string {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

/** Decodes base64 into bytes (terminal output). */
export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Encodes bytes as base64 (uploads), in chunks to stay off the call-stack limit. */
export function toBase64(bytes: Uint8Array): string {
  let bin = '';
  const CHUNK = 0x8000;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    bin += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(bin);
}
