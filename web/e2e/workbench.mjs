// End to end: the real workbench in real headless Chromium against a real
// `yonder web local DIR`. Run by crates/yonder/tests/web.rs, which starts
// yonder web and passes:
//   YONDER_WEB_URL   the printed URL (with its one-time token)
//   YONDER_WEB_DIR   the folder it serves (this machine is the target)
//   YONDER_WEB_SHOTS where to save a screenshot of each view
//   YONDER_WEB_HTTP_PORT a free loopback port for the terminal's http server
//   YONDER_WEB_SERVER_CMD (optional) the command that starts that server,
//                    `{PORT}` replaced (default: python3's http.server); it
//                    must answer GET / with a listing of the folder
//   YONDER_WEB_BREAK_LINK (optional) a `pkill -f` pattern for the processes
//                    carrying the link from yonder web to the target: they
//                    are killed midway; the page must show it reconnecting,
//                    then carry on (terminal intact)
// Prints `COOKIE=<value>` for the Rust side's Origin check, and exits
// non-zero with the failing step on any failure.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';

const URL = process.env.YONDER_WEB_URL;
const DIR = process.env.YONDER_WEB_DIR;
const SHOTS = process.env.YONDER_WEB_SHOTS ?? 'web-screenshots';
const HTTP_PORT = Number(process.env.YONDER_WEB_HTTP_PORT ?? '0');
if (!URL || !DIR || !HTTP_PORT) {
  console.error('set YONDER_WEB_URL, YONDER_WEB_DIR and YONDER_WEB_HTTP_PORT');
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });

/** Every wait is bounded: a failure shows as a timeout naming the step. */
const STEP_TIMEOUT = 60_000;

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

let step = 'launch';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: CHROMIUM_ARGS,
  timeout: 60_000,
});
const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
context.setDefaultTimeout(STEP_TIMEOUT);
const page = await context.newPage();
const consoleErrors = [];
page.on('console', (m) => {
  if (m.type() === 'error') consoleErrors.push(m.text());
});
page.on('pageerror', (e) => consoleErrors.push(String(e)));
if (process.env.YONDER_WEB_DEBUG) {
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => console.error('>', String(f.payload).slice(0, 160)));
    ws.on('framereceived', (f) => console.error('<', String(f.payload).slice(0, 160)));
  });
}

