// The file tree's model: lazy (a directory's children are known only once
// it was listed, which happens when it is expanded) and updated from the
// watch stream. Events under directories never listed are ignored: the tree
// never holds more than what the user opened, however big the workspace.

import { basename, dirname, isUnder } from './paths';

export interface Entry {
  name: string;
  kind: 'file' | 'dir' | 'symlink' | 'other';
  /** A directory, or a link to one. */
  dir: boolean;
}

export interface WatchEvent {
  kind: 'ready' | 'created' | 'changed' | 'removed' | 'renamed' | 'overflow' | 'resync';
  path: string;
  to?: string;
  dir?: boolean;
}

export class TreeNode {
  /** Undefined until listed. */
  children?: TreeNode[];
  expanded = false;
  constructor(
    readonly path: string,
    readonly name: string,
    readonly dir: boolean,
    readonly kind: Entry['kind'] = dir ? 'dir' : 'file',
  ) {}
}

export interface Row {
  node: TreeNode;
  depth: number;
}

/** Directories first, then by name, case-insensitively like most file managers. */
export function compareNodes(a: TreeNode, b: TreeNode): number {
  if (a.dir !== b.dir) return a.dir ? -1 : 1;
  const x = a.name.toLowerCase();
  const y = b.name.toLowerCase();
  return x < y ? -1 : x > y ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** What the view must do after an event. */
export interface Effects {
  /** Directories to list again (their contents are no longer known). */
  relist: string[];
  /** Open files whose content changed or that disappeared. */
  changedFiles: string[];
  removedFiles: string[];
  /** The tree's rows changed: render again. */
  redraw: boolean;
}

export class TreeModel {
  readonly root: TreeNode;
  private byPath = new Map<string, TreeNode>();

  constructor(rootPath: string) {
    this.root = new TreeNode(rootPath, basename(rootPath) || rootPath, true);
    this.root.expanded = true;
    this.byPath.set(rootPath, this.root);
  }

  get(path: string): TreeNode | undefined {
    return this.byPath.get(path);
  }

  /** Replaces a listed directory's children (keeping what is known below kept ones). */
  setChildren(path: string, entries: Entry[]): void {
    const dir = this.byPath.get(path);
    if (!dir || !dir.dir) return;
    const old = new Map((dir.children ?? []).map((c) => [c.name, c]));
    const kids: TreeNode[] = [];
    for (const e of entries) {
      const prev = old.get(e.name);
      if (prev && prev.dir === e.dir) {
        kids.push(prev);
        old.delete(e.name);
      } else {
        const n = new TreeNode(join(path, e.name), e.name, e.dir, e.kind);
        kids.push(n);
        this.byPath.set(n.path, n);
      }
    }
    for (const gone of old.values()) this.forget(gone);
    kids.sort(compareNodes);
    dir.children = kids;
  }

  private forget(n: TreeNode): void {
    this.byPath.delete(n.path);
    for (const c of n.children ?? []) this.forget(c);
  }

  /** The directories whose contents are known (to re-list after a reconnect). */
  loadedDirs(): string[] {
    const out: string[] = [];
    for (const n of this.byPath.values()) if (n.dir && n.children) out.push(n.path);
    return out;
  }

  /** The rows to show: the root's children and every expanded directory's, depth first. */
  rows(): Row[] {
    const out: Row[] = [];
    const walk = (n: TreeNode, depth: number) => {
      for (const c of n.children ?? []) {
        out.push({ node: c, depth });
        if (c.dir && c.expanded) walk(c, depth + 1);
      }
    };
    walk(this.root, 0);
    return out;
  }

  private addChild(parent: TreeNode, path: string, isDir: boolean): boolean {
    if (!parent.children) return false;
    if (parent.children.some((c) => c.path === path)) return false;
    const n = new TreeNode(path, basename(path), isDir);
    this.byPath.set(path, n);
    parent.children.push(n);
    parent.children.sort(compareNodes);
    return true;
  }

  private removeNode(path: string): boolean {
    const n = this.byPath.get(path);
    if (!n || n === this.root) return false;
    const parent = this.byPath.get(dirname(path));
    if (parent?.children) parent.children = parent.children.filter((c) => c !== n);
    this.forget(n);
    return true;
  }

  /** Applies one watch event. */
  apply(ev: WatchEvent): Effects {
    const fx: Effects = { relist: [], changedFiles: [], removedFiles: [], redraw: false };
    if (!isUnder(ev.path, this.root.path) && !(ev.to && isUnder(ev.to, this.root.path))) return fx;
    switch (ev.kind) {
      case 'created': {
        const parent = this.byPath.get(dirname(ev.path));
        if (parent) fx.redraw = this.addChild(parent, ev.path, !!ev.dir);
        if (!ev.dir) fx.changedFiles.push(ev.path);
        break;
      }
      case 'changed':
        if (!ev.dir) fx.changedFiles.push(ev.path);
        break;
      case 'removed':
        fx.redraw = this.removeNode(ev.path);
        if (!ev.dir) fx.removedFiles.push(ev.path);
        break;
      case 'renamed': {
        const was = this.byPath.get(ev.path);
        const isDir = ev.dir ?? was?.dir ?? false;
        fx.redraw = this.removeNode(ev.path);
        if (!isDir) fx.removedFiles.push(ev.path);
        if (ev.to) {
          const parent = this.byPath.get(dirname(ev.to));
          if (parent) fx.redraw = this.addChild(parent, ev.to, isDir) || fx.redraw;
          if (!isDir) fx.changedFiles.push(ev.to);
        }
        break;
      }
      case 'resync':
      case 'overflow': {
        // Everything known under the path may be stale: list it again.
        for (const d of this.loadedDirs()) if (isUnder(d, ev.path)) fx.relist.push(d);
        break;
      }
      case 'ready':
        break;
    }
    return fx;
  }
}

function join(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}
