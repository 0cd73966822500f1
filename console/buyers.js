// Buyers: one buyer's points wallet (spendable, held by open redemptions,
// debt), the affiliate the buyer is linked to, an "Adjust points" form
// (a signed whole number of points and a reason), the points history (newest
// first) and the buyer's orders, each a page at a time. Buyers need no
// registration: a buyer komisi has never seen (no order, no points, no link)
// is said to be so, without a form.
import { get, query, seg } from './api.js';
import { adjustForm } from './adjust.js';
import { badge, fields, fill, h, message, moneyCell, num, pager, time } from './dom.js';

const PAGE = 20;

/** The "Open buyer" form (on this page and on the Orders page): a buyer id → its page. */
export function buyerLookup(value = '') {
  const input = h('input', { id: 'buyer-open-id', name: 'buyer', value, maxlength: 64, required: true, autocomplete: 'off', spellcheck: 'false' });
  const form = h('form', { class: 'card filters', id: 'buyer-lookup' },
    h('label', {}, 'Buyer id', input), h('button', { type: 'submit', id: 'buyer-open' }, 'Open buyer'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (input.value.trim()) location.hash = `#/buyers/${seg(input.value.trim())}`;
  });
  return { form, input };
}

/** A link to a buyer's page. */
export const buyerLink = (id, attrs = {}) => (id ? h('a', { href: `#/buyers/${seg(id)}`, ...attrs }, id) : '—');

/** The kinds that add points which may expire (their `expires_at` null: never). */
const LOTS = ['points', 'first_order_bonus', 'adjustment'];

/** `first_order_bonus` with a line-break opportunity after each `_` (a phone's width). */
const breakable = (kind) => kind.split('_').flatMap((p, i, all) => (i < all.length - 1 ? [`${p}_`, h('wbr')] : [p]));

/** Points as a table cell: right-aligned, red when negative. */
const pointsCell = (n) => h('td', { class: n < 0 ? 'num neg' : 'num' }, num(n));

/** What a history entry came from (the `from` column): its order, its redemption, or an operator (its event). */
function source(e) {
  if (e.order_id) return h('td', { class: 'id' }, h('a', { href: `#/orders/${seg(e.order_id)}` }, e.order_id));
  if (e.redemption_id) return h('td', { class: 'id' }, h('span', { class: 'muted' }, 'redemption '), e.redemption_id);
  if (e.kind === 'adjustment') {
    return h('td', { class: 'no-order' }, h('span', { class: 'muted' }, '— '),
      h('a', { href: `#/events/${seg(e.event_id)}`, title: 'A manual adjustment: its event holds the reason and who made it' }, 'manual'));
  }
  return h('td', { class: 'muted' }, '—');
}

/** The affiliate link: whom the buyer is linked to, how, since when, until when. */
function linkFields(l) {
  if (!l) return h('p', { class: 'muted', id: 'buyer-link', 'data-empty': 'buyer-link' }, 'Not linked to an affiliate: each order is attributed by what it carries.');
  return h('div', { id: 'buyer-link' }, fields([
    ['linked to', h('a', { href: `#/affiliates/${seg(l.affiliate_id)}`, id: 'buyer-affiliate' }, l.affiliate_id)],
    ['active', l.active ? badge('active') : h('span', {}, badge('inactive'), ' (orders are not attributed by it now)')],
    ['source', l.source === 'order' && l.order_id
      ? h('span', {}, 'order ', h('a', { href: `#/orders/${seg(l.order_id)}` }, l.order_id))
      : h('span', {}, l.source, l.reason ? ` — ${l.reason}` : '')],
    ['linked', time(l.linked_at)],
    ['expires', l.expires_at ? time(l.expires_at) : 'never (for life)'],
  ]));
}

