// Saving with the version precondition, and what happens when the file
// changed on the target since it was opened: never overwrite silently.
//
// A document remembers the version it was read (or last saved) at. A save
// sends that version; the target refuses with kind "conflict" if the file
// is no longer at it. Then the page shows both texts and the user chooses:
// keep mine (written over *the version just read*, so a third change is
// still caught), take theirs, or cancel.

import { RemoteError } from './protocol';

/** The calls this module needs (the Connection, or a fake in tests). */
export interface Requester {
  request<T>(op: string, args?: object): Promise<T>;
}

export interface ReadReply {
  text?: string;
  binary?: boolean;
  version: string;
  size: number;
}

export interface DocState {
  path: string;
  /** The version on the target that `savedText` is. */
  version: string;
  savedText: string;
}

export type SaveOutcome =
  | { kind: 'saved'; version: string }
  | { kind: 'conflict'; theirs: string; theirsVersion: string; deleted: boolean }
  | { kind: 'error'; message: string };

/** Saves `text` only if the file is still at `doc.version`. */
export async function save(conn: Requester, doc: DocState, text: string): Promise<SaveOutcome> {
  try {
    const r = await conn.request<{ version: string }>('write', {
      path: doc.path,
      text,
      ifVersion: doc.version,
    });
    doc.version = r.version;
    doc.savedText = text;
    return { kind: 'saved', version: r.version };
  } catch (e) {
    if (e instanceof RemoteError && (e.kind === 'conflict' || e.kind === 'not_found')) {
      return conflictWith(conn, doc);
    }
    return { kind: 'error', message: e instanceof Error ? e.message : String(e) };
  }
}

/** Reads what is on the target now, to show beside the user's text. */
async function conflictWith(conn: Requester, doc: DocState): Promise<SaveOutcome> {
  try {
    const r = await conn.request<ReadReply>('read', { path: doc.path });
    return { kind: 'conflict', theirs: r.text ?? '', theirsVersion: r.version, deleted: false };
  } catch (e) {
    if (e instanceof RemoteError && e.kind === 'not_found') {
      // Deleted on the target: "keep mine" recreates it (only if still absent).
      return { kind: 'conflict', theirs: '', theirsVersion: '', deleted: true };
    }
    return { kind: 'error', message: e instanceof Error ? e.message : String(e) };
  }
}

export type Choice = 'mine' | 'theirs' | 'cancel';

/**
 * Carries out the user's choice after a conflict. Returns the text the
 * editor should now hold (null: leave it as it is) and the new outcome.
 */
export async function resolve(
  conn: Requester,
  doc: DocState,
  mine: string,
  conflict: Extract<SaveOutcome, { kind: 'conflict' }>,
  choice: Choice,
): Promise<{ text: string | null; outcome: SaveOutcome | null }> {
  switch (choice) {
    case 'cancel':
      return { text: null, outcome: null };
    case 'theirs':
      doc.version = conflict.theirsVersion;
      doc.savedText = conflict.theirs;
      return { text: conflict.theirs, outcome: null };
    case 'mine': {
      // Overwrite exactly the version the user was shown ("" = absent).
      doc.version = conflict.theirsVersion;
      return { text: null, outcome: await save(conn, doc, mine) };
    }
  }
}

/** What to do when the watch says an open file changed on the target. */
export type DiskChange = 'reload' | 'stale' | 'ignore';

export function onDiskChange(doc: DocState, currentText: string, diskVersion: string): DiskChange {
  if (diskVersion === doc.version) return 'ignore';
  // Unchanged in the editor: just show the new content. Edited: keep the
  // user's text; the next save will show the conflict.
  return currentText === doc.savedText ? 'reload' : 'stale';
}
