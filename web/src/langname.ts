// Which language mode a file gets, by its name (kept apart from the modes
// themselves so it is unit-testable without loading them).

import { basename } from './paths';

const BY_EXT: Record<string, string> = {
  js: 'javascript', mjs: 'javascript', cjs: 'javascript', jsx: 'jsx',
  ts: 'typescript', mts: 'typescript', cts: 'typescript', tsx: 'tsx',
  py: 'python', pyi: 'python',
  rs: 'rust',
  json: 'json', jsonc: 'json',
  md: 'markdown', markdown: 'markdown',
  html: 'html', htm: 'html', vue: 'html', svelte: 'html',
  css: 'css', scss: 'css', less: 'css',
  c: 'cpp', h: 'cpp', cc: 'cpp', cpp: 'cpp', cxx: 'cpp', hpp: 'cpp', hh: 'cpp',
  go: 'go',
  java: 'java', kt: 'java',
  yaml: 'yaml', yml: 'yaml',
};

const BY_NAME: Record<string, string> = {
  'Cargo.lock': 'yaml',
  '.babelrc': 'json',
};

export function languageNameFor(path: string): string | null {
  const name = basename(path);
  if (BY_NAME[name]) return BY_NAME[name];
  const dot = name.lastIndexOf('.');
  if (dot <= 0) return null;
  return BY_EXT[name.slice(dot + 1).toLowerCase()] ?? null;
}
