// The workbench's figures (docs/PERFORMANCE.md), in real headless Chromium
// against a real `yonder web local`:
//   - time from starting `yonder web local DIR` to a usable page (cold: the
//     daemon starts too; warm: it is running);
//   - keystroke-to-echo latency in a web terminal (the shell echoes);
//   - time to open a 10 MB file, and a keystroke in it afterwards;
//   - the page's JS heap with 10 terminals open, each with output.
// Prints a markdown table. Run by `./scripts/bench web`; YONDER is the
// yonder binary (default: ../target/release/yonder).

import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const YONDER = process.env.YONDER ?? path.resolve('../target/release/yonder');
const RUNS = Number(process.env.RUNS ?? '5');
const KEYS = 60;
const ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
  '--no-first-run', '--disable-component-update', '--disable-sync'];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'yonder-web-bench-'));
const work = path.join(tmp, 'work');
fs.mkdirSync(path.join(work, 'src'), { recursive: true });
fs.writeFileSync(path.join(work, 'README.md'), '# bench\n');
// 10 MB of source-like lines.
const line = 'fn item_0000000(x: u64) -> u64 { x.wrapping_mul(6364136223846793005).rotate_left(17) }\n';
const big = [];
let size = 0;
for (let i = 0; size < 10 * 1024 * 1024; i++) {
  const l = line.replace('0000000', String(i).padStart(7, '0'));
  big.push(l);
  size += l.length;
}
fs.writeFileSync(path.join(work, 'src', 'big.rs'), big.join(''));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const ms = (x) => `${x.toFixed(1)} ms`;

function startWeb(runDir) {
  const t0 = performance.now();
  const child = spawn(YONDER, ['web', 'local', work, '--no-open'], {
    env: { ...process.env, YONDER_RUNTIME_DIR: runDir, DISPLAY: '', WAYLAND_DISPLAY: '' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  return new Promise((resolve, reject) => {
    const rl = readline.createInterface({ input: child.stdout });
    rl.once('line', (url) => resolve({ child, url: url.trim(), t0 }));
    child.once('exit', (c) => reject(new Error(`yonder web exited with ${c}`)));
  });
}

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
const rows = [];

async function usablePage(runDir) {
  const { child, url, t0 } = await startWeb(runDir);
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  const t = performance.now() - t0;
  return { child, context, page, t };
}

// 1. Time to a usable page: tree listed, terminals restored, ready.
const cold = [];
const warm = [];
for (let i = 0; i < RUNS; i++) {
  const runDir = fs.mkdtempSync(path.join(tmp, 'run-'));
  const a = await usablePage(runDir);
  cold.push(a.t);
  await a.context.close();
  a.child.kill();
  const b = await usablePage(runDir);
  warm.push(b.t);
  await b.context.close();
  b.child.kill();
  // Stop this run's daemon (it also ends the terminals restored by the page).
  const pid = fs.existsSync(path.join(runDir, 'daemon.pid')) ? Number(fs.readFileSync(path.join(runDir, 'daemon.pid'), 'utf8')) : 0;
  if (pid) try { process.kill(pid); } catch {}
}
rows.push(['`yonder web local` to a usable page, daemon not running (median of ' + RUNS + ')', ms(median(cold))]);
rows.push(['same, daemon already running (median of ' + RUNS + ')', ms(median(warm))]);

// The remaining figures share one page.
const runDir = fs.mkdtempSync(path.join(tmp, 'run-'));
const { child, context, page } = await usablePage(runDir);

// 2. Keystroke to echo in a terminal: keydown seen by the page → the
// echoed character rendered (xterm's DOM renderer updates .xterm-rows).
await page.getByTestId('new-terminal').click();
await page.locator('.term-pane:visible .xterm-rows').waitFor();
await page.locator('.term-pane:visible').click();
await page.keyboard.type('cat\n');
await page.waitForTimeout(300);
await page.evaluate(() => {
  const w = window;
  w.__key = 0;
  w.__mut = 0;
  document.addEventListener('keydown', () => (w.__key = performance.now()), true);
  new MutationObserver(() => (w.__mut = performance.now())).observe(
    document.querySelector('.term-pane:not([style*="none"]) .xterm-rows'),
    { childList: true, subtree: true, characterData: true },
  );
});
const echo = [];
const wire = [];
for (let i = 0; i < KEYS; i++) {
  await page.evaluate(() => (window.__mut = 0));
  await page.keyboard.press(String.fromCharCode(97 + (i % 26)));
  await page.waitForFunction(() => window.__mut > window.__key, null, { timeout: 5000 });
  const [a, b] = await page.evaluate(() => [window.__mut - window.__key, window.__yonderLastMessage - window.__key]);
  echo.push(a);
  wire.push(b);
}
await page.keyboard.press('Control+c');
rows.push([`keystroke to echo in a web terminal, p50 / p95 of ${KEYS}`, `${ms(median(echo))} / ${ms(pct(echo, 0.95))}`]);
rows.push(['of which keystroke to the echo\'s websocket message, p50 / p95', `${ms(median(wire))} / ${ms(pct(wire, 0.95))}`]);

// 3. Open a 10 MB file: click in the tree → text shown; then a keystroke.
await page.locator(`[data-testid="tree-row"][data-path="${path.join(work, 'src')}"]`).click();
const bigRow = page.locator(`[data-testid="tree-row"][data-path="${path.join(work, 'src', 'big.rs')}"]`);
await bigRow.waitFor();
const t0 = performance.now();
await bigRow.click();
await page.locator('.cm-content').filter({ hasText: 'item_0000000' }).waitFor({ timeout: 60_000 });
const openMs = performance.now() - t0;
await page.locator('.cm-content').click();
await page.keyboard.press('Control+Home');
const k0 = performance.now();
await page.keyboard.type('Z');
await page.locator('.cm-line').first().filter({ hasText: /^Zfn item_0000000/ }).waitFor();
const typeMs = performance.now() - k0;
rows.push([`open a ${(size / 1048576).toFixed(1)} MiB file (${big.length} lines) from the tree to text shown`, ms(openMs)]);
rows.push(['then a keystroke in it, to the character shown', ms(typeMs)]);

// 4. Page memory with 10 terminals, each with 2,000 lines of output.
const cdp = await context.newCDPSession(page);
await cdp.send('Performance.enable');
const heap = async () => {
  await cdp.send('HeapProfiler.collectGarbage');
  const m = await cdp.send('Performance.getMetrics');
  return m.metrics.find((x) => x.name === 'JSHeapUsedSize').value / 1048576;
};
const before = await heap();
for (let i = 0; i < 10; i++) {
  await page.getByTestId('new-terminal').click();
  // The new pane is appended last once the target has opened the terminal.
  await page.waitForFunction((n) => document.querySelectorAll('.term-pane').length >= n, i + 2);
  await page.locator('.term-pane').last().click();
  await page.keyboard.type('seq 1 2000\n');
}
await page.waitForFunction(() => document.querySelectorAll('.term-pane').length >= 11);
await page.waitForTimeout(1500);
const after = await heap();
rows.push(['page JS heap: workbench with the 10 MB file open', `${before.toFixed(1)} MiB`]);
rows.push(['with 10 more terminals, 2,000 lines of output each', `${after.toFixed(1)} MiB (+${(after - before).toFixed(1)} MiB)`]);

await context.close();
child.kill();
await browser.close();
fs.rmSync(tmp, { recursive: true, force: true });

console.log('| measurement | yonder web |');
console.log('|---|---|');
for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
