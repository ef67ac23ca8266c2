// Editor tabs: one CodeMirror view whose state is swapped per tab (each tab
// keeps its own undo history, selection and scroll), dirty markers, save
// with the version precondition and the conflict dialog.

import { EditorState, Compartment, Text } from '@codemirror/state';
import { EditorView, keymap } from '@codemirror/view';
import { basicSetup } from 'codemirror';
import { openSearchPanel } from '@codemirror/search';
import { Connection, RemoteError } from './protocol';
import { DocState, ReadReply, SaveOutcome, onDiskChange, resolve, save } from './docs';
import { languageFor } from './languages';
import { basename, relative } from './paths';
import { el, showConflictDialog, toast } from './ui';

interface Tab {
  doc: DocState;
  state: EditorState;
  saved: Text;
  dirty: boolean;
  /** Changed on the target while edited here: the next save will conflict. */
  stale: boolean;
  tabEl: HTMLElement;
  scrollTop: number;
}

export class Editors {
  private tabs = new Map<string, Tab>();
  private order: string[] = [];
  private active: string | null = null;
  private view: EditorView;
  private readonly language = new Compartment();
  readonly tabBar: HTMLElement;
  readonly host: HTMLElement;
  private readonly empty: HTMLElement;
  onActiveChange: (path: string | null) => void = () => {};

  constructor(
    private conn: Connection,
    private root: () => string,
  ) {
    this.tabBar = el('div', { class: 'tabs', 'data-testid': 'editor-tabs' });
    this.host = el('div', { class: 'editor-host', 'data-testid': 'editor' });
    this.empty = el('div', { class: 'empty' }, 'Open a file from the tree, or press Ctrl+P.');
    this.view = new EditorView({ parent: this.host });
    this.view.dom.style.display = 'none';
    this.host.append(this.empty);
  }

  private extensions(path: string) {
    return [
      basicSetup,
      this.language.of(languageFor(path)),
      keymap.of([
        { key: 'Mod-s', preventDefault: true, run: () => (void this.saveActive(), true) },
        { key: 'Mod-f', preventDefault: true, run: (v) => openSearchPanel(v) },
      ]),
      EditorView.updateListener.of((u) => {
        if (u.docChanged) this.markDirty(path, u.state);
      }),
    ];
  }

  private markDirty(path: string, state: EditorState): void {
    const t = this.tabs.get(path);
    if (!t) return;
    t.state = state;
    // Text.eq is cheap when lengths differ; equal lengths compare content,
    // which is what tells an undo back to the saved text.
    const dirty = !state.doc.eq(t.saved);
    if (dirty !== t.dirty) {
      t.dirty = dirty;
      this.renderTab(path);
    }
  }

  get activePath(): string | null {
    return this.active;
  }

  isOpen(path: string): boolean {
    return this.tabs.has(path);
  }

  /** Opens (or shows) a file, optionally at a 1-based line and UTF-16 column range. */
  async open(path: string, at?: { line: number; from?: number; to?: number }): Promise<void> {
    if (!this.tabs.has(path)) {
      let r: ReadReply;
      try {
        r = await this.conn.request<ReadReply>('read', { path });
      } catch (e) {
        toast(`Cannot open ${path}: ${(e as Error).message}`, 'error');
        return;
      }
      if (r.binary) {
        toast(`${basename(path)} is not text (${r.size} bytes); not opened`, 'error');
        return;
      }
      if (this.tabs.has(path)) return this.open(path, at);
      const text = r.text ?? '';
      const state = EditorState.create({ doc: text, extensions: this.extensions(path) });
      const tabEl = el('div', { class: 'tab', role: 'tab', 'data-path': path });
      tabEl.addEventListener('mousedown', (ev) => {
        if (ev.button === 1) void this.close(path);
      });
      tabEl.addEventListener('click', () => this.activate(path));
      this.tabs.set(path, {
        doc: { path, version: r.version, savedText: text },
        state,
        saved: state.doc,
        dirty: false,
        stale: false,
        tabEl,
        scrollTop: 0,
      });
      this.order.push(path);
      this.tabBar.append(tabEl);
      this.renderTab(path);
    }
    this.activate(path);
    if (at) this.reveal(at.line, at.from, at.to);
  }

  private reveal(line: number, from?: number, to?: number): void {
    const doc = this.view.state.doc;
    const l = doc.line(Math.max(1, Math.min(line, doc.lines)));
    const a = Math.min(l.from + (from ?? 0), l.to);
    const b = Math.min(l.from + (to ?? from ?? 0), l.to);
    this.view.dispatch({
      selection: { anchor: a, head: b },
      effects: EditorView.scrollIntoView(a, { y: 'center' }),
    });
    this.view.focus();
  }

  activate(path: string): void {
    const t = this.tabs.get(path);
    if (!t) return;
    if (this.active && this.active !== path) {
      const cur = this.tabs.get(this.active);
      if (cur) {
        cur.state = this.view.state;
        cur.scrollTop = this.view.scrollDOM.scrollTop;
      }
    }
    this.active = path;
    this.view.setState(t.state);
    this.view.dom.style.display = '';
    this.empty.style.display = 'none';
    requestAnimationFrame(() => (this.view.scrollDOM.scrollTop = t.scrollTop));
    for (const p of this.order) this.tabs.get(p)!.tabEl.classList.toggle('active', p === path);
    this.onActiveChange(path);
    this.view.focus();
  }

