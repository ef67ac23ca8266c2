// End to end: ssh's questions asked in the page. Run by
// crates/yonder/tests/web.rs against a real `yonder web` on an SSH target
// that knows neither the host key nor a key of the user, so ssh asks for
// both; it passes:
//   YONDER_WEB_URL      the printed URL (with its one-time token)
//   YONDER_WEB_PASSWORD the test user's password
//   YONDER_WEB_FILE     the absolute path of a file the tree must show
//   YONDER_WEB_SHOTS    where to save screenshots
// The story: the host-key question appears; "No" fails the connection and
// the page says why; Retry asks again; "Yes"; a wrong password is asked
// again; the right one opens the workbench. Prints `E2E OK`.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const URL = process.env.YONDER_WEB_URL;
const PASSWORD = process.env.YONDER_WEB_PASSWORD;
const FILE = process.env.YONDER_WEB_FILE;
const SHOTS = process.env.YONDER_WEB_SHOTS ?? 'web-screenshots/auth';
if (!URL || !PASSWORD || !FILE) {
  console.error('set YONDER_WEB_URL, YONDER_WEB_PASSWORD and YONDER_WEB_FILE');
  process.exit(2);
}
fs.mkdirSync(SHOTS, { recursive: true });

/** Every wait is bounded: a failure shows as a timeout naming the step. */
const STEP_TIMEOUT = 60_000;

let step = 'launch';
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  timeout: 60_000,
});
const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
page.setDefaultTimeout(STEP_TIMEOUT);
const shot = (name) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
function expect(cond, what) {
  if (!cond) throw new Error(`${step}: ${what}`);
}
const dialog = page.getByTestId('auth-dialog');
/** Waits for a dialog whose text matches `re` (a new question). */
async function question(re) {
  await page.locator('[data-testid="auth-dialog"]', { hasText: re }).waitFor();
  return (await page.getByTestId('auth-text').innerText()).trim();
}

try {
  step = 'open the page while ssh connects';
  await page.goto(URL);

  step = 'the unknown host key is asked in the page';
  let text = await question(/continue connecting/);
  expect(/fingerprint is SHA256:/.test(text), `the fingerprint is shown: ${text}`);
  await shot('01-host-key');

  step = 'answering No fails the connection, and the page says why';
  await page.getByTestId('auth-no').click();
  await page.getByTestId('connect-error').waitFor();
  text = await page.getByTestId('connect-error').innerText();
  expect(/host key was not accepted/i.test(text), `the reason is shown: ${text}`);
  await shot('02-refused');

  step = 'Retry asks again; Yes trusts the key';
  await page.getByTestId('connect-retry').click();
  await question(/continue connecting/);
  await page.getByTestId('auth-yes').click();

  step = 'the password is asked in a hidden field';
  await question(/password/i);
  expect((await page.getByTestId('auth-input').getAttribute('type')) === 'password', 'a password field');
  await shot('03-password');
  await page.getByTestId('auth-input').fill('not-the-password');
  await page.getByTestId('auth-ok').click();

  step = 'a wrong password is asked for again';
  await dialog.waitFor({ state: 'detached' }).catch(() => {});
  await question(/password/i);
  await page.getByTestId('auth-input').fill(PASSWORD);
  await page.getByTestId('auth-input').press('Enter');

  step = 'the workbench opens on the target';
  await page.locator(`[data-testid="tree-row"][data-path="${FILE}"]`).waitFor();
  const status = await page.getByTestId('status-connection').innerText();
  expect(/connected/.test(status), `status says connected: ${status}`);
  expect((await page.getByTestId('auth-dialog').count()) === 0, 'no dialog is left open');
  const body = await page.content();
  expect(!body.includes(PASSWORD), 'the password is nowhere in the page');
  await shot('04-workbench');
  console.log('E2E OK');
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(`FAILED at "${step}": ${e?.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
