// The file tree view: lists a directory when it is expanded, follows the
// watch stream, create / rename / delete from the context menu, and takes
// files dropped from the desktop (uploaded to the directory under the drop).

import { Connection, StreamHandle, toBase64 } from './protocol';
import { Entry, Effects, TreeModel, TreeNode, WatchEvent } from './tree';
import { basename, dirname, join, validName } from './paths';
import { ask, dialog, el, toast } from './ui';

/** Pause before re-opening a watch that failed. */
const WATCH_RETRY_MS = 3000;

/** Files larger than this are not uploaded by drag and drop (one websocket message each). */
const MAX_UPLOAD = 64 * 1024 * 1024;

export class TreeView {
  readonly el: HTMLElement;
  private list: HTMLElement;
  private model: TreeModel;
  private watch: StreamHandle | null = null;
  private menu: HTMLElement | null = null;
  onOpen: (path: string) => void = () => {};
  onChanged: (fx: Effects) => void = () => {};
  selected: string | null = null;

  constructor(
    private conn: Connection,
    private rootPath: string,
  ) {
    this.model = new TreeModel(rootPath);
    const bar = el('div', { class: 'tree-bar' });
    const btn = (label: string, title: string, testid: string, fn: () => void) => {
      const b = el('button', { title, 'data-testid': testid }, label);
      b.addEventListener('click', fn);
      bar.append(b);
    };
    btn('+ File', 'New file', 'new-file', () => void this.create(this.targetDir(), false));
    btn('+ Folder', 'New folder', 'new-folder', () => void this.create(this.targetDir(), true));
    btn('⟳', 'Refresh', 'refresh', () => void this.refresh());
    this.list = el('div', { class: 'tree', role: 'tree', 'data-testid': 'tree' });
    this.el = el('div', { class: 'tree-panel' }, bar, this.list);
    this.list.addEventListener('dragover', (ev) => {
      if (ev.dataTransfer?.types.includes('Files')) {
        ev.preventDefault();
        this.list.classList.add('drop');
      }
    });
    this.list.addEventListener('dragleave', () => this.list.classList.remove('drop'));
    this.list.addEventListener('drop', (ev) => void this.drop(ev));
    document.addEventListener('mousedown', (ev) => {
      if (this.menu && !this.menu.contains(ev.target as Node)) this.closeMenu();
    });
    conn.onReconnect(() => void this.refresh());
  }

  async start(): Promise<void> {
    await this.load(this.rootPath);
    this.startWatch();
  }

  private startWatch(): void {
    this.watch?.cancel();
    this.watch = this.conn.stream<WatchEvent[]>('watch', { path: this.rootPath }, {
      onEvent: (evs) => {
        let redraw = false;
        for (const ev of evs) {
          const fx = this.model.apply(ev);
          redraw ||= fx.redraw;
          for (const d of fx.relist) void this.load(d);
          this.onChanged(fx);
        }
        if (redraw) this.render();
      },
      onError: (e) => {
        // "disconnected": the page's reconnect refreshes the tree. Anything
        // else (the link to the target dropped, a watch limit): try again
        // shortly; a reconnect to the target restarts it sooner.
        if (e.kind === 'disconnected') return;
        const mine = this.watch;
        setTimeout(() => {
          if (this.watch === mine) void this.refresh();
        }, WATCH_RETRY_MS);
      },
    });
  }

  /** Lists every known directory again and restarts the watch (after a reconnect). */
  async refresh(): Promise<void> {
    await Promise.all(this.model.loadedDirs().map((d) => this.load(d)));
    this.startWatch();
  }

  private async load(path: string): Promise<void> {
    try {
      const entries = await this.conn.request<Entry[]>('list', { path });
      this.model.setChildren(path, entries);
    } catch (e) {
      const n = this.model.get(path);
      if (n) n.children = [];
      toast(`Cannot list ${path}: ${(e as Error).message}`, 'error');
    }
    this.render();
  }

  private targetDir(): string {
    const n = this.selected ? this.model.get(this.selected) : undefined;
    if (!n) return this.rootPath;
    return n.dir ? n.path : dirname(n.path);
  }

  async toggle(n: TreeNode): Promise<void> {
    n.expanded = !n.expanded;
    if (n.expanded && !n.children) await this.load(n.path);
    else this.render();
  }

  /** Expands the directories down to `path` (e.g. to show an opened file). */
  async reveal(path: string): Promise<void> {
    const parts: string[] = [];
    for (let d = dirname(path); d.length > this.rootPath.length; d = dirname(d)) parts.unshift(d);
    for (const d of parts) {
      const n = this.model.get(d);
      if (!n) break;
      if (!n.children) await this.load(d);
      n.expanded = true;
    }
    this.selected = path;
    this.render();
  }

