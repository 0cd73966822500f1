// Orders: look one up; its items, status, attribution (the source that
// decided, and what was ignored and why), events, why each line is what it
// is (the explanation, step by step), ledger lines and rewards (the buyer
// links to the buyer's page; the Orders page also opens a buyer by id);
// a dry-run recompute (entitled vs applied vs delta) and, behind a
// confirmation, the event that writes the delta.
import { get, post, seg } from './api.js';
import { buyerLink, buyerLookup } from './buyers.js';
import { action, badge, confirmAction, fields, fill, h, message, money, moneyCell, num, table, time } from './dom.js';

export async function render(main, { id }) {
  const input = h('input', { id: 'order-id', name: 'order', value: id || '', maxlength: 64, required: true, autocomplete: 'off' });
  const form = h('form', { class: 'card filters', id: 'order-lookup' },
    h('label', {}, 'Order id', input), h('button', { type: 'submit', class: 'primary' }, 'Look up'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (input.value.trim()) location.hash = `#/orders/${seg(input.value.trim())}`;
  });
  if (!id) {
    // Also a buyer's page by id (its wallet, link and orders).
    fill(main, h('h1', {}, 'Orders'), form, buyerLookup().form);
    input.focus();
    return;
  }
  let o;
  try {
    o = await get(`/v1/orders/${seg(id)}`);
  } catch (e) {
    fill(main, h('h1', {}, 'Orders'), form, message('error', e.status === 404 ? `No order ${id}.` : e.message, 'order-error'), buyerLookup().form);
    return;
  }
  // Why each line is what it is (409 until the order is first processed).
  let why = null;
  try {
    why = await get(`/v1/orders/${seg(id)}/explanation`);
  } catch (e) {
    if (e.status !== 409) throw e;
  }
  const cur = o.currency;
  // Commissions, points and the eligible amount are in the program currency;
  // an order in another one shows its frozen rate.
  const pcur = o.fx ? o.fx.program_currency : o.currency;
  const recomputeOut = h('div', { id: 'recompute', 'aria-live': 'polite' });

  const lineColumns = [{ label: 'beneficiary' }, { label: 'level', num: true }, { label: 'kind' }, { label: 'amount / points', num: true }];
  const lineRows = (lines) => lines.map((l) => [
    l.affiliate_id !== undefined ? h('a', { href: `#/affiliates/${seg(l.affiliate_id)}` }, l.affiliate_id) : `buyer ${l.buyer_id}`,
    h('td', { class: 'num' }, l.level ?? ''),
    l.kind,
    l.amount !== undefined ? moneyCell(l.amount, cur) : h('td', { class: l.points < 0 ? 'num neg' : 'num' }, `${num(l.points)} points`),
  ]);

  // The attribution decision: which source credited which affiliate, and
  // what else the order carried that did not, and why.
  const at = o.attribution;
  const attribution = at ? h('section', { class: 'card', id: 'order-attribution' },
    fields([
      ['source', h('span', { id: 'attribution-source' }, at.source || '—')],
      ['affiliate', at.affiliate_id
        ? h('a', { href: `#/affiliates/${seg(at.affiliate_id)}`, id: 'attribution-affiliate' }, at.affiliate_id)
        : h('span', { class: 'muted', id: 'attribution-affiliate' }, 'unattributed')],
      ['detail', h('span', { id: 'attribution-detail' }, at.detail || '—')],
      ['decided', time(at.decided_at)],
      at.reason ? ['reason', h('span', { id: 'attribution-reason' }, at.reason)] : null,
    ]),
    h('h3', {}, 'Ignored'),
    table([{ label: 'source' }, { label: 'detail' }, { label: 'reason' }, { label: 'message', cls: 'msg' }],
      at.ignored.map((i) => [i.source, h('td', { class: 'id' }, i.detail), i.reason, i.message]),
      { id: 'attribution-ignored', empty: 'Nothing the order carried was ignored.' }))
    : h('section', { class: 'card', id: 'order-attribution' }, h('p', { class: 'muted' }, 'No attribution recorded.'));

  const dryRun = action('Dry-run recompute', async () => {
    const r = await post(`/admin/orders/${seg(o.id)}/recompute`, { dry_run: true });
    const apply = r.delta.length ? action(`Apply the delta (${r.delta.length} line${r.delta.length === 1 ? '' : 's'})…`, async () => {
      const ok = await confirmAction(`Write ${r.delta.length} delta line${r.delta.length === 1 ? '' : 's'} for order ${o.id} as a new order.recomputed event? Balances move when it is processed.`, 'Apply delta');
      if (!ok) return;
      const w = await post(`/admin/orders/${seg(o.id)}/recompute`, { dry_run: false });
      fill(recomputeOut, w.event_id
        ? message('ok', h('span', {}, 'The delta is being written by event ', h('a', { href: `#/events/${seg(w.event_id)}`, id: 'recompute-event' }, w.event_id), '.'), 'apply-result')
        : message('info', 'Nothing to apply any more: the ledger already matches.', 'apply-result'));
    }, { id: 'apply-delta', cls: 'danger', out: recomputeOut }) : null;
    fill(recomputeOut,
      r.delta.length ? message('info', `The ledger differs from the entitlement by ${r.delta.length} line${r.delta.length === 1 ? '' : 's'}.`)
        : message('ok', 'No difference: the ledger holds what the order is entitled to.', 'no-delta'),
      h('h3', {}, 'Delta'), table(lineColumns, lineRows(r.delta), { id: 'delta-table', empty: 'No delta.' }),
      apply ? h('div', { class: 'actions' }, apply) : null,
      h('h3', {}, 'Entitled'), table(lineColumns, lineRows(r.entitled), { id: 'entitled-table' }),
      h('h3', {}, 'Applied'), table(lineColumns, lineRows(r.applied), { id: 'applied-table' }));
  }, { id: 'dry-run', out: recomputeOut });

  fill(main,
    h('h1', {}, `Order ${o.id}`),
    form,
    h('section', { class: 'card', id: 'order-summary' }, fields([
      ['status', badge(o.status)],
      ['commissions', h('span', { id: 'commission-status' }, badge(o.commission_status))],
      ['no commission because', o.no_commission_reason || '—'],
      ['buyer', buyerLink(o.buyer_id, { id: 'order-buyer', title: 'The buyer\'s points, affiliate link and orders' })],
      ['affiliate', o.affiliate_id ? h('a', { href: `#/affiliates/${seg(o.affiliate_id)}` }, o.affiliate_id) : '—'],
      ['referral code', o.referral_code || '—'],
      ['attribution note', o.attribution_note || '—'],
      ['total', money(o.total, cur)],
      ...(o.fx ? [
        ['exchange rate', h('span', { id: 'fx-rate' }, `1 ${o.fx.currency} = ${money(o.fx.rate, pcur)} (${o.fx.source === 'table' ? `rate table of ${o.fx.as_of ? time(o.fx.as_of).textContent : '?'}` : 'sent with the order'}; frozen)`)],
        ['total converted', h('span', { id: 'fx-total' }, money(o.fx.total, pcur))],
      ] : []),
      ['eligible now', money(o.eligible_amount, pcur)],
      ['placed', time(o.placed_at)],
      ['program version', String(o.rule_version)],
    ])),
    h('h2', {}, 'Attribution'),
    attribution,
    h('h2', {}, 'Items'),
    table([{ label: 'sku' }, { label: 'category', minor: true }, { label: 'quantity', num: true }, { label: 'refunded', num: true, minor: true }, { label: 'unit price', num: true }],
      o.items.map((i) => [h('td', { class: 'sku' }, i.sku), i.category, h('td', { class: 'num' }, num(i.quantity)),
        h('td', { class: 'num' }, num(i.refunded)), moneyCell(i.unit_price, cur)]), { id: 'items-table' }),
    h('h2', {}, 'Events'),
    table([{ label: 'event' }, { label: 'type' }, { label: 'status' }],
      o.events.map((e) => [h('td', { class: 'id' }, h('a', { href: `#/events/${seg(e.id)}` }, e.id)), e.type, badge(e.status)]), { id: 'order-events' }),
    h('h2', {}, 'Why these amounts'),
    explanation(why, o.fx ? o.fx.program_currency : o.currency),
    h('h2', {}, 'Upline'),
    table([{ label: 'ancestor' }, { label: 'level', num: true }, { label: 'earns' }],
      (o.upline || []).map((s) => [h('a', { href: `#/affiliates/${seg(s.affiliate_id)}` }, s.affiliate_id),
        h('td', { class: 'num' }, String(s.level)),
        s.earns ? 'yes' : h('span', { class: 'muted' }, `passed over: ${s.passed_over}`)]),
      { id: 'order-upline', empty: 'No upline earns on this order.' }),
    h('h2', {}, 'Ledger lines'),
    table([{ label: 'entry', num: true, minor: true }, { label: 'affiliate' }, { label: 'level', num: true, minor: true }, { label: 'kind' }, { label: 'amount', num: true }, { label: 'cut', num: true, minor: true }, { label: 'status' }, { label: 'event', minor: true }, { label: 'at', minor: true }],
      o.commissions.map((c) => [h('td', { class: 'num' }, String(c.id)), h('a', { href: `#/affiliates/${seg(c.affiliate_id)}` }, c.affiliate_id),
        h('td', { class: 'num' }, String(c.level)), c.kind, moneyCell(c.amount, pcur),
        h('td', { class: 'num cut' }, c.cut ? `${money(c.cut, pcur)} by ${c.capped_by}` : ''), badge(c.status),
        h('td', { class: 'id' }, h('a', { href: `#/events/${seg(c.event_id)}` }, c.event_id.slice(0, 13) + '…')), time(c.created_at)]),
      { id: 'ledger-table', empty: 'No ledger line.' }),
    h('h2', {}, 'Rewards'),
    table([{ label: 'entry', num: true, minor: true }, { label: 'buyer' }, { label: 'kind' }, { label: 'points', num: true }, { label: 'cut', num: true, minor: true }, { label: 'at', minor: true }],
      o.rewards.map((r) => [h('td', { class: 'num' }, String(r.id)), buyerLink(r.buyer_id), r.kind, h('td', { class: r.points < 0 ? 'num neg' : 'num' }, num(r.points)),
        h('td', { class: 'num cut' }, r.cut ? `${num(r.cut)} points by ${r.capped_by}` : ''), time(r.created_at)]),
      { id: 'rewards-table', empty: 'No reward.' }),
    h('h2', {}, 'Recompute'),
    h('section', { class: 'card' }, h('p', { class: 'muted' }, 'Compares what the order is entitled to now with what the ledger holds. A dry run writes nothing.'),
      h('div', { class: 'actions' }, dryRun), recomputeOut));
}

/** Each line's summary, and its steps (rule by rule) behind a click. */
function explanation(why, cur) {
  if (!why) return h('p', { class: 'muted', id: 'explanation' }, 'Not processed yet: nothing is frozen to explain.');
  const line = (key, summary, amount, paid, steps) => h('details', { class: 'card why', 'data-line': key },
    h('summary', {}, summary, amount === paid ? '' : h('span', { class: 'warn' }, ` (entitled ${amount}, paid ${paid}: an event of the order is not applied yet)`)),
    h('ol', {}, ...steps.map((s) => h('li', {}, h('span', { class: 'rule' }, s.rule === 'caps' ? 'caps' : `rule ${s.rule}`), ' ', s.text))));
  return h('section', { id: 'explanation' },
    why.no_commission_reason ? h('p', { class: 'muted' }, `No commission: ${why.no_commission_reason} (rule 2).`) : null,
    ...why.commissions.map((l) => line(`${l.affiliate_id}-${l.kind}`, l.summary, money(l.amount, cur), money(l.paid, cur), l.steps)),
    ...why.rewards.map((r) => line(`points-${r.kind}`, r.summary, num(r.points), num(r.paid), r.steps)));
}
