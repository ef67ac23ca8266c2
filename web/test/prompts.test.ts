import { describe, expect, it } from 'vitest';
import { nextPrompt, promptKind, promptTitle } from '../src/prompts';

const hostKey = {
  id: 1,
  text:
    "The authenticity of host '[127.0.0.1]:2222 ([127.0.0.1]:2222)' can't be established.\n" +
    'ED25519 key fingerprint is SHA256:abc.\n' +
    'Are you sure you want to continue connecting (yes/no/[fingerprint])? ',
  secret: false,
};
const password = { id: 2, text: "yondertest@127.0.0.1's password: ", secret: true };
const passphrase = { id: 3, text: "Enter passphrase for key '/home/u/.ssh/id_ed25519': ", secret: true };
const code = { id: 4, text: 'Verification code: ', secret: true };

describe('ssh prompt dialogs', () => {
  it('asks yes/no for a host key and hides passwords, passphrases and codes', () => {
    expect(promptKind(hostKey)).toBe('confirm');
    expect(promptKind(password)).toBe('secret');
    expect(promptKind({ id: 5, text: 'Name: ', secret: false })).toBe('text');
  });
  it('names what is asked', () => {
    expect(promptTitle(hostKey)).toBe('Unknown host key');
    expect(promptTitle(password)).toBe('Password');
    expect(promptTitle(passphrase)).toBe('Key passphrase');
    expect(promptTitle(code)).toBe('Verification code');
  });
  it('shows the oldest question not answered yet', () => {
    expect(nextPrompt([hostKey, password], new Set())).toBe(hostKey);
    expect(nextPrompt([hostKey, password], new Set([1]))).toBe(password);
    expect(nextPrompt([hostKey], new Set([1]))).toBeNull();
  });
});
