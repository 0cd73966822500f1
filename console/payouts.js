// Payouts: build a batch from approved balances (min amount), see a batch's
// items, mark it paid. Each creation carries a fresh Idempotency-Key, so a
// retried click returns the batch the first one built.
import { get, post, query, seg } from './api.js';
import { action, badge, confirmAction, csvButton, fields, fill, h, message, money, moneyCell, num, table, time } from './dom.js';

const PAGE = 20;

export async function render(main, { id, params }) {
  return id ? batch(main, id) : list(main, params);
}

async function list(main, params) {
  const cursor = params.get('cursor') || '';
  const min = h('input', { id: 'min-amount', name: 'min_amount', inputmode: 'decimal', required: true, value: '0', pattern: '[0-9]{1,12}(\\.[0-9]{1,4})?' });
  const out = h('div', { id: 'payout-message', 'aria-live': 'polite' });
  const create = h('button', { type: 'submit', class: 'primary', id: 'create-payout' }, 'Create batch…');
  const form = h('form', { class: 'card filters', id: 'payout-form' },
    h('label', {}, 'Minimum amount per affiliate', min), create);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const amount = min.value.trim();
    if (!(await confirmAction(`Build a payout batch of every affiliate whose approved, unbatched sum is at least ${money(amount)}? Balances do not move until the batch is marked paid.`, 'Create batch'))) return;
    create.disabled = true;
    try {
      const r = await post('/admin/payouts', { min_amount: amount }, { 'Idempotency-Key': crypto.randomUUID() });
      if (r.status === 'nothing_to_pay') {
        fill(out, message('info', `Nothing to pay: no approved balance reaches ${money(amount)}. No batch was stored.`, 'payout-result'));
      } else {
        location.hash = `#/payouts/${r.id}`;
      }
    } catch (err) {
      fill(out, message('error', err.message, 'payout-result'));
    } finally {
      create.disabled = false;
    }
  });
  const page = await get(`/admin/payouts${query({ limit: PAGE, cursor })}`);
  fill(main,
    h('h1', {}, 'Payouts'),
    form, out,
    h('h2', {}, 'Batches'),
    table([{ label: 'batch', num: true }, { label: 'status' }, { label: 'affiliates', num: true, minor: true }, { label: 'total', num: true }, { label: 'created', minor: true }, { label: 'paid', minor: true }],
      page.items.map((p) => [h('td', { class: 'num' }, h('a', { href: `#/payouts/${p.id}` }, `#${p.id}`)), badge(p.status),
        h('td', { class: 'num' }, num(p.items)), moneyCell(p.total), time(p.created_at), time(p.completed_at)]),
      { id: 'payouts-table', empty: 'No batch yet.' }),
    h('div', { class: 'pager' },
      cursor ? h('a', { href: '#/payouts' }, '← Newest') : null,
      page.next_cursor ? h('a', { href: `#/payouts${query({ cursor: page.next_cursor })}`, id: 'payouts-next' }, 'Older →') : null));
}

async function batch(main, id) {
  const out = h('div', { id: 'payout-message', 'aria-live': 'polite' });
  let p;
  try {
    p = await get(`/admin/payouts/${seg(id)}`);
  } catch (e) {
    fill(main, h('h1', {}, 'Payouts'), message('error', e.status === 404 ? `No payout batch ${id}.` : e.message, 'payout-error'));
    return;
  }
  const complete = p.status === 'completed' ? null : action('Mark paid…', async () => {
    if (!(await confirmAction(`Mark batch #${p.id} paid? ${p.items.length} affiliate${p.items.length === 1 ? '' : 's'}, ${money(p.total)} in total, move from approved to paid.`, 'Mark paid'))) return;
    await post(`/admin/payouts/${seg(p.id)}/complete`);
    await batch(main, id);
    fill(document.getElementById('payout-message'), message('ok', `Batch #${p.id} is paid.`, 'payout-result'));
  }, { id: 'complete-payout', cls: 'danger', out });
  fill(main,
    h('p', {}, h('a', { href: '#/payouts' }, '← Payouts')),
    h('h1', {}, `Payout batch #${p.id}`),
    h('section', { class: 'card', id: 'payout-summary' }, fields([
      ['status', h('span', { id: 'payout-status' }, badge(p.status))],
      ['total', money(p.total)],
      ['affiliates', num(p.items.length)],
      ['created', time(p.created_at)],
      ['paid', time(p.completed_at)],
    ])),
    h('div', { class: 'actions' }, complete), out,
    h('h2', {}, 'Items'),
    csvButton(`/admin/payouts/${seg(String(p.id))}/items.csv`, `payout-${p.id}.csv`,
      { id: 'payout-csv', label: 'Download for the bank run (CSV)', noun: 'affiliates' }),
    table([{ label: 'affiliate' }, { label: 'amount', num: true }],
      p.items.map((i) => [h('a', { href: `#/affiliates/${seg(i.affiliate_id)}` }, i.affiliate_id), moneyCell(i.amount)]),
      { id: 'payout-items', empty: 'No item.' }));
}
