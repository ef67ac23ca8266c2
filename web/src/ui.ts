// Small DOM helpers: elements, toasts, dialogs.

import type { Choice } from './docs';

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

/** A message in the corner for a few seconds. */
export function toast(message: string, kind: 'info' | 'error' = 'info'): void {
  let box = document.getElementById('toasts');
  if (!box) {
    box = el('div', { id: 'toasts' });
    document.body.append(box);
  }
  const t = el('div', { class: `toast ${kind}`, role: 'status', 'data-testid': 'toast' }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 3000);
}

/** A modal dialog; resolves with the value of the button pressed (Escape: `cancel`). */
export function dialog<T extends string>(
  title: string,
  body: Node,
  buttons: { label: string; value: T; primary?: boolean; testid?: string }[],
  cancel: T,
  testid = 'dialog',
): Promise<T> {
  return new Promise((resolve) => {
    const back = el('div', { class: 'modal-back' });
    const box = el('div', { class: 'modal', role: 'dialog', 'aria-modal': 'true', 'data-testid': testid });
    const row = el('div', { class: 'buttons' });
    const done = (v: T) => {
      back.remove();
      document.removeEventListener('keydown', onKey, true);
      resolve(v);
    };
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        done(cancel);
      }
    };
    for (const b of buttons) {
      const btn = el('button', { class: b.primary ? 'primary' : '' }, b.label);
      if (b.testid) btn.dataset.testid = b.testid;
      btn.addEventListener('click', () => done(b.value));
      row.append(btn);
    }
    box.append(el('h2', {}, title), body, row);
    back.append(box);
    document.body.append(back);
    document.addEventListener('keydown', onKey, true);
    (row.querySelector('button.primary') as HTMLElement | null)?.focus();
  });
}

/** Asks for a line of text (e.g. a file name); null when cancelled. */
export async function ask(title: string, initial = '', testid = 'ask'): Promise<string | null> {
  const input = el('input', { type: 'text', class: 'ask', 'data-testid': `${testid}-input` });
  input.value = initial;
  const body = el('div', {}, input);
  let submit: () => void = () => {};
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') submit();
  });
  const p = dialog(title, body, [
    { label: 'Cancel', value: 'cancel' },
    { label: 'OK', value: 'ok', primary: true, testid: `${testid}-ok` },
  ], 'cancel', testid);
  submit = () => (document.querySelector(`[data-testid="${testid}-ok"]`) as HTMLElement | null)?.click();
  setTimeout(() => {
    input.focus();
    input.select();
  }, 0);
  return (await p) === 'ok' ? input.value : null;
}

/** The save conflict: both texts side by side; the user chooses. */
export function showConflictDialog(
  path: string,
  mine: string,
  theirs: string,
  deleted: boolean,
): Promise<Choice> {
  const pane = (title: string, text: string, testid: string) =>
    el('div', { class: 'pane' }, el('h3', {}, title), el('pre', { 'data-testid': testid }, clip(text)));
  const body = el(
    'div',
    {},
    el(
      'p',
      {},
      deleted
        ? `${path} was deleted on the target after you opened it.`
        : `${path} changed on the target after you opened it. Saving now would overwrite that change.`,
    ),
    el(
      'div',
      { class: 'compare' },
      pane('Yours (in the editor)', mine, 'conflict-mine'),
      pane(deleted ? 'On the target: deleted' : 'On the target now', theirs, 'conflict-theirs'),
    ),
  );
  return dialog<Choice>(
    'The file changed on the target',
    body,
    [
      { label: 'Cancel', value: 'cancel' },
      { label: deleted ? 'Close mine, keep deleted' : 'Take theirs', value: 'theirs', testid: 'conflict-theirs-btn' },
      { label: deleted ? 'Save mine again' : 'Overwrite with mine', value: 'mine', primary: true, testid: 'conflict-mine-btn' },
    ],
    'cancel',
    'conflict-dialog',
  );
}

/** Dialogs show at most this much of a file; the rest is elided. */
const MAX_SHOWN = 200_000;

function clip(s: string): string {
  return s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}\n… (${s.length - MAX_SHOWN} more characters)` : s;
}