  private renderTab(path: string): void {
    const t = this.tabs.get(path);
    if (!t) return;
    t.tabEl.replaceChildren(
      el('span', { class: 'name', title: relative(path, this.root()) }, basename(path)),
      el('span', { class: 'dirty', 'data-testid': 'dirty' }, t.dirty ? '●' : ''),
      el('button', { class: 'close', title: 'Close (Alt+W)' }, '×'),
    );
    t.tabEl.classList.toggle('is-dirty', t.dirty);
    t.tabEl.classList.toggle('is-stale', t.stale);
    t.tabEl.querySelector('.close')!.addEventListener('click', (ev) => {
      ev.stopPropagation();
      void this.close(path);
    });
  }

  async close(path: string): Promise<void> {
    const t = this.tabs.get(path);
    if (!t) return;
    if (path === this.active) t.state = this.view.state;
    if (t.dirty && !confirm(`${basename(path)} has unsaved changes. Close it anyway?`)) return;
    this.tabs.delete(path);
    const i = this.order.indexOf(path);
    this.order.splice(i, 1);
    t.tabEl.remove();
    if (this.active === path) {
      this.active = null;
      const next = this.order[Math.min(i, this.order.length - 1)];
      if (next) this.activate(next);
      else {
        this.view.dom.style.display = 'none';
        this.empty.style.display = '';
        this.onActiveChange(null);
      }
    }
  }

  closeActive(): void {
    if (this.active) void this.close(this.active);
  }

  /** Alt+PageDown / Alt+PageUp, Alt+1..9. */
  switchBy(delta: number): void {
    if (!this.order.length) return;
    const i = this.active ? this.order.indexOf(this.active) : 0;
    this.activate(this.order[(i + delta + this.order.length) % this.order.length]);
  }

  switchTo(index: number): void {
    const p = this.order[index];
    if (p) this.activate(p);
  }

  async saveActive(): Promise<void> {
    if (!this.active) return;
    const path = this.active;
    const t = this.tabs.get(path)!;
    const mine = this.view.state.doc.toString();
    let outcome: SaveOutcome | null = await save(this.conn, t.doc, mine);
    while (outcome?.kind === 'conflict') {
      const choice = await showConflictDialog(path, mine, outcome.theirs, outcome.deleted);
      const r = await resolve(this.conn, t.doc, mine, outcome, choice);
      if (r.text !== null) this.replaceText(path, r.text);
      outcome = r.outcome;
      if (choice === 'theirs') {
        this.setSaved(path);
        toast(`Took the target's version of ${basename(path)}`);
      }
    }
    if (outcome?.kind === 'saved') {
      this.setSaved(path, mine);
      toast(`Saved ${basename(path)}`);
    } else if (outcome?.kind === 'error') {
      toast(`Cannot save ${basename(path)}: ${outcome.message}`, 'error');
    }
  }

  private setSaved(path: string, text?: string): void {
    const t = this.tabs.get(path)!;
    const state = path === this.active ? this.view.state : t.state;
    t.saved = text === undefined || state.doc.toString() === text ? state.doc : Text.of(text.split('\n'));
    t.stale = false;
    this.markDirty(path, state);
    this.renderTab(path);
  }

  private replaceText(path: string, text: string): void {
    const t = this.tabs.get(path)!;
    if (path === this.active) {
      this.view.dispatch({ changes: { from: 0, to: this.view.state.doc.length, insert: text } });
      t.state = this.view.state;
    } else {
      t.state = t.state.update({ changes: { from: 0, to: t.state.doc.length, insert: text } }).state;
    }
  }

  /** The watch says `path` changed on the target. */
  async diskChanged(path: string): Promise<void> {
    const t = this.tabs.get(path);
    if (!t) return;
    let r: ReadReply;
    try {
      r = await this.conn.request<ReadReply>('read', { path });
    } catch (e) {
      if (e instanceof RemoteError && e.kind === 'not_found') this.diskRemoved(path);
      return;
    }
    if (r.binary || r.text === undefined) return;
    const current = path === this.active ? this.view.state.doc : t.state.doc;
    const what = onDiskChange(t.doc, current.toString(), r.version);
    if (what === 'reload') {
      t.doc.version = r.version;
      t.doc.savedText = r.text;
      this.replaceText(path, r.text);
      this.setSaved(path, r.text);
    } else if (what === 'stale') {
      t.stale = true;
      this.renderTab(path);
    }
  }

  diskRemoved(path: string): void {
    const t = this.tabs.get(path);
    if (!t) return;
    t.stale = true;
    this.renderTab(path);
  }

  /** The open file paths and which one is active (kept across reloads). */
  snapshot(): { open: string[]; active: string | null } {
    return { open: [...this.order], active: this.active };
  }

  get dirtyCount(): number {
    let n = 0;
    for (const t of this.tabs.values()) if (t.dirty) n++;
    return n;
  }
}

export { RemoteError };