  render(): void {
    const rows = this.model.rows();
    this.list.replaceChildren(
      ...rows.map(({ node, depth }) => {
        const r = el(
          'div',
          {
            class: `row${node.dir ? ' dir' : ''}${node.path === this.selected ? ' sel' : ''}`,
            role: 'treeitem',
            'data-path': node.path,
            'data-testid': 'tree-row',
            title: node.path,
          },
          el('span', { class: 'twisty' }, node.dir ? (node.expanded ? '▾' : '▸') : ''),
          el('span', { class: 'label' }, node.name),
        );
        r.style.paddingLeft = `${6 + depth * 14}px`;
        r.addEventListener('click', () => {
          this.selected = node.path;
          if (node.dir) void this.toggle(node);
          else {
            this.render();
            this.onOpen(node.path);
          }
        });
        r.addEventListener('contextmenu', (ev) => {
          ev.preventDefault();
          this.selected = node.path;
          this.render();
          this.showMenu(node, ev.clientX, ev.clientY);
        });
        return r;
      }),
    );
  }

  private closeMenu(): void {
    this.menu?.remove();
    this.menu = null;
  }

  private showMenu(n: TreeNode, x: number, y: number): void {
    this.closeMenu();
    const dir = n.dir ? n.path : dirname(n.path);
    const item = (label: string, testid: string, fn: () => void) => {
      const i = el('div', { class: 'item', 'data-testid': testid }, label);
      i.addEventListener('click', () => {
        this.closeMenu();
        fn();
      });
      return i;
    };
    this.menu = el(
      'div',
      { class: 'menu', 'data-testid': 'tree-menu' },
      item('New file…', 'menu-new-file', () => void this.create(dir, false)),
      item('New folder…', 'menu-new-folder', () => void this.create(dir, true)),
      item('Rename…', 'menu-rename', () => void this.rename(n)),
      item('Delete', 'menu-delete', () => void this.remove(n)),
    );
    this.menu.style.left = `${x}px`;
    this.menu.style.top = `${y}px`;
    document.body.append(this.menu);
  }

  async create(dir: string, isDir: boolean): Promise<void> {
    const name = await ask(isDir ? 'New folder' : 'New file', '', 'new-name');
    if (name === null) return;
    const bad = validName(name);
    if (bad) return toast(bad, 'error');
    const path = join(dir, name.trim());
    try {
      await this.conn.request('create', { path, dir: isDir });
      const parent = this.model.get(dir);
      if (parent) parent.expanded = true;
      await this.load(dir);
      if (!isDir) this.onOpen(path);
    } catch (e) {
      toast(`Cannot create ${path}: ${(e as Error).message}`, 'error');
    }
  }

  async rename(n: TreeNode): Promise<void> {
    const name = await ask(`Rename ${n.name}`, n.name, 'rename');
    if (name === null || name.trim() === n.name) return;
    const bad = validName(name);
    if (bad) return toast(bad, 'error');
    const to = join(dirname(n.path), name.trim());
    try {
      await this.conn.request('rename', { from: n.path, to });
      await this.load(dirname(n.path));
    } catch (e) {
      toast(`Cannot rename ${n.path}: ${(e as Error).message}`, 'error');
    }
  }

  async remove(n: TreeNode): Promise<void> {
    const what = n.dir ? `the folder ${n.name} and everything in it` : n.name;
    const ok = await dialog(`Delete ${n.name}?`, el('p', {}, `Delete ${what} on the target? This cannot be undone.`), [
      { label: 'Cancel', value: 'cancel' },
      { label: 'Delete', value: 'delete', primary: true, testid: 'confirm-delete' },
    ], 'cancel');
    if (ok !== 'delete') return;
    try {
      await this.conn.request('remove', { path: n.path });
      await this.load(dirname(n.path));
    } catch (e) {
      toast(`Cannot delete ${n.path}: ${(e as Error).message}`, 'error');
    }
  }

  private async drop(ev: DragEvent): Promise<void> {
    ev.preventDefault();
    this.list.classList.remove('drop');
    const files = [...(ev.dataTransfer?.files ?? [])];
    if (!files.length) return;
    const row = (ev.target as HTMLElement).closest('[data-path]') as HTMLElement | null;
    const n = row ? this.model.get(row.dataset.path!) : undefined;
    const dir = n ? (n.dir ? n.path : dirname(n.path)) : this.rootPath;
    for (const f of files) {
      if (f.size > MAX_UPLOAD) {
        toast(`${f.name} is too big to upload here (${f.size} bytes); use yonder fs put`, 'error');
        continue;
      }
      const path = join(dir, basename(f.name));
      try {
        const data = toBase64(new Uint8Array(await f.arrayBuffer()));
        await this.conn.request('upload', { path, data });
        toast(`Uploaded ${f.name}`);
      } catch (e) {
        toast(`Cannot upload ${f.name}: ${(e as Error).message}`, 'error');
      }
    }
    await this.load(dir);
  }
}
