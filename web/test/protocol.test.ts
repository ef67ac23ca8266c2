import { describe, expect, it } from 'vitest';
import { Connection, RemoteError, SocketLike, fromBase64, toBase64, websocketUrl } from '../src/protocol';

/** A socket the test drives by hand. */
class FakeSocket implements SocketLike {
  sent: Record<string, unknown>[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: unknown) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.onclose?.({});
  }
  open() {
    this.onopen?.({});
  }
  reply(obj: object) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
}

function setup(opts: { budgetMs?: number } = {}) {
  const sockets: FakeSocket[] = [];
  const timers: (() => void)[] = [];
  let now = 0;
  const conn = new Connection(
    () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    { delays: [10, 20], budgetMs: opts.budgetMs ?? 1000, now: () => now, setTimer: (fn) => timers.push(fn) },
  );
  const states: string[] = [];
  conn.onState((s) => states.push(s));
  return {
    conn,
    sockets,
    states,
    fireTimers: () => timers.splice(0).forEach((t) => t()),
    advance: (ms: number) => (now += ms),
  };
}

describe('Connection', () => {
  it('matches answers to requests by id, in any order', async () => {
    const { conn, sockets } = setup();
    sockets[0].open();
    const a = conn.request<number>('list', { path: '/a' });
    const b = conn.request<number>('list', { path: '/b' });
    const [ra, rb] = sockets[0].sent;
    expect(ra).toMatchObject({ op: 'list', path: '/a' });
    sockets[0].reply({ id: rb.id, ok: 2 });
    sockets[0].reply({ id: ra.id, ok: 1 });
    expect(await a).toBe(1);
    expect(await b).toBe(2);
    expect(conn.inFlight).toBe(0);
  });

  it('turns an error answer into a RemoteError with its kind', async () => {
    const { conn, sockets } = setup();
    sockets[0].open();
    const p = conn.request('write', {});
    sockets[0].reply({ id: sockets[0].sent[0].id, err: { kind: 'conflict', message: 'changed' } });
    await expect(p).rejects.toMatchObject({ kind: 'conflict', message: 'changed' });
  });

  it('delivers stream events until the end, and cancels on request', () => {
    const { conn, sockets } = setup();
    sockets[0].open();
    const got: unknown[] = [];
    let ended = false;
    conn.stream('watch', { path: '/' }, { onEvent: (e) => got.push(e), onEnd: () => (ended = true) });
    const id = sockets[0].sent[0].id;
    sockets[0].reply({ id, ev: 1 });
    sockets[0].reply({ id, ev: 2 });
    sockets[0].reply({ id, end: true });
    expect(got).toEqual([1, 2]);
    expect(ended).toBe(true);
    const h = conn.stream('search', {}, { onEvent: () => got.push('late') });
    const id2 = sockets[0].sent[1].id;
    h.cancel();
    expect(sockets[0].sent[2]).toMatchObject({ op: 'cancel', target: id2 });
    sockets[0].reply({ id: id2, ev: 3 });
    expect(got).toEqual([1, 2]);
  });

  it('fails pending work on a drop, reconnects and tells the owners', async () => {
    const { conn, sockets, states, fireTimers } = setup();
    sockets[0].open();
    let reconnected = 0;
    conn.onReconnect(() => reconnected++);
    const p = conn.request('read', {});
    let streamErr: RemoteError | null = null;
    conn.stream('termAttach', {}, { onEvent: () => {}, onError: (e) => (streamErr = e) });
    sockets[0].close();
    await expect(p).rejects.toMatchObject({ kind: 'disconnected' });
    expect(streamErr).toMatchObject({ kind: 'disconnected' });
    expect(conn.state).toBe('reconnecting');
    // Requests while reconnecting fail at once instead of hanging.
    await expect(conn.request('info')).rejects.toMatchObject({ kind: 'disconnected' });
    fireTimers();
    expect(sockets.length).toBe(2);
    sockets[1].open();
    expect(conn.state).toBe('connected');
    expect(reconnected).toBe(1);
    expect(states).toEqual(['connecting', 'connected', 'reconnecting', 'connected']);
  });

  it('gives up after the retry budget and says the connection is lost', () => {
    const { conn, sockets, fireTimers, advance } = setup({ budgetMs: 100 });
    sockets[0].open();
    sockets[0].close();
    for (let i = 1; i < 10 && conn.state !== 'lost'; i++) {
      expect(conn.state).toBe('reconnecting');
      fireTimers();
      advance(40);
      sockets[i].close();
    }
    expect(conn.state).toBe('lost');
    // 0, 40, 80: still trying; 120 ms after the drop: past the budget.
    expect(sockets.length).toBe(4);
  });

  it('ignores garbage and answers for unknown ids', () => {
    const { conn, sockets } = setup();
    sockets[0].open();
    sockets[0].onmessage?.({ data: 'not json' });
    sockets[0].reply({ id: 999, ok: 1 });
    expect(conn.state).toBe('connected');
  });
});

