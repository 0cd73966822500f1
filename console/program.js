// Program: the version in force (read-only: a new version is a whole
// document, PUT by the operator's tooling), its caps and budgets with their
// use this period (a bar per budget), and the exchange-rate table in force
// for orders in other currencies, with a form to put a new one.
import { api, get } from './api.js';
import { fields, fill, h, message, money, num, table, time } from './dom.js';

const pct = (rate) => `${(Number(rate) * 100).toLocaleString(undefined, { maximumFractionDigits: 4 })} %`;

/** The rate table in force now, or null (404: none yet). */
async function tableNow() {
  try {
    return await get('/admin/fx-rates');
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** 'USD 15650.25' lines → {USD: '15650.25'}; null on a line that is not `CODE rate`. */
function parseRates(text) {
  const rates = {};
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const m = /^([A-Za-z]{3})\s*[=:\s]\s*(\S+)$/.exec(line);
    if (!m) return null;
    rates[m[1].toUpperCase()] = m[2];
  }
  return rates;
}

/** A bar of `used` against `max` (null: no maximum), with the figures beside it. */
function usage(id, used, max, show) {
  if (max === null || max === undefined) return h('span', { class: 'muted' }, `${show(used)} (no maximum)`);
  const share = Number(max) > 0 ? Math.min(Number(used) / Number(max), 1) : 0;
  return h('span', { class: 'usage' },
    h('progress', { id, max: '1', value: String(share), 'aria-label': `${Math.round(share * 100)} % used` }),
    ` ${show(used)} of ${show(max)} (${(share * 100).toLocaleString(undefined, { maximumFractionDigits: 1 })} %)`);
}

/** The program's budgets and the caps on each affiliate, with their use now. */
function limits(b, cur) {
  const window = (x) => (x.window_end ? h('span', {}, time(x.window_start), ' – ', time(x.window_end)) : 'the program\'s whole life');
  const caps = (b.affiliate_caps || []).map((c) => `${money(c.max_commission, cur)} a ${c.period}`).join(' · ');
  return [
    h('h2', {}, 'Caps and budgets'),
    h('p', { class: 'muted' }, `A line past a cap or budget is ${b.on_exhausted === 'zero' ? 'paid nothing when it does not fit whole' : 'cut to what remains'} (on_exhausted: ${b.on_exhausted}); the cut is on its ledger line.`),
    h('section', { class: 'card', id: 'caps-summary' }, fields([
      ['each affiliate, as direct affiliate', h('span', { id: 'affiliate-caps' }, caps || 'no caps')],
    ])),
    b.budgets.length
      ? table([{ label: 'budget' }, { label: 'window' }, { label: 'commission' }, { label: 'points' }],
        b.budgets.map((x) => [
          h('td', {}, x.period),
          h('td', {}, window(x)),
          h('td', {}, usage(`budget-${x.period}-commission`, x.used_commission, x.max_commission, (v) => money(v, cur))),
          h('td', {}, usage(`budget-${x.period}-points`, x.used_points, x.max_points, (v) => num(Number(v)))),
        ]), { id: 'budgets' })
      : h('p', { class: 'muted', id: 'budgets-none' }, 'No budgets: the program pays whatever its rules say.'),
  ];
}

export async function render(main) {
  const [p, rates, budgets] = await Promise.all([get('/admin/program'), tableNow(), get('/admin/budgets')]);
  const cur = p.currency;
  const out = h('div', { id: 'fx-message', 'aria-live': 'polite' });
  const input = h('textarea', { id: 'fx-rates-input', name: 'rates', rows: 4, spellcheck: 'false',
    placeholder: 'USD 15650.25\nJPY 104.5' },
  rates ? Object.entries(rates.rates).map(([c, r]) => `${c} ${r}`).join('\n') : '');
  const submit = h('button', { type: 'submit', class: 'primary', id: 'put-rates' }, 'Store as a new table');
  const form = h('form', { class: 'card', id: 'fx-form' },
    h('label', {}, `Units of ${cur} per unit of each currency, one "CODE rate" a line`, input),
    h('p', { class: 'muted' }, 'In force from now on, for orders placed from now on that carry no fx_rate. Orders already accepted keep the rate frozen on them.'),
    h('div', { class: 'actions' }, submit), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const parsed = parseRates(input.value);
    if (!parsed || !Object.keys(parsed).length) {
      fill(out, message('error', 'Write one "CODE rate" per line, e.g. "USD 15650.25".', 'fx-result'));
      return;
    }
    submit.disabled = true;
    try {
      const stored = await api('PUT', '/admin/fx-rates', { body: { base: cur, rates: parsed } });
      await render(main);
      fill(document.getElementById('fx-message'), message('ok', `Stored as table ${stored.id}.`, 'fx-result'));
    } catch (err) {
      // The message lists every refused field (`rates.USD: must be above 0`).
      fill(out, message('error', err.message, 'fx-result'));
    } finally {
      submit.disabled = false;
    }
  });

  fill(main,
    h('h1', {}, 'Program'),
    h('section', { class: 'card', id: 'program-summary' }, fields([
      ['version', h('span', { id: 'program-version' }, String(p.version))],
      ['currency', h('span', { id: 'program-currency' }, `${cur} (scale ${p.scale}, rounding ${p.rounding})`)],
      ['time zone', p.timezone],
      ['levels', p.levels.map(pct).join(' · ')],
      ['category rates', Object.entries(p.category_rates || {}).map(([c, r]) => `${c} ${pct(r)}`).join(' · ') || '—'],
      ['excluded categories', (p.excluded_categories || []).join(', ') || '—'],
      ['minimum order', money(p.min_order_amount, cur)],
      ['cap per order', money(p.max_commission_per_order, cur)],
      ['tiers', (p.tiers || []).map((t) => `from ${money(t.monthly_sales_from, cur)}: +${pct(t.bonus_rate)}`).join(' · ') || '—'],
      ['milestones', (p.milestones || []).map((m) => `order ${m.nth_order_in_month}: ${money(m.bonus, cur)}`).join(' · ') || '—'],
      ['holding', `${num(p.holding_days)} days`],
      ['buyer points', `${pct(p.buyer_rewards.points_rate)} of the eligible amount, ${num(Number(p.buyer_rewards.first_order_bonus))} on a first order`],
    ])),
    ...limits(budgets, cur),
    h('h2', {}, 'Currencies'),
    h('p', { class: 'muted' }, `Orders in ${cur} need no rate. An order in another ISO 4217 currency carries its own fx_rate, or takes the rate of the table in force when it was placed; the rate is frozen on the order.`),
    rates
      ? h('section', { class: 'card', id: 'fx-table' },
        fields([['table', h('span', { id: 'fx-table-id' }, String(rates.id))], ['in force since', time(rates.as_of)]]),
        table([{ label: 'currency' }, { label: `1 unit in ${cur}`, num: true }],
          Object.entries(rates.rates).map(([c, r]) => [h('td', { class: 'id' }, c), h('td', { class: 'num' }, money(r, cur))]),
          { id: 'fx-rates' }))
      : h('p', { class: 'muted', id: 'fx-none' }, 'No rate table yet: orders in other currencies must carry fx_rate.'),
    form);
  return null;
}
