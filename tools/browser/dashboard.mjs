// Drives the erpsync dashboard in headless Chromium, as an operator and as a viewer would.
// Run by crates/server/tests/dashboard_browser.rs, which serves the dashboard and passes:
//   BASE_URL         where the dashboard is served
//   OPERATOR_TOKEN   an access token with the operator role (named "anna")
//   VIEWER_TOKEN     an access token with the viewer role (named "grafana")
//   LETTER_ID        a failure whose payload the operator fixes and retries
//   OTHER_LETTER_ID  an open failure the viewer looks at
//   RECORD_KEY       the failed record's key, traced once it synced
//   FIXED_PAYLOAD    the corrected payload (JSON) the operator types in
//   SCREENSHOTS      a folder for screenshots of the pages (laptop-sized window)
// Prints one line per step; exits 1 with the reason on the first check that fails.

import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('BASE_URL');
const letter = env('LETTER_ID');
const other = env('OTHER_LETTER_ID');
const recordKey = env('RECORD_KEY');
const fixedPayload = env('FIXED_PAYLOAD');
const screenshots = env('SCREENSHOTS');

function check(condition, message) {
  if (!condition) throw new Error(`check failed: ${message}`);
}
const step = (text) => console.log(`step: ${text}`);

async function signIn(page, token, who) {
  await page.goto(`${base}/`);
  check(page.url() === `${base}/login`, `an anonymous visitor is sent to the sign-in page, not ${page.url()}`);
  await page.fill('#token', token);
  await Promise.all([page.waitForURL(`${base}/`), page.click('form[action="/login"] button')]);
  const who_text = await page.textContent('#signed-in-as');
  check(who_text.includes(who), `signed in as ${who}, the page says ${who_text}`);
}

