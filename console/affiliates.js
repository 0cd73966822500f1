// Affiliates: a search (id, referral code or name prefix, status) with a
// page of matches; one affiliate's balances, a form to adjust its approved
// commission by hand (credit or debit, with a reason), attribution (clicks,
// conversion, coupons, clicks per day), the upline, the direct children, its
// orders, its ledger and its payouts, each a page at a time.
import { get, query, seg } from './api.js';
import { adjustForm } from './adjust.js';
import { badge, fields, fill, h, message, money, moneyCell, num, pager, svg, table, time } from './dom.js';

const PAGE = 20;
const MAX_UPLINE = 50;
const DAY_MS = 86400000;
/** The most days the clicks chart draws (the window is at most two months). */
const MAX_DAYS = 93;

/** The UTC day ('2026-12-06') of a time in ms. */
const dayOf = (ms) => new Date(ms).toISOString().slice(0, 10);

/** Clicks per UTC day from the window's first day to today, one bar a day
 * (zero-height on a day without clicks); the empty state without clicks. */
function clicksChart(since, days) {
  if (!days.some((d) => d.clicks > 0)) {
    return h('p', { class: 'muted', 'data-empty': 'clicks-chart' }, 'No clicks since ', time(since), '.');
  }
  const counts = new Map(days.map((d) => [d.day, d.clicks]));
  const s = new Date(since);
  const first = Date.UTC(s.getUTCFullYear(), s.getUTCMonth(), s.getUTCDate());
  const last = Math.max(Date.parse(`${dayOf(Date.now())}T00:00:00Z`), ...days.map((d) => Date.parse(`${d.day}T00:00:00Z`)));
  const all = [];
  for (let t = Math.max(first, last - (MAX_DAYS - 1) * DAY_MS); t <= last; t += DAY_MS) all.push(dayOf(t));
  const max = Math.max(...all.map((d) => counts.get(d) || 0));
  const W = 12;
  const H = 100;
  const total = all.reduce((n, d) => n + (counts.get(d) || 0), 0);
  const chart = svg('svg', {
    id: 'clicks-chart', class: 'chart', viewBox: `0 0 ${all.length * W} ${H}`, preserveAspectRatio: 'none', role: 'img',
    'aria-label': `Clicks per day, ${all[0]} to ${all[all.length - 1]}: ${total} in all, at most ${max} a day`,
  },
  all.map((day, i) => {
    const n = counts.get(day) || 0;
    const height = n ? Math.max(2, (n / max) * (H - 4)) : 0;
    return svg('g', { class: 'day', 'data-day': day },
      svg('title', {}, `${day}: ${num(n)} click${n === 1 ? '' : 's'}`),
      svg('rect', { class: 'slot', x: i * W, y: 0, width: W, height: H }),
      svg('rect', { class: 'bar', 'data-clicks': n, x: i * W + 2, y: H - height, width: W - 4, height }));
  }),
  svg('line', { class: 'axis', x1: 0, y1: H, x2: all.length * W, y2: H, 'vector-effect': 'non-scaling-stroke' }));
  return [chart,
    h('div', { class: 'chart-axis muted' }, h('span', {}, all[0]), h('span', {}, `UTC days; at most ${num(max)} a day`), h('span', {}, all[all.length - 1]))];
}

/**
 * The "Adjust commission" form (adjust.js): a signed amount and a reason,
 * sent to POST /admin/affiliates/{id}/adjustments. `done()` refreshes the
 * balances and the ledger.
 */