export async function render(main, { id }) {
  const { form, input } = buyerLookup(id || '');
  if (!id) {
    fill(main, h('h1', {}, 'Buyers'), form);
    input.focus();
    return;
  }
  const heading = h('h1', {}, 'Buyer ', h('span', { id: 'buyer-id' }, id));
  let wallet;
  let buyer;
  let firstOrders;
  try {
    [wallet, buyer, firstOrders] = await Promise.all([
      get(`/v1/buyers/${seg(id)}/rewards`),
      get(`/v1/buyers/${seg(id)}`),
      get(`/admin/orders${query({ buyer_id: id, limit: 1 })}`),
    ]);
  } catch (e) {
    if (e.status === 401) throw e; // (the sign-in form is shown)
    // 404 (or 422 from the orders list): not a valid buyer id.
    const invalid = e.status === 404 || e.status === 422;
    fill(main, heading, form, message('error', invalid ? `${id} is not a valid buyer id (1-64 of A-Z a-z 0-9 _ . : -).` : e.message, 'buyer-error'));
    return;
  }
  // The wallet answers 200 with zeros for anyone: "unknown" is no points
  // history, no order and no affiliate link.
  if (!wallet.history.length && !firstOrders.items.length && !buyer.customer_link) {
    fill(main, heading, form,
      message('info', `No such buyer yet: komisi has seen no order, no points and no affiliate link for buyer ${id}. Buyers need no registration; one appears with a first order.`, 'buyer-unknown'));
    return;
  }

  const stat = (label, sid) => h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value', id: sid }));
  const stats = h('div', { class: 'grid', id: 'buyer-wallet' },
    stat('spendable points', 'buyer-points'), stat('held (open redemptions)', 'buyer-held'), stat('debt', 'buyer-debt'));
  /** The figures, each with its exact value in data-value; a debt in red. */
  const showWallet = (w) => {
    for (const [k, sid] of [['points', 'buyer-points'], ['held', 'buyer-held'], ['debt', 'buyer-debt']]) {
      const el = stats.querySelector(`#${sid}`);
      el.dataset.value = String(w[k]);
      fill(el, num(w[k]));
      el.parentElement.classList.toggle('bad', k === 'debt' && w[k] > 0);
    }
  };
  showWallet(wallet);

  // The history comes oldest first (all of it): shown newest first, a page at a time.
  let history = [...wallet.history].reverse();
  const historyEl = h('div', { id: 'buyer-history' });
  const ordersEl = h('div', { id: 'buyer-orders' });

  fill(main,
    heading,
    form,
    stats,
    h('h2', {}, 'Affiliate link'),
    h('section', { class: 'card', id: 'buyer-summary' }, linkFields(buyer.customer_link)),
    h('h2', {}, 'Adjust points'),
    adjustForm({
      field: 'points',
      path: `/admin/buyers/${seg(id)}/points-adjustments`,
      label: 'Points (negative: a debit)',
      inputmode: 'numeric',
      placeholder: 'e.g. 500 or -500',
      reasonPlaceholder: 'e.g. late delivery, ticket 4412',
      hint: 'A credit never expires; a debit takes the points that expire soonest first, at most the spendable points (held points excluded). Recorded in the audit trail under your key\'s name.',
      check: (t) => (/^[+-]?\d+$/.test(t) ? null : 'must be a whole number of points, such as 500 or -500'),
      value: (t) => Number(t),
      confirm: (t, reason) => {
        const n = Number(t);
        if (n === 0) return null;
        return n < 0
          ? [`Debit ${num(-n)} points from buyer ${id} (spendable now: ${num(wallet.points)})? Reason: “${reason}”.`, 'Debit']
          : [`Credit ${num(n)} points to buyer ${id}? Reason: “${reason}”.`, 'Credit'];
      },
      recorded: (r) => `${r.points < 0 ? 'a debit of' : 'a credit of'} ${num(Math.abs(r.points))} points`,
      where: 'The history below',
      notFound: `Not recorded: komisi has no points balance for buyer ${id} yet (a balance starts with a first order that earns points).`,
      done: afterAdjustment,
    }),
    h('h2', {}, 'Points history ', h('span', { class: 'muted heading-note' }, '(newest first)')),
    historyEl,
    h('h2', {}, 'Orders ', h('span', { class: 'muted heading-note' }, '(newest first)')),
    ordersEl);

  // The history, paged here: the cursor is the offset in it.
  const reloadHistory = pager(historyEl, async (c) => {
    const at = Number(c || 0);
    return { items: history.slice(at, at + PAGE), next_cursor: at + PAGE < history.length ? String(at + PAGE) : null };
  },
  [{ label: 'entry', num: true, minor: true }, { label: 'kind' }, { label: 'points', num: true }, { label: 'from' },
    { label: 'expires', minor: true }, { label: 'at' }],
  (e) => [h('td', { class: 'num' }, String(e.id)), h('td', { class: 'kind' }, breakable(e.kind)), pointsCell(e.points), source(e),
    e.expires_at ? time(e.expires_at) : h('span', { class: 'muted' }, e.points > 0 && LOTS.includes(e.kind) ? 'never' : '—'),
    h('td', { class: 'when' }, time(e.created_at))],
  'history-table', 'No points yet.');

  pager(ordersEl, (c) => get(`/admin/orders${query({ buyer_id: id, limit: PAGE, cursor: c })}`),
    [{ label: 'order' }, { label: 'affiliate', minor: true }, { label: 'placed' }, { label: 'total', num: true, minor: true },
      { label: 'status' }, { label: 'commissions', minor: true }],
    (o) => [h('td', { class: 'id' }, h('a', { href: `#/orders/${seg(o.id)}` }, o.id)),
      o.affiliate_id ? h('a', { href: `#/affiliates/${seg(o.affiliate_id)}` }, o.affiliate_id) : h('span', { class: 'muted' }, 'unattributed'),
      time(o.placed_at), moneyCell(o.total, o.currency), badge(o.status), badge(o.commission_status)],
    'buyer-orders-table', 'No order yet.');

  // After an adjustment: the wallet and the history's first page again.
  async function afterAdjustment() {
    wallet = await get(`/v1/buyers/${seg(id)}/rewards`);
    showWallet(wallet);
    history = [...wallet.history].reverse();
    await reloadHistory();
  }
}