// A POST as the page's own scripts could make it: with the session cookie, and with the CSRF
// token of the session when `withCsrf`.
async function forgedPost(page, path, withCsrf) {
  return page.evaluate(async ({ path, withCsrf }) => {
    const csrf = document.querySelector('form[action="/logout"] input[name=csrf]').value;
    const body = new URLSearchParams(withCsrf ? { csrf } : {});
    const response = await fetch(path, { method: 'POST', body, redirect: 'manual' });
    return response.status;
  }, { path, withCsrf });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Running as root in a container: Chromium's sandbox needs user namespaces it may not have.
  args: ['--no-sandbox', '--disable-dev-shm-usage'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('pageerror', (error) => consoleErrors.push(String(error)));

  // --- the operator ---------------------------------------------------------------------------
  await signIn(page, env('OPERATOR_TOKEN'), 'anna (operator)');
  step('operator signed in');
  const cookie = (await context.cookies()).find((c) => c.name === 'erpsync_session');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `session cookie is HttpOnly and SameSite=Strict: ${JSON.stringify(cookie && { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite })}`);
  check(await page.evaluate(() => typeof document.cookie === 'string' && !document.cookie.includes('erpsync_session')), 'scripts cannot read the session cookie');
  check(await page.evaluate(() => typeof window.htmx === 'object'), 'htmx is loaded from the embedded assets');
  await page.waitForSelector('#flow-products');
  check(await page.locator('#flow-products button', { hasText: 'Run now' }).count() === 1, 'an operator sees the run button');
  check(await page.locator('svg.chart rect.written').count() > 0, 'the overview has the throughput chart');
  await page.screenshot({ path: `${screenshots}/overview-operator.png`, fullPage: true });
  step('overview shows the flow, its actions and the chart');

  await page.click('nav >> text=Failures');
  await page.waitForSelector(`a[href="/failures/${letter}"]`);
  const row = await page.locator('tr', { has: page.locator(`a[href="/failures/${letter}"]`) }).first().textContent();
  check(row.includes(recordKey) && row.includes('open'), `the inbox lists ${recordKey} as open: ${row}`);
  await page.screenshot({ path: `${screenshots}/failures.png`, fullPage: true });
  step('the failed record is in the inbox');

  await page.locator(`a[href="/failures/${letter}"]`).first().click();
  await page.waitForSelector('textarea#payload');
  const reason = await page.textContent('#letter-reason');
  check(reason.trim().length > 0, 'the failure shows its reason');
  const raw = await page.inputValue('textarea#payload');
  check(raw.includes(recordKey), `the payload is shown for editing: ${raw.slice(0, 200)}`);
  await page.screenshot({ path: `${screenshots}/failure-before.png`, fullPage: true });

  // A payload that is not JSON is refused and kept in the text area with why.
  await page.fill('textarea#payload', '{ not json');
  await page.click('#save-payload');
  await page.waitForSelector('p.error');
  check((await page.textContent('p.error')).includes('not JSON'), 'a broken payload is refused with the reason');
  check((await page.inputValue('textarea#payload')) === '{ not json', 'the refused text is kept for fixing');
  step('a payload that is not JSON is refused');

  await page.fill('textarea#payload', fixedPayload);
  await page.click('#save-payload');
  await page.waitForSelector('p.notice >> text=payload saved');
  check(JSON.parse(await page.inputValue('textarea#payload')).record !== undefined, 'the saved payload is shown');
  step('payload fixed');

  await page.click('#retry');
  await page.waitForSelector('p.notice >> text=resolved');
  check((await page.textContent('#letter-status')).trim() === 'resolved', 'the failure is resolved after the retry');
  check(await page.locator('#retry').count() === 0, 'a resolved failure has no retry button');
  await page.screenshot({ path: `${screenshots}/failure-resolved.png`, fullPage: true });
  step('retried: resolved');

  await page.click('#trace-link');
  await page.waitForSelector('table.links');
  const links = await page.textContent('table.links');
  check(links.includes('erp') && links.includes('shop'), `the trace shows the record's ids in erp and shop: ${links}`);
  const events = await page.textContent('table.events');
  check(events.includes('created'), `the trace shows the created event: ${events}`);
  await page.screenshot({ path: `${screenshots}/trace.png`, fullPage: true });
  step(`traced ${recordKey}: in erp and shop, created`);

  await page.click('nav >> text=Runs');
  await page.waitForSelector('text=retry');
  step('run history lists the retry');

  await Promise.all([page.waitForURL(`${base}/login?notice=signed%20out`), page.click('form[action="/logout"] button')]);
  step('operator signed out');

  // --- the viewer -----------------------------------------------------------------------------
  await signIn(page, env('VIEWER_TOKEN'), 'grafana (viewer)');
  step('viewer signed in');
  await page.waitForSelector('#flow-products');
  check(await page.locator('#flow-products button').count() === 0, 'a viewer sees no flow actions');
  await page.goto(`${base}/failures/${other}`);
  await page.waitForSelector('pre#payload');
  check(await page.locator('#retry').count() === 0, 'a viewer sees no retry button');
  check(await page.locator('textarea').count() === 0, 'a viewer cannot edit the payload');
  await page.screenshot({ path: `${screenshots}/failure-viewer.png`, fullPage: true });
  step('viewer sees the failure without actions');

  const forged = await forgedPost(page, `/failures/${other}/retry`, true);
  check(forged === 403, `a viewer's POST with a valid CSRF token is refused 403, got ${forged}`);
  const pause = await forgedPost(page, '/flows/products/pause', true);
  check(pause === 403, `a viewer cannot pause a flow: got ${pause}`);
  const noCsrf = await forgedPost(page, `/failures/${other}/retry`, false);
  check(noCsrf === 403, `a POST without the CSRF token is refused 403, got ${noCsrf}`);
  step('forged POSTs refused 403');

  check(consoleErrors.length === 0, `no script errors in the pages: ${consoleErrors.join('; ')}`);
  console.log('ok: every step passed');
} finally {
  await browser.close();
}
