// The operator console in headless Chromium, driven by playwright-core.
// Run by tests/api/console.rs, which sets the scene over HTTP (dead events by
// fault injection, a refund whose event is dead, an XSS sku and name, an
// approved balance) and checks the money afterwards. Any unmet expectation,
// console error, page error, CSP violation or dialog fails the run (exit 1,
// the reason on stderr).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('KOMISI_URL');
const ADMIN_KEY = env('KOMISI_ADMIN_KEY');
const STOREFRONT_KEY = env('KOMISI_STOREFRONT_KEY');
const DEAD_EVENT = env('KOMISI_DEAD_EVENT');
const XSS_SKU = env('KOMISI_XSS_SKU');
const XSS_NAME = env('KOMISI_XSS_NAME');
const SHOTS = env('KOMISI_SCREENSHOTS');
const CHROMIUM = process.env.KOMISI_CHROMIUM || '/usr/bin/chromium';
mkdirSync(SHOTS, { recursive: true });

const problems = [];
let expectRefusals = false;
let step = 'start';
const fail = (why) => { throw new Error(`[${step}] ${why}`); };
const check = (ok, why) => { if (!ok) fail(why); };
const log = (...a) => console.log(`[${step}]`, ...a);

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
let exitCode = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'en-US', timezoneId: 'Asia/Jakarta' });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // A refused sign-in is logged by Chromium as a failed resource load.
    if (expectRefusals && /status of 40[13]/.test(m.text())) return;
    problems.push(`[${step}] console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`[${step}] page error: ${e.message}`));
  page.on('dialog', async (d) => {
    problems.push(`[${step}] a ${d.type()} dialog opened: ${d.message()}`);
    await d.dismiss();
  });
  page.on('request', (r) => {
    if (r.url().includes(ADMIN_KEY)) problems.push(`[${step}] the admin key is in a URL: ${r.url()}`);
  });
  const go = async (hash) => { await page.goto(`${BASE}/console${hash}`); };
  const text = async (sel) => (await page.locator(sel).first().textContent()).trim();
  const shot = async (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  const rows = (table) => page.locator(`#${table} tbody tr`);
  const confirm = async (expect) => {
    const dialog = page.locator('#confirm');
    await dialog.waitFor({ state: 'visible' });
    const said = await text('#confirm-text');
    check(expect.test(said), `the confirmation says ${JSON.stringify(said)}, expected ${expect}`);
    log('confirm:', said);
    await page.click('#confirm-ok');
    await dialog.waitFor({ state: 'hidden' });
  };

  // ---- headers and sign-in
  step = 'sign-in';
  const response = await page.goto(`${BASE}/console`);
  const csp = response.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && !csp.includes('unsafe-inline'), `CSP: ${csp}`);
  check(response.headers()['x-content-type-options'] === 'nosniff', 'nosniff');
  await page.locator('#admin-key').waitFor();
  await shot('sign-in');
  expectRefusals = true;
  await page.fill('#admin-key', 'not-the-admin-key');
  await page.click('#sign-in');
  await page.locator('#signin-error').waitFor();
  check(/refused \(401\)/.test(await text('#signin-error')), `wrong key: ${await text('#signin-error')}`);
  await shot('sign-in-refused');
  await page.fill('#admin-key', STOREFRONT_KEY);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => /403/.test(document.querySelector('#signin-error')?.textContent || ''));
  check(await page.evaluate(() => sessionStorage.length === 0 && localStorage.length === 0), 'a refused key is not kept');
  expectRefusals = false;
  await page.fill('#admin-key', ADMIN_KEY);
  await page.click('#sign-in');

  // ---- overview
  step = 'overview';
  await page.waitForFunction(() => document.querySelector('#count-dead')?.textContent === '5');
  // Opening the overview starts no reconcile run: none has run yet.
  await page.locator('#reconcile-none').waitFor();
  await page.click('#run-reconcile');
  await confirm(/^Run a full reconcile sweep now\? It reads every order/);
  await page.locator('#sweep-started').waitFor();
  check(/^Full sweep #\d+ started\.$/.test(await text('#sweep-started')), `the sweep started: ${await text('#sweep-started')}`);
  await page.locator('#reconcile-ok').waitFor();
  check(/^ok — checked \d+ affiliates, /.test(await text('#reconcile-ok')), `the sweep's result: ${await text('#reconcile-ok')}`);
  check(await page.evaluate((k) => sessionStorage.getItem('komisi.adminKey') === k && localStorage.length === 0, ADMIN_KEY),
    'the key is kept in sessionStorage only');
  check(!page.url().includes(ADMIN_KEY), 'no key in the URL');
  check(/^\d+$/.test(await text('#metric-backlog')), `backlog from /metrics: ${await text('#metric-backlog')}`);
  const title = await page.locator('time').first().getAttribute('title');
  check(/ UTC$/.test(title || ''), `times show UTC on hover: ${title}`);
  // Auto-refresh without reloading: the "Updated" line changes by itself.
  await page.evaluate(() => { window.__sameDocument = true; });
  const updated = await text('#updated');
  await page.waitForFunction((first) => document.querySelector('#updated')?.textContent !== first, updated, { timeout: 12000 });
  check(await page.evaluate(() => window.__sameDocument === true), 'the overview refreshed without a reload');
  await shot('overview');

  // ---- keyboard: the skip link, then the sections, reachable with Tab
  step = 'keyboard';
  await page.reload();
  await page.locator('#count-dead').waitFor();
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => `${document.activeElement?.tagName}.${document.activeElement?.className}`);
  check(focused === 'A.skip', `Tab reaches the skip link first, not ${focused}`);
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement?.getAttribute('href') === '#/overview'), 'then the sections');

  // ---- a dead event, found under dead and replayed from its page
  step = 'events';
  await page.click('#count-dead');
  await page.waitForFunction(() => location.hash === '#/events?status=dead');
  await page.locator('#events-table').waitFor();
  check((await rows('events-table').count()) === 5, `5 dead events listed, not ${await rows('events-table').count()}`);
  check(await page.locator(`#events-table a[href="#/events/${DEAD_EVENT}"]`).count() === 1, 'the dead event is listed');
  await shot('events-dead');
  await page.click(`#events-table a[href="#/events/${DEAD_EVENT}"]`);
  await page.waitForFunction(() => document.querySelector('#event-status')?.textContent === 'dead');
  check((await rows('attempts-table').count()) === 1, 'one failed attempt');
  check(/injected failure/.test(await text('#attempts-table')), 'the attempt shows its error');
  const payload = JSON.parse(await text('#event-payload'));
  check(payload.id === 'o-dead', `the payload is the order, pretty JSON: ${JSON.stringify(payload)}`);
  check((await text('#event-payload')).includes('\n  "'), 'the payload is pretty-printed');
  await shot('event-dead');
  await page.click('#replay-one');
  await confirm(/^Replay 1 event \(order\.placed of order o-dead, now dead\)/);
  await page.locator('#replay-result').waitFor();
  await page.waitForFunction(() => document.querySelector('#event-status')?.textContent === 'done', null, { timeout: 30000 });
  await page.waitForFunction(() => document.querySelector('#replay-result')?.textContent === 'Replayed: the event is done now.');
  check((await rows('replays-table').count()) === 1 && /dead/.test(await text('#replays-table')), 'the replay is in the history');
  await shot('event-done');

  // ---- bulk replay of the 3 dead order.placed events
  step = 'bulk replay';
  await go('#/events');
  await page.selectOption('#filter-status', 'dead');
  await page.selectOption('#filter-type', 'order.placed');
  await page.click('#apply-filters');
  await page.waitForFunction(() => document.querySelectorAll('#events-table tbody tr').length === 3);
  await page.click('#bulk-replay');
  await confirm(/^Replay 3 dead events \(status dead, type order\.placed\)/);
  await page.waitForFunction(() => document.querySelector('#bulk-result')?.textContent === 'Replayed 3 events.');
  await shot('events-bulk-replayed');
  const drained = Date.now() + 30000;
  while (await page.locator('[data-empty="events-table"]').count() === 0) {
    check(Date.now() < drained, 'the replayed events leave "dead"');
    await page.waitForTimeout(300);
    await page.click('#refresh-events');
  }

  // ---- cursor paging and the time filter
  step = 'paging';
  const ids = async () => page.locator('#events-table tbody tr td.id').allTextContents();
  await go('#/events?limit=4');
  await page.waitForFunction(() => document.querySelectorAll('#events-table tbody tr').length === 4);
  const first = await ids();
  // Another page once its rows are there: an emptied table (between two
  // pages) has no first id, which is not yet "another" one.
  const otherPage = (f) => {
    const cell = document.querySelector('#events-table td.id');
    return cell !== null && cell.textContent !== f;
  };
  await page.click('#page-next');
  await page.waitForFunction(otherPage, first[0]);
  const second = await ids();
  check(second.length === 4 && !second.some((id) => first.includes(id)), `page 2 is 4 other events: ${second}`);
  check([...first, ...second].every((id, i, all) => i === 0 || all[i - 1] > id), 'newest first across pages');
  await page.click('#page-next');
  await page.waitForFunction(otherPage, second[0]);
  const third = await ids();
  // 9 events so far: 3 orders placed, 1 completed, 1 refund, 4 dead orders placed.
  check(third.length === 1 && (await page.locator('#page-next').count()) === 0, `the last page: ${third}`);
  await page.click('#page-prev');
  await page.waitForFunction((f) => document.querySelector('#events-table td.id')?.textContent === f, second[0]);
  await page.click('#page-prev');
  await page.waitForFunction((f) => document.querySelector('#events-table td.id')?.textContent === f, first[0]);
  check((await page.locator('#page-prev').count()) === 0, 'back on the first page');
  await page.fill('#filter-until', '2001-01-01T00:00');
  await page.click('#apply-filters');
  await page.locator('[data-empty="events-table"]').waitFor();
  // Typed in the browser's zone (Asia/Jakarta, UTC+7), sent in UTC.
  check(page.url().includes('until=2000-12-31T17%3A00%3A00.000Z'), `the time filter, in UTC: ${page.url()}`);
  await page.fill('#filter-until', '');
  await page.fill('#filter-since', '2001-01-01T00:00');
  await page.click('#apply-filters');
  await page.waitForFunction(() => document.querySelectorAll('#events-table tbody tr').length === 4);

  // ---- an order after a refund whose event is dead: the negative delta
  step = 'order';
  await go('#/orders');
  await page.fill('#order-id', 'o-refund');
  await page.keyboard.press('Enter');
  await page.locator('#items-table').waitFor();
  check((await rows('items-table').count()) === 3, 'three items');
  check(/phone.*electronics.*1.*1/s.test(await rows('items-table').nth(1).textContent()), 'the phone is refunded');
  check(await text('#commission-status') === 'dead', 'the refund event is dead');
  check((await rows('ledger-table').count()) === 3 && (await rows('rewards-table').count()) === 2, 'ledger lines and rewards');
  await page.click('#dry-run');
  await page.locator('#delta-table').waitFor();
  const delta = await page.locator('#delta-table tbody tr').allTextContents();
  check(delta.length >= 3, `delta lines: ${delta}`);
  check(delta.every((l) => /-/.test(l)), `every delta line is negative: ${delta}`);
  check(delta.some((l) => /^C.*-IDR\s80,000/.test(l)), `C gives back the phone's 80 000: ${delta}`);
  check(await page.locator('#entitled-table').count() === 1 && await page.locator('#applied-table').count() === 1, 'entitled and applied shown');
  await shot('order-recompute');
  await page.click('#apply-delta');
  await confirm(new RegExp(`^Write ${delta.length} delta lines for order o-refund`));
  await page.locator('#recompute-event').waitFor();
  await shot('order-delta-applied');

  // ---- values from the API are text
  step = 'xss';
  await go('#/orders/o-xss');
  await page.locator('#items-table').waitFor();
  check(await text('#items-table td.sku') === XSS_SKU, `the sku shows as its characters: ${await text('#items-table td.sku')}`);
  check(await page.locator('main img').count() === 0, 'no element was made from the sku');
  await shot('order-xss');
  await go('#/affiliates/C');
  await page.locator('#children-table').waitFor();
  await page.locator('#upline-table').waitFor();
  await page.locator('#ledger-table').waitFor();
  check(await text('#children-table td.name') === XSS_NAME, 'the name shows as its characters');
  check(/^IDR\s/.test(await text('#balance-pending')), `money in the program currency: ${await text('#balance-pending')}`);
  check((await rows('upline-table').count()) === 2, 'the upline B, A');
  await shot('affiliate');
  await go('#/affiliates/xss');
  await page.locator('#affiliate-name').waitFor();
  check(await text('#affiliate-name') === XSS_NAME, 'the heading shows the name as text');
  check(await page.locator('main img').count() === 0, 'no element was made from the name');

  // ---- payouts
  step = 'payouts';
  await go('#/payouts');
  await page.fill('#min-amount', '1');
  await page.click('#create-payout');
  await confirm(/^Build a payout batch/);
  await page.locator('#payout-items').waitFor();
  check((await rows('payout-items').count()) === 1 && /^A.*IDR\s20,000/.test(await rows('payout-items').first().textContent()),
    `the batch pays A 20 000: ${await page.locator('#payout-items').textContent()}`);
  await page.click('#complete-payout');
  await confirm(/^Mark batch #\d+ paid\? 1 affiliate, IDR\s20,000/);
  await page.locator('#payout-result').waitFor();
  check(await text('#payout-status') === 'completed', 'the batch is paid');
  await shot('payout');
  await go('#/payouts');
  await page.locator('#payouts-table').waitFor();
  check(/completed/.test(await rows('payouts-table').first().textContent()), 'the list shows it paid');
  await shot('payouts');

  // ---- a phone's width
  step = 'phone';
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [hash, wait, name] of [['#/overview', '#count-dead', 'overview-phone'], ['#/orders/o-refund', '#items-table', 'order-phone'], ['#/events', '#events-table', 'events-phone']]) {
    await go(hash);
    await page.locator(wait).waitFor();
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 390, `${hash} fits 390 px (scroll width ${width})`);
    await shot(name);
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  // ---- sign out
  step = 'sign-out';
  await page.click('#sign-out');
  await page.locator('#admin-key').waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('komisi.adminKey') === null), 'signing out forgets the key');

  step = 'end';
  const csps = await page.evaluate(() => window.__csp);
  check(csps.length === 0, `CSP violations: ${csps}`);
  check(await page.evaluate(() => window.__xss === undefined), 'window.__xss was set');
  check(problems.length === 0, `problems seen:\n${problems.join('\n')}`);
  log('all console checks passed');
} catch (e) {
  console.error(`console test failed at step "${step}": ${e.message}`);
  if (problems.length) console.error(`also seen:\n${problems.join('\n')}`);
  exitCode = 1;
} finally {
  await browser.close();
}
process.exit(exitCode);
