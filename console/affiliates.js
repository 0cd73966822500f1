// Affiliates: balances, the ledger a page at a time, the upline and the
// direct children.
import { get, query, seg } from './api.js';
import { badge, fields, fill, h, message, money, moneyCell, table, time } from './dom.js';

const PAGE = 20;
const MAX_UPLINE = 50;

export async function render(main, { id }) {
  const input = h('input', { id: 'affiliate-id', name: 'affiliate', value: id || '', maxlength: 64, required: true, autocomplete: 'off' });
  const form = h('form', { class: 'card filters', id: 'affiliate-lookup' },
    h('label', {}, 'Affiliate id', input), h('button', { type: 'submit', class: 'primary' }, 'Look up'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (input.value.trim()) location.hash = `#/affiliates/${seg(input.value.trim())}`;
  });
  if (!id) {
    fill(main, h('h1', {}, 'Affiliates'), form);
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

  const upline = h('div', { id: 'upline' }, h('p', { class: 'muted' }, 'Loading…'));
  const children = h('div', { id: 'children' });
  const ledger = h('div', { id: 'ledger' });

  fill(main,
    h('h1', {}, 'Affiliate ', h('span', { id: 'affiliate-name' }, a.name), h('span', { class: 'muted' }, ` (${a.id})`)),
    form,
    h('div', { class: 'grid', id: 'balances' },
      stat('pending', b.pending, 'balance-pending'), stat('approved', b.approved, 'balance-approved'), stat('paid', b.paid, 'balance-paid')),
    h('section', { class: 'card' }, fields([
      ['status', badge(a.status)],
      ['referral code', a.referral_code],
      ['parent', a.parent_id ? h('a', { href: `#/affiliates/${seg(a.parent_id)}` }, a.parent_id) : '— (top of the tree)'],
      ['own buyer id', a.buyer_id || '—'],
      ['registered', time(a.created_at)],
    ])),
    h('h2', {}, 'Upline'), upline,
    h('h2', {}, 'Direct children'), children,
    h('h2', {}, 'Ledger'), ledger);

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

  // Children and ledger: keyset pages, with the cursors seen so far to go back.
  function pager(el, load, columns, row, tableId, empty) {
    const trail = [];
    let cursor = '';
    async function show() {
      const page = await load(cursor);
      fill(el,
        table(columns, page.items.map(row), { id: tableId, empty }),
        h('div', { class: 'pager' },
          trail.length ? h('button', { type: 'button', id: `${tableId}-prev`, on: { click: () => { cursor = trail.pop(); show(); } } }, '← Previous') : null,
          page.next_cursor ? h('button', { type: 'button', id: `${tableId}-next`, on: { click: () => { trail.push(cursor); cursor = page.next_cursor; show(); } } }, 'Next →') : null));
    }
    show().catch((e) => fill(el, message('error', e.message)));
  }
  pager(children, (c) => get(`/v1/affiliates/${seg(a.id)}/children${query({ limit: PAGE, cursor: c })}`),
    [{ label: 'affiliate' }, { label: 'name' }, { label: 'status' }, { label: 'pending', num: true }, { label: 'approved', num: true }, { label: 'paid', num: true }],
    (c) => [h('a', { href: `#/affiliates/${seg(c.id)}` }, c.id), h('td', { class: 'name' }, c.name), badge(c.status),
      moneyCell(c.balances.pending, cur), moneyCell(c.balances.approved, cur), moneyCell(c.balances.paid, cur)],
    'children-table', 'No direct children.');
  pager(ledger, (c) => get(`/v1/affiliates/${seg(a.id)}/commissions${query({ limit: PAGE, cursor: c })}`),
    [{ label: 'entry', num: true }, { label: 'order' }, { label: 'level', num: true }, { label: 'kind' }, { label: 'amount', num: true }, { label: 'status' }, { label: 'at' }],
    (e) => [h('td', { class: 'num' }, String(e.id)), h('a', { href: `#/orders/${seg(e.order_id)}` }, e.order_id), h('td', { class: 'num' }, String(e.level)),
      e.kind, moneyCell(e.amount, cur), badge(e.status), time(e.created_at)],
    'ledger-table', 'No ledger entry yet.');
}
