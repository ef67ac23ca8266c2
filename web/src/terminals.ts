// Terminals: xterm.js views of terminals that live on the target.
//
// A terminal belongs to the target's daemon, not to this page. The page
// remembers the ids it opened (localStorage, per target and folder); after
// a reload it re-attaches each one still running and replays the retained
// output, and after a dropped websocket it resumes at the last byte shown,
// so nothing is lost or printed twice.

import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { Connection, RemoteError, StreamHandle, fromBase64 } from './protocol';
import { el, toast } from './ui';
import { TerminalOffsets } from './termstate';

interface TermView {
  id: string;
  term: Terminal;
  fit: FitAddon;
  pane: HTMLElement;
  tabEl: HTMLElement;
  offsets: TerminalOffsets;
  stream: StreamHandle | null;
  exited: boolean;
  title: string;
}

interface AttachEvent {
  t: 'attached' | 'data' | 'lost' | 'exit';
  data?: string;
  offset?: number;
  bytes?: number;
  code?: number | null;
  signal?: number | null;
  info?: { command: string };
}

export class Terminals {
  readonly tabBar: HTMLElement;
  readonly host: HTMLElement;
  private views = new Map<string, TermView>();
  private order: string[] = [];
  private active: string | null = null;
  private counter = 0;

  constructor(
    private conn: Connection,
    private storageKey: string,
  ) {
    this.tabBar = el('div', { class: 'tabs term-tabs', 'data-testid': 'terminal-tabs' });
    const add = el('button', { class: 'add', title: 'New terminal (Ctrl+`)', 'data-testid': 'new-terminal' }, '+');
    add.addEventListener('click', () => void this.create());
    this.tabBar.append(add);
    this.host = el('div', { class: 'term-host', 'data-testid': 'terminals' });
    new ResizeObserver(() => this.fitActive()).observe(this.host);
    conn.onReconnect(() => {
      for (const v of this.views.values()) if (!v.exited) this.attach(v);
    });
  }

  private saveIds(): void {
    localStorage.setItem(this.storageKey, JSON.stringify(this.order));
  }

  /** Re-attaches the terminals this page had open before a reload. */
  async restore(): Promise<void> {
    let ids: string[] = [];
    try {
      ids = JSON.parse(localStorage.getItem(this.storageKey) ?? '[]');
    } catch {
      ids = [];
    }
    if (!ids.length) return;
    const alive = await this.conn
      .request<{ id: string; exited: boolean }[]>('termList')
      .catch(() => []);
    const running = new Set(alive.filter((t) => !t.exited).map((t) => t.id));
    for (const id of ids) if (running.has(id)) this.add(id);
    this.saveIds();
    if (this.order.length) this.activate(this.order[this.order.length - 1]);
  }

  /** Opens a new terminal on the target (Ctrl+`). */
  async create(): Promise<string | null> {
    const { rows, cols } = this.size();
    try {
      const r = await this.conn.request<{ id: string }>('termOpen', { rows, cols });
      this.add(r.id);
      this.saveIds();
      this.activate(r.id);
      return r.id;
    } catch (e) {
      toast(`Cannot open a terminal: ${(e as Error).message}`, 'error');
      return null;
    }
  }

  private size(): { rows: number; cols: number } {
    const a = this.active ? this.views.get(this.active) : undefined;
    if (a) return { rows: a.term.rows, cols: a.term.cols };
    const r = this.host.getBoundingClientRect();
    // About 9x18 px per cell with the default font; the first fit corrects it.
    return { rows: Math.max(5, Math.floor(r.height / 18)), cols: Math.max(20, Math.floor(r.width / 9)) };
  }

