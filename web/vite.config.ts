// Builds the workbench into dist/, which the yonder binary embeds
// (crates/yonder-web). No inline scripts: the server's CSP forbids them.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // CodeMirror's language modes and xterm.js make one big chunk; it is
    // served from memory on loopback, so its size costs little.
    chunkSizeWarningLimit: 3000,
    modulePreload: { polyfill: false },
  },
  test: {
    include: ['test/**/*.test.ts'],
    environment: 'node',
  },
});