describe('helpers', () => {
  it('base64 round-trips every byte value, also past the chunk size', () => {
    const b = new Uint8Array(70_000).map((_, i) => i % 256);
    expect(fromBase64(toBase64(b))).toEqual(b);
  });
  it('builds the websocket URL of the page', () => {
    expect(websocketUrl({ protocol: 'http:', host: '127.0.0.1:5' })).toBe('ws://127.0.0.1:5/ws');
  });
});

describe('the target link', () => {
  it('reports its state and re-opens streams on a new generation only', () => {
    const { conn, sockets } = setup();
    sockets[0].open();
    let reopened = 0;
    conn.onReconnect(() => reopened++);
    const seen: string[] = [];
    conn.onTarget((t) => seen.push(t.state));
    sockets[0].reply({ target: { state: 'connected', generation: 1 } });
    expect(reopened).toBe(0);
    sockets[0].reply({ target: { state: 'reconnecting', generation: 1, attempt: 1 } });
    sockets[0].reply({ target: { state: 'connected', generation: 2 } });
    expect(reopened).toBe(1);
    // The same generation again (e.g. after the page's own reconnect): nothing to redo.
    sockets[0].reply({ target: { state: 'connected', generation: 2 } });
    expect(reopened).toBe(1);
    expect(seen).toEqual(['connected', 'reconnecting', 'connected', 'connected']);
    expect(conn.target).toMatchObject({ state: 'connected', generation: 2 });
  });
});

describe("ssh's questions", () => {
  it('reaches the page as a list and is answered by id', () => {
    const { conn, sockets } = setup();
    sockets[0].open();
    const seen: number[][] = [];
    conn.onPrompts((p) => seen.push(p.map((q) => q.id)));
    sockets[0].reply({ prompts: [{ id: 3, text: "u@h's password: ", secret: true }] });
    expect(conn.prompts[0].secret).toBe(true);
    void conn.answer(3, 'pw');
    void conn.answer(4, null);
    const sent = sockets[0].sent.slice(-2);
    expect(sent[0]).toMatchObject({ op: 'answer', prompt: 3, answer: 'pw' });
    // Cancel: no answer field at all.
    expect(sent[1]).toMatchObject({ op: 'answer', prompt: 4 });
    expect('answer' in sent[1]).toBe(false);
    sockets[0].reply({ prompts: [] });
    expect(seen).toEqual([[], [3], []]);
  });
  it('tells "connecting" and "failed" apart from a reconnect', () => {
    const { conn, sockets } = setup();
    sockets[0].open();
    let reopened = 0;
    conn.onReconnect(() => reopened++);
    sockets[0].reply({ target: { state: 'connecting' } });
    sockets[0].reply({ target: { state: 'failed', message: 'Permission denied' } });
    expect(conn.target).toMatchObject({ state: 'failed', message: 'Permission denied' });
    sockets[0].reply({ target: { state: 'connected', generation: 1 } });
    expect(reopened).toBe(0);
  });
});
