// Language modes by file name.

import type { Extension } from '@codemirror/state';
import { javascript } from '@codemirror/lang-javascript';
import { python } from '@codemirror/lang-python';
import { rust } from '@codemirror/lang-rust';
import { json } from '@codemirror/lang-json';
import { markdown } from '@codemirror/lang-markdown';
import { html } from '@codemirror/lang-html';
import { css } from '@codemirror/lang-css';
import { cpp } from '@codemirror/lang-cpp';
import { go } from '@codemirror/lang-go';
import { java } from '@codemirror/lang-java';
import { yaml } from '@codemirror/lang-yaml';
import { languageNameFor } from './langname';

const MODES: Record<string, () => Extension> = {
  javascript: () => javascript(),
  jsx: () => javascript({ jsx: true }),
  typescript: () => javascript({ typescript: true }),
  tsx: () => javascript({ typescript: true, jsx: true }),
  python: () => python(),
  rust: () => rust(),
  json: () => json(),
  markdown: () => markdown(),
  html: () => html(),
  css: () => css(),
  cpp: () => cpp(),
  go: () => go(),
  java: () => java(),
  yaml: () => yaml(),
};

export function languageFor(path: string): Extension {
  const name = languageNameFor(path);
  return name ? MODES[name]() : [];
}
