import { describe, expect, it } from 'vitest';
import { TreeModel } from '../src/tree';

const names = (m: TreeModel) => m.rows().map((r) => `${'  '.repeat(r.depth)}${r.node.name}`);

describe('TreeModel', () => {
  it('sorts directories first, then names case-insensitively', () => {
    const m = new TreeModel('/w');
    m.setChildren('/w', [
      { name: 'b.txt', kind: 'file', dir: false },
      { name: 'Zeta', kind: 'dir', dir: true },
      { name: 'A.txt', kind: 'file', dir: false },
      { name: 'alpha', kind: 'dir', dir: true },
    ]);
    expect(names(m)).toEqual(['alpha', 'Zeta', 'A.txt', 'b.txt']);
  });

  it('shows only expanded directories and ignores events in unlisted ones', () => {
    const m = new TreeModel('/w');
    m.setChildren('/w', [{ name: 'src', kind: 'dir', dir: true }]);
    const fx = m.apply({ kind: 'created', path: '/w/src/new.rs', dir: false });
    expect(fx.redraw).toBe(false);
    expect(m.get('/w/src/new.rs')).toBeUndefined();
    m.get('/w/src')!.expanded = true;
    m.setChildren('/w/src', [{ name: 'main.rs', kind: 'file', dir: false }]);
    expect(names(m)).toEqual(['src', '  main.rs']);
  });

  it('applies creations, removals and renames to listed directories', () => {
    const m = new TreeModel('/w');
    m.setChildren('/w', [{ name: 'a', kind: 'file', dir: false }]);
    expect(m.apply({ kind: 'created', path: '/w/b', dir: false }).redraw).toBe(true);
    expect(m.apply({ kind: 'created', path: '/w/b', dir: false }).redraw).toBe(false);
    const r = m.apply({ kind: 'renamed', path: '/w/a', to: '/w/c', dir: false });
    expect(r.removedFiles).toEqual(['/w/a']);
    expect(r.changedFiles).toEqual(['/w/c']);
    expect(names(m)).toEqual(['b', 'c']);
    expect(m.apply({ kind: 'removed', path: '/w/b', dir: false }).removedFiles).toEqual(['/w/b']);
    expect(names(m)).toEqual(['c']);
  });

  it('forgets a removed directory and everything known below it', () => {
    const m = new TreeModel('/w');
    m.setChildren('/w', [{ name: 'd', kind: 'dir', dir: true }]);
    m.setChildren('/w/d', [{ name: 'x', kind: 'file', dir: false }]);
    m.apply({ kind: 'removed', path: '/w/d', dir: true });
    expect(m.get('/w/d/x')).toBeUndefined();
    expect(m.loadedDirs()).toEqual(['/w']);
  });

  it('asks to re-list every loaded directory under a resync', () => {
    const m = new TreeModel('/w');
    m.setChildren('/w', [{ name: 'd', kind: 'dir', dir: true }, { name: 'e', kind: 'dir', dir: true }]);
    m.setChildren('/w/d', []);
    m.setChildren('/w/e', []);
    expect(m.apply({ kind: 'resync', path: '/w/d' }).relist).toEqual(['/w/d']);
    expect(m.apply({ kind: 'overflow', path: '/w' }).relist.sort()).toEqual(['/w', '/w/d', '/w/e']);
  });

  it('keeps the state of kept children when a directory is listed again', () => {
    const m = new TreeModel('/w');
    m.setChildren('/w', [{ name: 'd', kind: 'dir', dir: true }]);
    m.get('/w/d')!.expanded = true;
    m.setChildren('/w/d', [{ name: 'x', kind: 'file', dir: false }]);
    m.setChildren('/w', [{ name: 'd', kind: 'dir', dir: true }, { name: 'n', kind: 'file', dir: false }]);
    expect(names(m)).toEqual(['d', '  x', 'n']);
  });

  it('ignores events outside the root', () => {
    const m = new TreeModel('/w');
    m.setChildren('/w', []);
    expect(m.apply({ kind: 'created', path: '/work/x', dir: false }).changedFiles).toEqual([]);
  });
});