function adjustCommission(a, cur, done) {
  return adjustForm({
    field: 'amount',
    path: `/admin/affiliates/${seg(a.id)}/adjustments`,
    label: `Amount in ${cur} (negative: a debit)`,
    placeholder: 'e.g. 12500 or -12500',
    reasonPlaceholder: 'e.g. chargeback on order o-991',
    hint: 'Approved at once and paid with the next payout batch; a debit may take the approved balance to zero, not below. Recorded in the audit trail under your key\'s name.',
    confirm: (amount, reason) => {
      if (!/^-?\d+(\.\d+)?$/.test(amount) || Number(amount) === 0) return null;
      const debit = amount.startsWith('-');
      const what = debit ? `Debit ${money(amount.slice(1), cur)} from` : `Credit ${money(amount, cur)} to`;
      return [`${what} the approved commission of ${a.name} (${a.id})? Reason: “${reason}”.`, debit ? 'Debit' : 'Credit'];
    },
    recorded: (r) => `${r.amount.startsWith('-') ? 'a debit of' : 'a credit of'} ${money(r.amount.replace(/^-/, ''), cur)}`,
    where: 'The ledger below',
    done,
  });
}

/** orders / clicks ('0.5000') as a percentage; '—' without clicks. */
function rate(r) {
  if (r === null || r === undefined) return '—';
  return new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 2 }).format(Number(r));
}

/** The search: id, referral code or name prefix, a status; a page of matches by id. */
async function search(main, params, form) {
  const f = { q: params.get('q') || '', status: params.get('status') || '', cursor: params.get('cursor') || '' };
  let page;
  try {
    page = await get(`/v1/affiliates${query({ q: f.q, status: f.status, cursor: f.cursor, limit: 25 })}`);
  } catch (e) {
    fill(main, h('h1', {}, 'Affiliates'), form, message('error', e.message, 'affiliate-error'));
    return;
  }
  const here = (extra) => `#/affiliates${query({ q: f.q, status: f.status, ...extra })}`;
  fill(main, h('h1', {}, 'Affiliates'), form,
    table([{ label: 'affiliate' }, { label: 'name', cls: 'name' }, { label: 'code', minor: true }, { label: 'status' },
      { label: 'pending', num: true, minor: true }, { label: 'approved', num: true }],
    page.items.map((a) => [h('td', { class: 'id' }, h('a', { href: `#/affiliates/${seg(a.id)}` }, a.id)), a.name,
      h('td', { class: 'id minor' }, a.referral_code), badge(a.status), moneyCell(a.balances.pending, a.currency),
      moneyCell(a.balances.approved, a.currency)]),
    { id: 'affiliates-table', empty: f.q ? `No affiliate's id, code or name starts with "${f.q}".` : 'No affiliate yet.' }),
    h('div', { class: 'pager' },
      f.cursor ? h('a', { href: here({}) }, '← First') : null,
      page.next_cursor ? h('a', { href: here({ cursor: page.next_cursor }), id: 'affiliates-next' }, 'Next →') : null));
}

