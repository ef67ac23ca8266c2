import { describe, expect, it } from 'vitest';
import { DocState, onDiskChange, resolve, save } from '../src/docs';
import { RemoteError } from '../src/protocol';

/** A target with one file and a version counter, like the server's preconditions. */
class FakeTarget {
  files = new Map<string, { text: string; version: string }>();
  n = 0;
  put(path: string, text: string) {
    this.files.set(path, { text, version: `v${++this.n}` });
  }
  async request<T>(op: string, args: Record<string, string> = {}): Promise<T> {
    const f = this.files.get(args.path);
    if (op === 'read') {
      if (!f) throw new RemoteError('not_found', 'gone');
      return { text: f.text, version: f.version, size: f.text.length } as T;
    }
    if (op === 'write') {
      const want = args.ifVersion;
      if (want !== undefined && (want === '' ? f !== undefined : f?.version !== want)) {
        throw new RemoteError('conflict', 'changed');
      }
      this.put(args.path, args.text);
      return { version: this.files.get(args.path)!.version } as T;
    }
    throw new Error(op);
  }
}

function open(t: FakeTarget, path: string): DocState {
  const f = t.files.get(path)!;
  return { path, version: f.version, savedText: f.text };
}

describe('save with the version precondition', () => {
  it('saves when nobody else changed the file', async () => {
    const t = new FakeTarget();
    t.put('/f', 'a');
    const d = open(t, '/f');
    expect(await save(t, d, 'b')).toMatchObject({ kind: 'saved' });
    expect(t.files.get('/f')!.text).toBe('b');
    expect(d.savedText).toBe('b');
    // The next save builds on the new version.
    expect(await save(t, d, 'c')).toMatchObject({ kind: 'saved' });
  });

  it('never overwrites a change made on the target: it reports both texts', async () => {
    const t = new FakeTarget();
    t.put('/f', 'a');
    const d = open(t, '/f');
    t.put('/f', 'theirs');
    const r = await save(t, d, 'mine');
    expect(r).toMatchObject({ kind: 'conflict', theirs: 'theirs', deleted: false });
    expect(t.files.get('/f')!.text).toBe('theirs');
  });

  it('"keep mine" overwrites only the version shown, so a third change is caught', async () => {
    const t = new FakeTarget();
    t.put('/f', 'a');
    const d = open(t, '/f');
    t.put('/f', 'theirs');
    const c = await save(t, d, 'mine');
    if (c.kind !== 'conflict') throw new Error('expected a conflict');
    t.put('/f', 'third');
    const r = await resolve(t, d, 'mine', c, 'mine');
    expect(r.outcome).toMatchObject({ kind: 'conflict', theirs: 'third' });
    expect(t.files.get('/f')!.text).toBe('third');
    if (r.outcome?.kind !== 'conflict') throw new Error('expected a conflict');
    const r2 = await resolve(t, d, 'mine', r.outcome, 'mine');
    expect(r2.outcome).toMatchObject({ kind: 'saved' });
    expect(t.files.get('/f')!.text).toBe('mine');
  });

  it('"take theirs" gives the editor their text and their version', async () => {
    const t = new FakeTarget();
    t.put('/f', 'a');
    const d = open(t, '/f');
    t.put('/f', 'theirs');
    const c = await save(t, d, 'mine');
    if (c.kind !== 'conflict') throw new Error('expected a conflict');
    const r = await resolve(t, d, 'mine', c, 'theirs');
    expect(r.text).toBe('theirs');
    expect(d.version).toBe(t.files.get('/f')!.version);
    expect(await save(t, d, 'next')).toMatchObject({ kind: 'saved' });
  });

  it('a file deleted on the target is a conflict; "keep mine" recreates it', async () => {
    const t = new FakeTarget();
    t.put('/f', 'a');
    const d = open(t, '/f');
    t.files.delete('/f');
    const c = await save(t, d, 'mine');
    expect(c).toMatchObject({ kind: 'conflict', deleted: true });
    if (c.kind !== 'conflict') throw new Error('expected a conflict');
    const r = await resolve(t, d, 'mine', c, 'mine');
    expect(r.outcome).toMatchObject({ kind: 'saved' });
    expect(t.files.get('/f')!.text).toBe('mine');
  });

  it('cancel changes nothing', async () => {
    const t = new FakeTarget();
    t.put('/f', 'a');
    const d = open(t, '/f');
    t.put('/f', 'theirs');
    const c = await save(t, d, 'mine');
    if (c.kind !== 'conflict') throw new Error('expected a conflict');
    expect(await resolve(t, d, 'mine', c, 'cancel')).toEqual({ text: null, outcome: null });
    expect(t.files.get('/f')!.text).toBe('theirs');
  });
});

describe('a change on the target while the file is open', () => {
  const d: DocState = { path: '/f', version: 'v1', savedText: 'a' };
  it('is ignored when it is our own save', () => expect(onDiskChange(d, 'a', 'v1')).toBe('ignore'));
  it('reloads an unedited editor', () => expect(onDiskChange(d, 'a', 'v2')).toBe('reload'));
  it('keeps edits and marks the tab stale', () => expect(onDiskChange(d, 'a!', 'v2')).toBe('stale'));
});
