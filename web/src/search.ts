// Workspace search (streamed results, click to open at the line) and quick
// open by file name (Ctrl+P).

import { Connection, StreamHandle } from './protocol';
import { join, relative } from './paths';
import { el, toast } from './ui';

interface Line {
  path: string;
  line: number;
  text: string;
  ranges: [number, number][];
}

type Opener = (path: string, at?: { line: number; from?: number; to?: number }) => void;

/** Results grouped by file, in arrival order. */
export function groupByFile(lines: Line[]): Map<string, Line[]> {
  const m = new Map<string, Line[]>();
  for (const l of lines) {
    const g = m.get(l.path);
    if (g) g.push(l);
    else m.set(l.path, [l]);
  }
  return m;
}

export class SearchPanel {
  readonly el: HTMLElement;
  private input: HTMLInputElement;
  private results: HTMLElement;
  private summary: HTMLElement;
  private opts = { fixed: true, caseInsensitive: false, word: false };
  private current: StreamHandle | null = null;
  private groups = new Map<string, HTMLElement>();

  constructor(
    private conn: Connection,
    private root: () => string,
    private open: Opener,
  ) {
    this.input = el('input', { type: 'search', placeholder: 'Search in files', 'data-testid': 'search-input' });
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') this.run();
    });
    const toggle = (label: string, title: string, key: keyof SearchPanel['opts'], invert = false) => {
      const b = el('button', { class: 'toggle', title }, label);
      const sync = () => b.classList.toggle('on', invert ? !this.opts[key] : this.opts[key]);
      b.addEventListener('click', () => {
        this.opts[key] = !this.opts[key];
        sync();
        if (this.input.value) this.run();
      });
      sync();
      return b;
    };
    this.summary = el('div', { class: 'summary', 'data-testid': 'search-summary' });
    this.results = el('div', { class: 'results', 'data-testid': 'search-results' });
    this.el = el(
      'div',
      { class: 'search-panel' },
      el(
        'div',
        { class: 'search-row' },
        this.input,
        toggle('.*', 'Regular expression', 'fixed', true),
        toggle('Aa', 'Match case', 'caseInsensitive', true),
        toggle('W', 'Whole word', 'word'),
      ),
      this.summary,
      this.results,
    );
  }

  focus(): void {
    this.input.focus();
    this.input.select();
  }

  run(): void {
    this.current?.cancel();
    this.results.replaceChildren();
    this.groups.clear();
    const pattern = this.input.value;
    if (!pattern) {
      this.summary.textContent = '';
      return;
    }
    this.summary.textContent = 'Searching…';
    let count = 0;
    this.current = this.conn.stream<{ lines?: Line[]; done?: { files: number; lines: number; truncated: boolean } }>(
      'search',
      {
        path: this.root(),
        pattern,
        fixed: this.opts.fixed,
        // "Aa" off means case-insensitive; smart case otherwise.
        caseInsensitive: this.opts.caseInsensitive,
        word: this.opts.word,
      },
      {
        onEvent: (ev) => {
          if (ev.lines) {
            count += ev.lines.length;
            for (const [path, lines] of groupByFile(ev.lines)) this.addGroup(path, lines);
            this.summary.textContent = `${count} results so far…`;
          }
          if (ev.done) {
            const d = ev.done;
            this.summary.textContent = d.lines
              ? `${d.lines} results in ${d.files} files${d.truncated ? ' (stopped: too many)' : ''}`
              : 'No results';
          }
        },
        onError: (e) => {
          this.summary.textContent = e.message;
        },
      },
    );
  }

  private addGroup(path: string, lines: Line[]): void {
    let g = this.groups.get(path);
    if (!g) {
      g = el('div', { class: 'group' }, el('div', { class: 'file' }, relative(path, this.root())));
      this.groups.set(path, g);
      this.results.append(g);
    }
    for (const l of lines) {
      const row = el('div', { class: 'hit', 'data-testid': 'search-hit' });
      let pos = 0;
      for (const [a, b] of l.ranges) {
        row.append(l.text.slice(pos, a), el('mark', {}, l.text.slice(a, b)));
        pos = b;
      }
      row.append(l.text.slice(pos));
      row.prepend(el('span', { class: 'ln' }, `${l.line}`));
      const [from, to] = l.ranges[0] ?? [0, 0];
      row.addEventListener('click', () => this.open(path, { line: l.line, from, to }));
      g.append(row);
    }
  }
}

/** Ctrl+P: fuzzy file names from the target, best first. */
export function quickOpen(conn: Connection, root: string, open: Opener): void {
  if (document.querySelector('.quick-open')) return;
  const back = el('div', { class: 'modal-back' });
  const input = el('input', { type: 'text', placeholder: 'Go to file…', 'data-testid': 'quick-open-input' });
  const list = el('div', { class: 'qo-list', 'data-testid': 'quick-open-list' });
  const box = el('div', { class: 'modal quick-open', role: 'dialog', 'data-testid': 'quick-open' }, input, list);
  back.append(box);
  document.body.append(back);
  let stream: StreamHandle | null = null;
  let results: string[] = [];
  let selected = 0;
  const close = () => {
    stream?.cancel();
    back.remove();
  };
  const render = () => {
    list.replaceChildren(
      ...results.map((p, i) => {
        const r = el('div', { class: `qo-item${i === selected ? ' sel' : ''}`, 'data-testid': 'quick-open-item' }, p);
        r.addEventListener('click', () => {
          close();
          open(join(root, p));
        });
        return r;
      }),
    );
  };
  const query = () => {
    stream?.cancel();
    const q = input.value.trim();
    if (!q) {
      results = [];
      render();
      return;
    }
    stream = conn.stream<{ results: { path: string }[]; done: boolean }>('find', { path: root, query: q }, {
      onEvent: (u) => {
        results = u.results.map((r) => r.path);
        selected = Math.min(selected, Math.max(0, results.length - 1));
        render();
      },
      onError: (e) => toast(e.message, 'error'),
    });
  };
  input.addEventListener('input', () => {
    selected = 0;
    query();
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') close();
    else if (ev.key === 'ArrowDown') selected = Math.min(selected + 1, results.length - 1);
    else if (ev.key === 'ArrowUp') selected = Math.max(selected - 1, 0);
    else if (ev.key === 'Enter' && results[selected]) {
      close();
      open(join(root, results[selected]));
      return;
    } else return;
    ev.preventDefault();
    render();
  });
  back.addEventListener('mousedown', (ev) => {
    if (ev.target === back) close();
  });
  input.focus();
}