export async function render(main, { id, params }) {
  const input = h('input', { id: 'affiliate-q', name: 'q', value: id || params.get('q') || '', maxlength: 64, autocomplete: 'off',
    placeholder: 'id, referral code or name', type: 'search' });
  const status = h('select', { id: 'affiliate-status', name: 'status' },
    ['', 'active', 'suspended'].map((v) => h('option', { value: v, selected: params.get('status') === v && v ? 'selected' : null }, v || 'any status')));
  const form = h('form', { class: 'card filters', id: 'affiliate-search', role: 'search' },
    h('label', {}, 'Search affiliates', input), h('label', {}, 'Status', status),
    h('button', { type: 'submit', class: 'primary', id: 'affiliate-search-run' }, 'Search'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/affiliates${query({ q: input.value.trim(), status: status.value })}`;
  });
  if (!id) {
    await search(main, params, form);
    input.focus();
    return;
  }
  let a;
  try {
    a = await get(`/v1/affiliates/${seg(id)}`);
  } catch (e) {
    fill(main, h('h1', {}, 'Affiliates'), form, message('error', e.status === 404 ? `No affiliate ${id}.` : e.message, 'affiliate-error'));
    return;
  }
  const cur = a.currency;
  const b = a.balances;
  const stat = (label, v, sid) => h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value', id: sid }, money(v, cur)));

  const attribution = h('section', { class: 'card', id: 'affiliate-attribution' }, h('p', { class: 'muted' }, 'Loading…'));
  const upline = h('div', { id: 'upline' }, h('p', { class: 'muted' }, 'Loading…'));
  const children = h('div', { id: 'children' });
  const ledger = h('div', { id: 'ledger' });
  const orders = h('div', { id: 'affiliate-orders' });
  const payouts = h('div', { id: 'affiliate-payouts' });

  fill(main,
    h('h1', {}, 'Affiliate ', h('span', { id: 'affiliate-name' }, a.name), h('span', { class: 'muted' }, ` (${a.id})`)),
    form,
    h('div', { class: 'grid', id: 'balances' },
      stat('pending', b.pending, 'balance-pending'), stat('approved', b.approved, 'balance-approved'), stat('paid', b.paid, 'balance-paid')),
    h('section', { class: 'card' }, fields([
      ['status', badge(a.status)],
      ['referral code', a.referral_code],
      ['parent', a.parent_id ? h('a', { href: `#/affiliates/${seg(a.parent_id)}` }, a.parent_id) : '— (top of the tree)'],
      ['own buyer id', a.buyer_id ? h('a', { href: `#/buyers/${seg(a.buyer_id)}` }, a.buyer_id) : '—'],
      ['registered', time(a.created_at)],
    ])),
    h('h2', {}, 'Adjust commission'), adjustCommission(a, cur, afterAdjustment),
    h('h2', {}, 'Attribution'), attribution,
    h('h2', {}, 'Upline'), upline,
    h('h2', {}, 'Direct children'), children,
    h('h2', {}, 'Orders'), orders,
    h('h2', {}, 'Ledger (newest first)'), ledger,
    h('h2', {}, 'Payouts'), payouts);

  // Attribution since the start of last month: clicks, the orders credited
  // to the affiliate, linked customers, clicks per day; its coupons.
  (async () => {
    const s = await get(`/v1/affiliates/${seg(a.id)}/attribution`);
    const figure = (label, v, fid, title) => h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value', id: fid, title }, v));
    fill(attribution,
      h('p', { class: 'muted' }, 'Since ', time(s.since), ' (the start of last month).'),
      h('div', { class: 'grid', id: 'attribution-figures' },
        figure('clicks', num(s.clicks), 'attribution-clicks'),
        figure('orders', num(s.orders), 'attribution-orders'),
        figure('conversion rate', rate(s.conversion_rate), 'conversion-rate',
          s.conversion_rate === null ? 'No clicks in the window' : `${num(s.orders)} orders / ${num(s.clicks)} clicks = ${s.conversion_rate}`),
        figure('linked customers', num(s.linked_customers), 'linked-customers')),
      h('h3', {}, 'Clicks per day'),
      clicksChart(s.since, s.clicks_by_day),
      h('h3', {}, 'Coupons'),
      table([{ label: 'code' }, { label: 'created' }, { label: 'status' }],
        s.coupons.map((c) => [h('td', { class: 'id' }, c.code), time(c.created_at),
          c.deleted_at ? h('td', {}, badge('deleted'), ' ', time(c.deleted_at)) : badge('active')]),
        { id: 'coupons-table', empty: 'No coupon.' }));
  })().catch((e) => fill(attribution, message('error', e.message)));

  // The upline, nearest first, one read per ancestor.
  (async () => {
    const chain = [];
    let parent = a.parent_id;
    while (parent && chain.length < MAX_UPLINE) {
      const p = await get(`/v1/affiliates/${seg(parent)}`);
      chain.push(p);
      parent = p.parent_id;
    }
    fill(upline, table([{ label: 'level up', num: true }, { label: 'affiliate' }, { label: 'name' }, { label: 'status' }],
      chain.map((p, i) => [h('td', { class: 'num' }, String(i + 1)), h('a', { href: `#/affiliates/${seg(p.id)}` }, p.id), p.name, badge(p.status)]),
      { id: 'upline-table', empty: 'No upline: this affiliate is at the top of the tree.' }));
  })().catch((e) => fill(upline, message('error', e.message)));

  // Children, orders, payouts and ledger: keyset pages (dom.js pager).
  pager(children, (c) => get(`/v1/affiliates/${seg(a.id)}/children${query({ limit: PAGE, cursor: c })}`),
    [{ label: 'affiliate' }, { label: 'name' }, { label: 'status' }, { label: 'pending', num: true }, { label: 'approved', num: true }, { label: 'paid', num: true }],
    (c) => [h('a', { href: `#/affiliates/${seg(c.id)}` }, c.id), h('td', { class: 'name' }, c.name), badge(c.status),
      moneyCell(c.balances.pending, cur), moneyCell(c.balances.approved, cur), moneyCell(c.balances.paid, cur)],
    'children-table', 'No direct children.');
  pager(orders, (c) => get(`/admin/orders${query({ affiliate_id: a.id, limit: PAGE, cursor: c })}`),
    [{ label: 'order' }, { label: 'buyer', minor: true }, { label: 'placed' }, { label: 'total', num: true, minor: true }, { label: 'status', minor: true }, { label: 'commissions' }],
    (o) => [h('td', { class: 'id' }, h('a', { href: `#/orders/${seg(o.id)}` }, o.id)), h('td', { class: 'id' }, o.buyer_id ? h('a', { href: `#/buyers/${seg(o.buyer_id)}` }, o.buyer_id) : '—'), time(o.placed_at),
      moneyCell(o.total, o.currency), badge(o.status), badge(o.commission_status)],
    'affiliate-orders-table', 'No order attributed yet.');
  pager(payouts, (c) => get(`/v1/affiliates/${seg(a.id)}/payouts${query({ limit: PAGE, cursor: c })}`),
    [{ label: 'batch', num: true }, { label: 'amount', num: true }, { label: 'status' }, { label: 'created', minor: true }, { label: 'paid', minor: true }],
    (p) => [h('td', { class: 'num' }, h('a', { href: `#/payouts/${seg(String(p.payout_id))}` }, `#${p.payout_id}`)), moneyCell(p.amount, p.currency),
      badge(p.status), time(p.created_at), time(p.completed_at)],
    'affiliate-payouts-table', 'Not paid out yet.');
  const reloadLedger = pager(ledger, (c) => get(`/v1/affiliates/${seg(a.id)}/commissions${query({ limit: PAGE, cursor: c, order: 'newest' })}`),
    [{ label: 'entry', num: true }, { label: 'order' }, { label: 'level', num: true }, { label: 'kind' }, { label: 'amount', num: true }, { label: 'status' }, { label: 'at' }],
    (e) => [h('td', { class: 'num' }, String(e.id)),
      // A manual adjustment has no order: its event holds the reason and the key's name.
      e.order_id ? h('a', { href: `#/orders/${seg(e.order_id)}` }, e.order_id)
        : h('td', { class: 'no-order' }, h('span', { class: 'muted' }, '— '), h('a', { href: `#/events/${seg(e.event_id)}`, title: 'A manual adjustment: its event holds the reason and who made it' }, 'manual')),
      h('td', { class: 'num' }, String(e.level)),
      e.kind, moneyCell(e.amount, cur), badge(e.status), time(e.created_at)],
    'ledger-table', 'No ledger entry yet.');

  // After an adjustment: the balances and the ledger's first page again.
  async function afterAdjustment() {
    const now = await get(`/v1/affiliates/${seg(a.id)}`);
    for (const k of ['pending', 'approved', 'paid']) fill(document.getElementById(`balance-${k}`), money(now.balances[k], cur));
    await reloadLedger();
  }
}
