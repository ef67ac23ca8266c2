// The workbench page: sidebar (files, search, ports), editor tabs,
// terminals, status bar, keyboard shortcuts.

import '@xterm/xterm/css/xterm.css';
import './style.css';
import { Connection, ConnState, SocketLike, websocketUrl } from './protocol';
import { Editors } from './editor';
import { Terminals } from './terminals';
import { TreeView } from './treeview';
import { SearchPanel, quickOpen } from './search';
import { PortsPanel } from './ports';
import { PromptDialogs } from './prompts';
import { el, toast } from './ui';

interface Info {
  target: string;
  root: string;
  version: string;
  webVersion: string;
  host: string;
  user: string;
}

const STATE_LABEL: Record<ConnState, string> = {
  connecting: 'connecting…',
  connected: 'connected',
  reconnecting: 'reconnecting…',
  lost: 'connection lost: restart yonder web and reload',
};

async function main(): Promise<void> {
  const app = document.getElementById('app')!;
  const conn = new Connection(() => new WebSocket(websocketUrl(location)) as unknown as SocketLike);

  const stTarget = el('span', { class: 'st-target', 'data-testid': 'status-target' });
  const stConn = el('span', { class: 'st-conn', 'data-testid': 'status-connection' });
  const stVersion = el('span', { class: 'st-version', 'data-testid': 'status-version' });
  const stFile = el('span', { class: 'st-file' });
  const status = el('footer', { class: 'status', 'data-testid': 'status-bar' }, stTarget, stConn, stFile, stVersion);
  // The status shows the weaker link: page → yonder web, or yonder web → target.
  const showState = () => {
    let s: string = conn.state;
    let label = STATE_LABEL[conn.state];
    if (s === 'connected' && conn.target && conn.target.state !== 'connected') {
      s = conn.target.state;
      label = {
        connecting: 'connecting to the target…',
        failed: 'could not reach the target',
        lost: 'target lost: check the connection and restart yonder web',
        reconnecting: `reconnecting to the target… (attempt ${conn.target.attempt ?? 1})`,
      }[conn.target.state];
    }
    stConn.textContent = `● ${label}`;
    stConn.className = `st-conn ${s}`;
    document.body.dataset.conn = s;
  };
  conn.onState(showState);
  conn.onTarget(showState);
  // ssh's questions (password, 2FA, host key) while yonder web connects.
  new PromptDialogs(conn);
  const loading = el('div', { class: 'loading', 'data-testid': 'loading' }, 'Connecting to the target…');
  app.append(loading, status);
  conn.onTarget((t) => {
    if (t.state === 'failed') {
      const retry = el('button', { class: 'primary', 'data-testid': 'connect-retry' }, 'Retry');
      retry.addEventListener('click', () => void conn.request('retry').catch(() => {}));
      loading.replaceChildren(
        el(
          'div',
          { class: 'connect-failed' },
          el('p', { 'data-testid': 'connect-error' }, `Could not reach the target: ${t.message ?? ''}`),
          retry,
        ),
      );
    } else if (t.state === 'connecting') {
      loading.replaceChildren('Connecting to the target…');
    }
  });

  // The first request waits for the socket to open and the target to be reached.
  await new Promise<void>((resolve) => conn.onState((s) => s === 'connected' && resolve()));
  await new Promise<void>((resolve) => conn.onTarget((t) => t.state === 'connected' && resolve()));
  const info = await conn.request<Info>('info');
  const root = info.root;
  document.title = `${root.split('/').pop() || root} — ${info.target} — yonder`;
  stTarget.textContent = `${info.target} · ${info.user}@${info.host}:${root}`;
  stVersion.textContent = `yonder ${info.version}`;

  const editors = new Editors(conn, () => root);
  const tree = new TreeView(conn, root);
  const search = new SearchPanel(conn, () => root, (p, at) => void openFile(p, at));
  const ports = new PortsPanel(conn);
  const terminals = new Terminals(conn, `yonder.terminals:${info.target}:${root}`);

  async function openFile(path: string, at?: { line: number; from?: number; to?: number }) {
    await editors.open(path, at);
    void tree.reveal(path);
  }
  tree.onOpen = (p) => void openFile(p);
  tree.onChanged = (fx) => {
    for (const p of fx.changedFiles) if (editors.isOpen(p)) void editors.diskChanged(p);
    for (const p of fx.removedFiles) editors.diskRemoved(p);
  };
  editors.onActiveChange = (p) => {
    stFile.textContent = p ? p.slice(root.length + 1) : '';
    sessionStorage.setItem('yonder.editors', JSON.stringify(editors.snapshot()));
  };

  // Sidebar views.
  const views: Record<string, HTMLElement> = { files: tree.el, search: search.el, ports: ports.el };
  const sideTabs = el('div', { class: 'side-tabs' });
  const sideBody = el('div', { class: 'side-body' });
  const show = (name: string) => {
    for (const [k, v] of Object.entries(views)) v.style.display = k === name ? '' : 'none';
    for (const b of sideTabs.children) b.classList.toggle('active', (b as HTMLElement).dataset.view === name);
  };
  const portsLabel = el('span', {}, 'Ports');
  for (const [name, label] of [['files', 'Files'], ['search', 'Search'], ['ports', portsLabel]] as const) {
    const b = el('button', { 'data-view': name, 'data-testid': `side-${name}` }, label);
    b.addEventListener('click', () => {
      show(name);
      if (name === 'search') search.focus();
    });
    sideTabs.append(b);
  }
  ports.onCount = (n) => (portsLabel.textContent = n ? `Ports (${n})` : 'Ports');
  sideBody.append(tree.el, search.el, ports.el);
  show('files');

  const side = el('aside', { class: 'side' }, sideTabs, sideBody);
  const editorArea = el('section', { class: 'editor-area' }, editors.tabBar, editors.host);
  const termArea = el('section', { class: 'term-area' }, terminals.tabBar, terminals.host);
  const splitter = el('div', { class: 'splitter', title: 'Drag to resize' });
  const main = el('main', { class: 'main' }, editorArea, splitter, termArea);
  app.replaceChildren(el('div', { class: 'workbench' }, side, main), status);

  // Drag the splitter to share the height between editor and terminals.
  splitter.addEventListener('mousedown', (ev) => {
    ev.preventDefault();
    const move = (e: MouseEvent) => {
      const r = main.getBoundingClientRect();
      const h = Math.min(Math.max(r.bottom - e.clientY, 60), r.height - 80);
      termArea.style.height = `${h}px`;
    };
    const up = () => {
      document.removeEventListener('mousemove', move);
      document.removeEventListener('mouseup', up);
    };
    document.addEventListener('mousemove', move);
    document.addEventListener('mouseup', up);
  });

  // Shortcuts that work everywhere (the editor's own: Mod-S, Mod-F, Mod-Z, …).
  document.addEventListener(
    'keydown',
    (ev) => {
      const mod = ev.ctrlKey || ev.metaKey;
      const k = ev.key.toLowerCase();
      // In a terminal, Ctrl+P, Ctrl+S, … belong to the shell.
      const inTerminal = (ev.target as HTMLElement | null)?.closest?.('.term-host') != null;
      let handled = true;
      if (inTerminal && !(ev.ctrlKey && ev.code === 'Backquote')) handled = false;
      else if (mod && !ev.shiftKey && k === 'p') quickOpen(conn, root, (p) => void openFile(p));
      else if (mod && ev.shiftKey && k === 'f') {
        show('search');
        search.focus();
      } else if (mod && !ev.shiftKey && k === 's') void editors.saveActive();
      else if (ev.ctrlKey && (ev.key === '`' || ev.code === 'Backquote')) void terminals.create();
      else if (ev.altKey && ev.key === 'PageDown') editors.switchBy(1);
      else if (ev.altKey && ev.key === 'PageUp') editors.switchBy(-1);
      else if (ev.altKey && /^[1-9]$/.test(ev.key)) editors.switchTo(Number(ev.key) - 1);
      else if (ev.altKey && k === 'w') editors.closeActive();
      else handled = false;
      if (handled) {
        ev.preventDefault();
        ev.stopPropagation();
      }
    },
    true,
  );
  window.addEventListener('beforeunload', (ev) => {
    if (editors.dirtyCount) ev.preventDefault();
  });

  await tree.start();
  ports.start();
  await terminals.restore();
  // Editors open before a reload come back too.
  try {
    const snap = JSON.parse(sessionStorage.getItem('yonder.editors') ?? 'null') as { open: string[]; active: string | null } | null;
    if (snap) {
      for (const p of snap.open) await editors.open(p);
      if (snap.active) editors.activate(snap.active);
    }
  } catch {
    // A stale snapshot is not worth an error.
  }
  document.body.dataset.ready = 'true';
}

main().catch((e) => {
  toast(`The workbench failed to start: ${(e as Error).message}`, 'error');
  document.body.dataset.ready = 'failed';
});