  private add(id: string): void {
    const term = new Terminal({
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
      fontSize: 13,
      scrollback: 5000,
      cursorBlink: true,
      theme: { background: '#1e1f22' },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    const pane = el('div', { class: 'term-pane', 'data-term': id });
    this.host.append(pane);
    term.open(pane);
    const title = `Terminal ${++this.counter}`;
    const tabEl = el('div', { class: 'tab', 'data-term': id });
    const v: TermView = { id, term, fit, pane, tabEl, offsets: new TerminalOffsets(), stream: null, exited: false, title };
    tabEl.addEventListener('click', () => this.activate(id));
    this.renderTab(v);
    this.tabBar.insertBefore(tabEl, this.tabBar.lastChild);
    term.onData((d) => this.conn.send('termInput', { term: id, data: d }));
    // Binary input (some mouse reports) is a string of byte values.
    term.onBinary((d) => this.conn.send('termInput', { term: id, data: btoa(d), binary: true }));
    term.onResize(({ rows, cols }) => this.conn.send('termResize', { term: id, rows, cols }));
    this.views.set(id, v);
    this.order.push(id);
    this.attach(v);
  }

  private renderTab(v: TermView): void {
    const close = el('button', { class: 'close', title: 'Kill this terminal' }, '×');
    close.addEventListener('click', (ev) => {
      ev.stopPropagation();
      void this.kill(v.id);
    });
    v.tabEl.replaceChildren(el('span', { class: 'name' }, v.exited ? `${v.title} (exited)` : v.title), close);
  }

  private attach(v: TermView): void {
    v.stream?.cancel();
    const from = v.offsets.resumeFrom();
    v.stream = this.conn.stream<AttachEvent>('termAttach', { term: v.id, from }, {
      onEvent: (ev) => {
        if (ev.t === 'data' && ev.data !== undefined && ev.offset !== undefined) {
          const bytes = fromBase64(ev.data);
          const fresh = v.offsets.accept(ev.offset, bytes.length);
          if (fresh > 0) v.term.write(fresh === bytes.length ? bytes : bytes.subarray(bytes.length - fresh));
        } else if (ev.t === 'attached') {
          // Make the target's terminal our size (it may have been opened
          // by a page with another window size).
          this.conn.send('termResize', { term: v.id, rows: v.term.rows, cols: v.term.cols });
        } else if (ev.t === 'lost') {
          v.term.write(`\r\n[yonder: ${ev.bytes} bytes of output were dropped]\r\n`);
        } else if (ev.t === 'exit') {
          v.exited = true;
          v.term.write(`\r\n[process exited${ev.code != null ? ` with code ${ev.code}` : ''}]\r\n`);
          this.renderTab(v);
        }
      },
      onError: (e: RemoteError) => {
        if (e.kind === 'not_found') {
          v.exited = true;
          this.renderTab(v);
        }
        // "disconnected": onReconnect attaches again from the last offset.
      },
    });
  }

  activate(id: string): void {
    const v = this.views.get(id);
    if (!v) return;
    this.active = id;
    for (const x of this.views.values()) {
      const on = x.id === id;
      x.pane.style.display = on ? '' : 'none';
      x.tabEl.classList.toggle('active', on);
    }
    this.fitActive();
    v.term.focus();
  }

  private fitActive(): void {
    const v = this.active ? this.views.get(this.active) : undefined;
    if (!v || !this.host.offsetParent) return;
    try {
      v.fit.fit();
    } catch {
      // Not laid out yet; the ResizeObserver calls again.
    }
  }

  async kill(id: string): Promise<void> {
    const v = this.views.get(id);
    if (!v) return;
    if (!v.exited) await this.conn.request('termKill', { term: id }).catch(() => {});
    v.stream?.cancel();
    v.term.dispose();
    v.pane.remove();
    v.tabEl.remove();
    this.views.delete(id);
    this.order = this.order.filter((x) => x !== id);
    this.saveIds();
    if (this.active === id) {
      this.active = null;
      const next = this.order[this.order.length - 1];
      if (next) this.activate(next);
    }
  }

  get count(): number {
    return this.views.size;
  }
}
