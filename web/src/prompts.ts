// ssh's questions while yonder web connects to the target (password, key
// passphrase, 2FA code, unknown host key), asked in a dialog in the page.
//
// The server pushes the list of waiting questions on every change; this
// shows one dialog at a time (the oldest), closes it when another page
// answered it first, and sends the answer. Answers are never stored.

import type { Connection, SshPrompt } from './protocol';
import { el } from './ui';

/** How a question is asked: a yes/no (host key) or hidden text. */
export type PromptKind = 'confirm' | 'secret' | 'text';

export function promptKind(p: SshPrompt): PromptKind {
  if (/\(yes\/no/.test(p.text)) return 'confirm';
  return p.secret ? 'secret' : 'text';
}

/** The dialog's title for ssh's text (its last line is the question). */
export function promptTitle(p: SshPrompt): string {
  const t = p.text.toLowerCase();
  if (promptKind(p) === 'confirm') {
    return t.includes('authenticity of host') || t.includes('host key')
      ? 'Unknown host key'
      : 'ssh asks';
  }
  if (t.includes('passphrase')) return 'Key passphrase';
  if (t.includes('password')) return 'Password';
  if (t.includes('verification code') || t.includes('one-time') || t.includes('otp')) return 'Verification code';
  return 'ssh asks';
}

/** Which question to show next: the oldest not yet answered here. */
export function nextPrompt(waiting: SshPrompt[], answered: Set<number>): SshPrompt | null {
  return waiting.find((p) => !answered.has(p.id)) ?? null;
}

export class PromptDialogs {
  private shown: { id: number; close(): void } | null = null;
  /** Questions this page answered (they stay listed until the server sees it). */
  private answered = new Set<number>();

  constructor(private readonly conn: Connection) {
    conn.onPrompts((list) => this.update(list));
  }

  private update(list: SshPrompt[]): void {
    if (this.shown && !list.some((p) => p.id === this.shown!.id)) {
      // Answered in another page, or ssh stopped asking.
      this.shown.close();
      this.shown = null;
    }
    if (this.shown) return;
    const p = nextPrompt(list, this.answered);
    if (p) this.show(p);
  }

  private show(p: SshPrompt): void {
    const kind = promptKind(p);
    const back = el('div', { class: 'modal-back' });
    const box = el('div', {
      class: 'modal auth',
      role: 'dialog',
      'aria-modal': 'true',
      'data-testid': 'auth-dialog',
    });
    const text = el('pre', { class: 'auth-text', 'data-testid': 'auth-text' }, p.text.trimEnd());
    const input = el('input', {
      type: kind === 'secret' ? 'password' : 'text',
      class: 'ask',
      autocomplete: 'off',
      'data-testid': 'auth-input',
    });
    const row = el('div', { class: 'buttons' });
    const close = () => {
      input.value = '';
      back.remove();
      document.removeEventListener('keydown', onKey, true);
    };
    const send = (answer: string | null) => {
      this.answered.add(p.id);
      close();
      this.shown = null;
      void this.conn.answer(p.id, answer).catch(() => {});
      this.update(this.conn.prompts);
    };
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        send(null);
      }
    };
    const button = (label: string, testid: string, primary: boolean, answer: () => string | null) => {
      const b = el('button', { class: primary ? 'primary' : '', 'data-testid': testid }, label);
      b.addEventListener('click', () => send(answer()));
      row.append(b);
    };
    box.append(el('h2', {}, promptTitle(p)), text);
    if (kind === 'confirm') {
      // A fingerprint typed in also answers a host-key question.
      input.placeholder = 'or paste the expected fingerprint';
      box.append(input);
      button('Cancel', 'auth-cancel', false, () => null);
      button('No', 'auth-no', false, () => 'no');
      button('Yes', 'auth-yes', true, () => input.value.trim() || 'yes');
    } else {
      box.append(input);
      button('Cancel', 'auth-cancel', false, () => null);
      button('OK', 'auth-ok', true, () => input.value);
    }
    box.append(row);
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') {
        ev.preventDefault();
        (row.querySelector('button.primary') as HTMLElement | null)?.click();
      }
    });
    back.append(box);
    document.body.append(back);
    document.addEventListener('keydown', onKey, true);
    setTimeout(() => input.focus(), 0);
    this.shown = { id: p.id, close };
  }
}
