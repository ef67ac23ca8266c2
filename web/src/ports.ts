// The ports panel: the target's listening ports as they come and go;
// forward one with a click and open it in a new tab.

import { Connection, StreamHandle } from './protocol';
import { el, toast } from './ui';

export interface PortEvent {
  open: boolean;
  address: string;
  port: number;
  pid: number;
  process: string;
  own: boolean;
}

export interface Forward {
  port: number;
  host: string;
  localPort: number;
}

/** The listening ports from a sequence of events: port → addresses and process. */
export class PortTable {
  private byPort = new Map<number, { addresses: Set<string>; process: string; pid: number }>();

  apply(e: PortEvent): void {
    if (e.own) return;
    const cur = this.byPort.get(e.port);
    if (e.open) {
      if (cur) {
        cur.addresses.add(e.address);
        if (e.process) cur.process = e.process;
      } else {
        this.byPort.set(e.port, { addresses: new Set([e.address]), process: e.process, pid: e.pid });
      }
    } else if (cur) {
      cur.addresses.delete(e.address);
      if (!cur.addresses.size) this.byPort.delete(e.port);
    }
  }

  clear(): void {
    this.byPort.clear();
  }

  list(): { port: number; address: string; process: string; pid: number }[] {
    return [...this.byPort.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([port, v]) => ({ port, address: [...v.addresses][0] ?? '', process: v.process, pid: v.pid }));
  }
}

export class PortsPanel {
  readonly el: HTMLElement;
  private table = new PortTable();
  private forwards = new Map<number, Forward>();
  private stream: StreamHandle | null = null;
  private list: HTMLElement;
  onCount: (n: number) => void = () => {};

  constructor(private conn: Connection) {
    this.list = el('div', { class: 'ports', 'data-testid': 'ports-list' });
    this.el = el('div', { class: 'ports-panel' }, this.list);
    conn.onReconnect(() => this.start());
  }

  start(): void {
    this.stream?.cancel();
    this.table.clear();
    void this.conn
      .request<Forward[]>('forwards')
      .then((fs) => {
        this.forwards = new Map(fs.map((f) => [f.port, f]));
        this.render();
      })
      .catch(() => {});
    this.stream = this.conn.stream<PortEvent>('ports', {}, {
      onEvent: (e) => {
        this.table.apply(e);
        this.render();
      },
      onError: (e) => {
        if (e.kind !== 'disconnected') this.list.replaceChildren(el('div', { class: 'empty' }, e.message));
      },
    });
  }

  private render(): void {
    const rows = this.table.list();
    this.onCount(rows.length);
    if (!rows.length) {
      this.list.replaceChildren(
        el('div', { class: 'empty' }, 'No listening ports on the target yet. Start a server in a terminal.'),
      );
      return;
    }
    this.list.replaceChildren(
      ...rows.map((r) => {
        const f = this.forwards.get(r.port);
        const row = el(
          'div',
          { class: 'port', 'data-testid': 'port-row', 'data-port': String(r.port) },
          el('span', { class: 'num' }, String(r.port)),
          el('span', { class: 'proc' }, r.process || (r.pid ? `pid ${r.pid}` : '')),
        );
        if (f) {
          const url = `http://127.0.0.1:${f.localPort}/`;
          const link = el('a', { href: url, target: '_blank', rel: 'noopener noreferrer', 'data-testid': 'port-open' }, `127.0.0.1:${f.localPort}`);
          const stop = el('button', { 'data-testid': 'port-stop' }, 'Stop');
          stop.addEventListener('click', () => void this.unforward(r.port));
          row.append(link, stop);
        } else {
          const b = el('button', { class: 'primary', 'data-testid': 'port-forward' }, 'Forward');
          b.addEventListener('click', () => void this.forward(r.port, r.address));
          row.append(b);
        }
        return row;
      }),
    );
  }

  async forward(port: number, address: string): Promise<void> {
    try {
      const f = await this.conn.request<Forward>('forward', { port, address });
      this.forwards.set(port, f);
      this.render();
      toast(`Port ${port} is forwarded to 127.0.0.1:${f.localPort}`);
    } catch (e) {
      toast(`Cannot forward port ${port}: ${(e as Error).message}`, 'error');
    }
  }

  async unforward(port: number): Promise<void> {
    await this.conn.request('unforward', { port }).catch(() => {});
    this.forwards.delete(port);
    this.render();
  }
}