const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
const read = (rel) => fs.readFileSync(path.join(DIR, rel), 'utf8');
function expect(cond, what) {
  if (!cond) throw new Error(`${step}: ${what}`);
}
async function until(what, fn) {
  const end = Date.now() + STEP_TIMEOUT;
  for (;;) {
    if (await fn()) return;
    if (Date.now() > end) throw new Error(`${step}: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const terminalText = () => page.locator('.term-pane:visible .xterm-rows').innerText();

try {
  step = 'open the page with the token';
  await page.goto(URL);
  await page.waitForSelector('body[data-ready="true"]');
  expect(!page.url().includes('token='), `the token stays in the address bar: ${page.url()}`);
  await page.getByTestId('status-connection').filter({ hasText: 'connected' }).waitFor();

  step = 'see the tree';
  const row = (name) => page.locator(`[data-testid="tree-row"][data-path="${path.join(DIR, name)}"]`);
  await row('hello.txt').waitFor();
  await row('src').waitFor();
  await shot('01-tree');

  step = 'open a file, edit, save';
  await row('hello.txt').click();
  await page.locator('.cm-content').filter({ hasText: 'hello from disk' }).waitFor();
  await page.locator('.cm-content').click();
  await page.keyboard.press('Control+End');
  await page.keyboard.type('edited in the browser\n');
  await page.locator('.tab.active.is-dirty').waitFor();
  await shot('02-editor-dirty');
  await page.keyboard.press('Control+s');
  await page.locator('.tab.active:not(.is-dirty)').waitFor();
  await until('the saved bytes on disk', () => read('hello.txt') === 'hello from disk\nedited in the browser\n');

  step = 'conflict: the file changes behind the editor';
  await page.keyboard.type('second edit\n');
  await page.locator('.tab.active.is-dirty').waitFor();
  fs.writeFileSync(path.join(DIR, 'hello.txt'), 'changed behind your back\n');
  // Let the watch event arrive (the tab is marked stale) before saving.
  await page.locator('.tab.active.is-stale').waitFor();
  await page.keyboard.press('Control+s');
  const dlg = page.getByTestId('conflict-dialog');
  await dlg.waitFor();
  await page.getByTestId('conflict-theirs').filter({ hasText: 'changed behind your back' }).waitFor();
  await page.getByTestId('conflict-mine').filter({ hasText: 'second edit' }).waitFor();
  expect(read('hello.txt') === 'changed behind your back\n', 'the save overwrote the other change');
  await shot('03-conflict');
  await page.getByTestId('conflict-mine-btn').click();
  await dlg.waitFor({ state: 'detached' });
  await until('my version on disk after "Overwrite with mine"', () =>
    read('hello.txt') === 'hello from disk\nedited in the browser\nsecond edit\n');

  step = 'a terminal: run echo';
  await page.getByTestId('new-terminal').click();
  await page.locator('.term-pane:visible .xterm-rows').waitFor();
  await page.locator('.term-pane:visible').click();
  await page.keyboard.type('echo marker-$((6*7))\n');
  await until('the echo output in the terminal', async () => (await terminalText()).includes('marker-42'));
  await shot('04-terminal');

  step = 'reload: the terminal keeps its earlier output';
  await page.reload();
  await page.waitForSelector('body[data-ready="true"]');
  await until('the earlier output after the reload', async () => {
    const n = await page.locator('.term-pane:visible .xterm-rows').count();
    return n > 0 && (await terminalText()).includes('marker-42');
  });
  // The editor tab came back too.
  await page.locator('.tab.active', { hasText: 'hello.txt' }).waitFor();
  await shot('05-terminal-after-reload');

  if (process.env.YONDER_WEB_BREAK_LINK) {
    step = 'the link to the target drops and comes back';
    await page.evaluate(() => {
      window.__conn = [];
      new MutationObserver(() => window.__conn.push(document.body.dataset.conn)).observe(document.body, {
        attributes: true,
        attributeFilter: ['data-conn'],
      });
    });
    const before = (await terminalText()).split('\n').filter((l) => l.trim() === 'marker-42').length;
    // pkill itself, not through a shell (whose command line would match).
    execFileSync('pkill', ['-f', process.env.YONDER_WEB_BREAK_LINK], { stdio: 'ignore' });
    await until('the status bar to show the reconnect', async () =>
      (await page.evaluate(() => window.__conn.includes('reconnecting'))));
    await shot('05b-reconnecting');
    await page.getByTestId('status-connection').filter({ hasText: /^● connected$/ }).waitFor({ timeout: 60_000 });
    await page.locator('.term-pane:visible').click();
    await page.keyboard.type('echo after-$((6*8))\n');
    await until('the terminal to work after the reconnect', async () => (await terminalText()).includes('after-48'));
    const after = (await terminalText()).split('\n').filter((l) => l.trim() === 'marker-42').length;
    expect(before === after, `earlier output shown ${after} times after the reconnect, ${before} before`);
  }

  step = 'workspace search, click a result';
  await page.getByTestId('side-search').click();
  await page.getByTestId('search-input').fill('needle_in_haystack');
  await page.getByTestId('search-input').press('Enter');
  const hit = page.getByTestId('search-hit').first();
  await hit.waitFor();
  await page.getByTestId('search-summary').filter({ hasText: /1 results in 1 files/ }).waitFor();
  await shot('06-search');
  await hit.click();
  await page.locator('.tab.active', { hasText: 'main.rs' }).waitFor();
  await until('the editor at the matching line', async () =>
    (await page.locator('.cm-activeLine').innerText()).includes('needle_in_haystack'));

  step = 'quick open';
  await page.keyboard.press('Control+p');
  await page.getByTestId('quick-open-input').fill('deepfile');
  await page.getByTestId('quick-open-item').filter({ hasText: 'deeper/deepfile.md' }).waitFor();
  await shot('07-quick-open');
  await page.getByTestId('quick-open-input').press('Enter');
  await page.locator('.tab.active', { hasText: 'deepfile.md' }).waitFor();

  step = 'new file from the tree';
  await page.getByTestId('side-files').click();
  await row('hello.txt').click();
  await page.getByTestId('new-file').click();
  await page.getByTestId('new-name-input').fill('created.txt');
  await page.getByTestId('new-name-ok').click();
  await row('created.txt').waitFor();
  expect(fs.existsSync(path.join(DIR, 'created.txt')), 'created.txt is not on disk');

  step = 'rename and delete from the context menu';
  await row('created.txt').click({ button: 'right' });
  await page.getByTestId('menu-rename').click();
  await page.getByTestId('rename-input').fill('renamed.txt');
  await page.getByTestId('rename-ok').click();
  await row('renamed.txt').waitFor();
  expect(!fs.existsSync(path.join(DIR, 'created.txt')) && fs.existsSync(path.join(DIR, 'renamed.txt')), 'rename not on disk');
  await row('renamed.txt').click({ button: 'right' });
  await page.getByTestId('menu-delete').click();
  await page.getByTestId('confirm-delete').click();
  await row('renamed.txt').waitFor({ state: 'detached' });
  expect(!fs.existsSync(path.join(DIR, 'renamed.txt')), 'delete not on disk');

  step = 'drop a file from the desktop onto the tree';
  const dt = await page.evaluateHandle(() => {
    const d = new DataTransfer();
    d.items.add(new File(['dropped bytes\n'], 'dropped.txt', { type: 'text/plain' }));
    return d;
  });
  await page.getByTestId('tree').dispatchEvent('drop', { dataTransfer: dt });
  await row('dropped.txt').waitFor();
  await until('the uploaded bytes on disk', () =>
    fs.existsSync(path.join(DIR, 'dropped.txt')) && read('dropped.txt') === 'dropped bytes\n');

  step = 'the tree follows the disk';
  fs.writeFileSync(path.join(DIR, 'appeared.txt'), 'x');
  await row('appeared.txt').waitFor();
  fs.rmSync(path.join(DIR, 'appeared.txt'));
  await row('appeared.txt').waitFor({ state: 'detached' });

  step = 'ports: a server started in the terminal, forwarded from the panel';
  await page.locator('.term-pane:visible').click();
  const serverCmd = (process.env.YONDER_WEB_SERVER_CMD ?? 'python3 -m http.server {PORT} --bind 127.0.0.1')
    .replaceAll('{PORT}', String(HTTP_PORT));
  await page.keyboard.type(`${serverCmd}\n`);
  await page.getByTestId('side-ports').click();
  const portRow = page.locator(`[data-testid="port-row"][data-port="${HTTP_PORT}"]`);
  await portRow.waitFor();
  await portRow.getByTestId('port-forward').click();
  const link = portRow.getByTestId('port-open');
  await link.waitFor();
  const href = await link.getAttribute('href');
  expect(href && /^http:\/\/127\.0\.0\.1:\d+\/$/.test(href), `bad forward link ${href}`);
  const resp = await fetch(href);
  const body = await resp.text();
  expect(resp.status === 200 && body.includes('hello.txt'), `the forward served ${resp.status}: ${body.slice(0, 200)}`);
  await shot('08-ports');
  // The link opens in a new tab, through the forward.
  const [tab] = await Promise.all([context.waitForEvent('page'), link.click()]);
  await tab.waitForLoadState();
  expect((await tab.content()).includes('hello.txt'), 'the new tab did not show the forwarded server');
  await tab.close();
  await page.locator('.term-pane:visible').click();
  await page.keyboard.press('Control+c');

  step = 'cookie is HttpOnly and SameSite=Strict';
  const cookie = (await context.cookies()).find((c) => c.name === 'yonder_session');
  expect(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `bad cookie ${JSON.stringify(cookie)}`);
  expect((await page.evaluate(() => document.cookie)) === '', 'the page can read the cookie');
  console.log(`COOKIE=${cookie.value}`);

  const bad = consoleErrors.filter((e) => !e.includes('favicon'));
  expect(bad.length === 0, `console errors: ${bad.join(' | ')}`);
  console.log('E2E OK');
} catch (e) {
  console.error(`E2E FAILED at step "${step}": ${e.stack ?? e}`);
  await shot('99-failure').catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
