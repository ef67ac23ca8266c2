import { describe, expect, it } from 'vitest';
import { TerminalOffsets } from '../src/termstate';
import { basename, dirname, isUnder, join, relative, validName } from '../src/paths';
import { languageNameFor } from '../src/langname';
import { PortTable } from '../src/ports';
import { groupByFile } from '../src/search';

describe('TerminalOffsets: resume without losing or repeating a byte', () => {
  it('resumes from the byte after the last one shown', () => {
    const o = new TerminalOffsets();
    expect(o.resumeFrom()).toBeNull();
    expect(o.accept(0, 10)).toBe(10);
    expect(o.accept(10, 5)).toBe(5);
    expect(o.resumeFrom()).toBe(15);
  });
  it('drops a replayed chunk and keeps only the new tail of an overlapping one', () => {
    const o = new TerminalOffsets();
    o.accept(0, 10);
    expect(o.accept(0, 10)).toBe(0);
    expect(o.accept(5, 10)).toBe(5);
    expect(o.resumeFrom()).toBe(15);
  });
  it('accepts a gap (output the target no longer kept)', () => {
    const o = new TerminalOffsets();
    o.accept(0, 10);
    expect(o.accept(100, 4)).toBe(4);
    expect(o.resumeFrom()).toBe(104);
  });
});

describe('paths', () => {
  it('splits and joins', () => {
    expect(basename('/a/b.txt')).toBe('b.txt');
    expect(basename('/a/b/')).toBe('b');
    expect(dirname('/a/b.txt')).toBe('/a');
    expect(dirname('/a')).toBe('/');
    expect(join('/a', 'b')).toBe('/a/b');
    expect(join('/', 'b')).toBe('/b');
  });
  it('knows what is under a directory (not a sibling sharing a prefix)', () => {
    expect(isUnder('/w/x', '/w')).toBe(true);
    expect(isUnder('/w', '/w')).toBe(true);
    expect(isUnder('/work', '/w')).toBe(false);
    expect(isUnder('/anything', '/')).toBe(true);
    expect(relative('/w/a/b', '/w')).toBe('a/b');
    expect(relative('/x', '/w')).toBe('/x');
  });
  it('refuses names that are not one path component', () => {
    expect(validName('ok.txt')).toBeNull();
    for (const bad of ['', '  ', '.', '..', 'a/b', 'a\0b']) expect(validName(bad)).not.toBeNull();
  });
});

describe('languages', () => {
  it('picks a mode by extension or name', () => {
    expect(languageNameFor('/a/main.rs')).toBe('rust');
    expect(languageNameFor('/a/App.TSX')).toBe('tsx');
    expect(languageNameFor('/a/Cargo.lock')).toBe('yaml');
    expect(languageNameFor('/a/Makefile')).toBeNull();
    expect(languageNameFor('/a/.bashrc')).toBeNull();
  });
});

describe('PortTable', () => {
  it('merges addresses of one port, drops it when the last closes, hides our own', () => {
    const t = new PortTable();
    const ev = (open: boolean, address: string, port: number, own = false) =>
      ({ open, address, port, pid: 1, process: 'py', own });
    t.apply(ev(true, '0.0.0.0', 8000));
    t.apply(ev(true, '::', 8000));
    t.apply(ev(true, '127.0.0.1', 3000));
    t.apply(ev(true, '127.0.0.1', 4444, true));
    expect(t.list().map((p) => p.port)).toEqual([3000, 8000]);
    t.apply(ev(false, '0.0.0.0', 8000));
    expect(t.list().map((p) => p.port)).toEqual([3000, 8000]);
    t.apply(ev(false, '::', 8000));
    expect(t.list().map((p) => p.port)).toEqual([3000]);
  });
});

describe('search results', () => {
  it('group by file in arrival order', () => {
    const l = (path: string, line: number) => ({ path, line, text: '', ranges: [] as [number, number][] });
    const g = groupByFile([l('/b', 1), l('/a', 2), l('/b', 3)]);
    expect([...g.keys()]).toEqual(['/b', '/a']);
    expect(g.get('/b')!.map((x) => x.line)).toEqual([1, 3]);
  });
});
