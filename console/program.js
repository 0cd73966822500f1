// Program: the version in force, its caps and budgets with their use this
// period (a bar per budget), the stored versions with what changed between
// two, the program edited as JSON (the server's validation errors listed at
// their fields and lines), and the exchange-rate table in force for orders
// in other currencies, with a form to put a new one.
import { api, get, query, seg } from './api.js';
import { badge, confirmAction, fields, fill, h, message, money, num, table, time } from './dom.js';

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

/** A JSON document as path → scalar value (`levels[0]`, `buyer_rewards.points_rate`). */
function flatten(value, path = '', out = new Map()) {
  if (Array.isArray(value)) {
    if (!value.length) out.set(path, '[]');
    value.forEach((v, i) => flatten(v, `${path}[${i}]`, out));
  } else if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    if (!keys.length && path) out.set(path, '{}');
    keys.forEach((k) => flatten(value[k], path ? `${path}.${k}` : k, out));
  } else {
    out.set(path, JSON.stringify(value));
  }
  return out;
}

/** What changed from document `a` to `b`: [path, before, after] (undefined: absent). */
export function diff(a, b) {
  const [fa, fb] = [flatten(a), flatten(b)];
  const paths = [...new Set([...fa.keys(), ...fb.keys()])].sort();
  return paths.filter((k) => fa.get(k) !== fb.get(k)).map((k) => [k, fa.get(k), fb.get(k)]);
}

/** The document to edit or compare: a version without its own number and date. */
const doc = (v) => { const { version, created_at, ...rest } = v; return rest; };

/** The 1-based line of a field path's last key in the pretty-printed JSON (null if not found). */
function lineOf(text, field) {
  const key = /([A-Za-z_][A-Za-z0-9_]*)(\[\d+\])*$/.exec(field || '');
  if (!key) return null;
  const at = text.split('\n').findIndex((l) => l.trimStart().startsWith(`"${key[1]}"`));
  return at < 0 ? null : at + 1;
}

/** The stored versions, and what changed between two of them. */
async function versions(current) {
  const page = await get(`/admin/program/versions${query({ limit: 50 })}`);
  const out = h('div', { id: 'program-diff', 'aria-live': 'polite' });
  const pick = (id, selected) => h('select', { id, name: id },
    page.items.map((v) => h('option', { value: String(v.version), selected: v.version === selected ? 'selected' : null }, `version ${v.version}`)));
  const older = page.items[1] ? page.items[1].version : current;
  const from = pick('diff-from', older);
  const to = pick('diff-to', current);
  const compare = async () => {
    const [a, b] = await Promise.all([get(`/admin/program/versions/${seg(from.value)}`), get(`/admin/program/versions/${seg(to.value)}`)]);
    const changes = diff(doc(a), doc(b));
    fill(out, changes.length
      ? table([{ label: 'field' }, { label: `version ${a.version}` }, { label: `version ${b.version}` }],
        changes.map(([k, x, y]) => [h('td', { class: 'id' }, k), x === undefined ? '—' : x, y === undefined ? '—' : y]), { id: 'diff-table' })
      : h('p', { class: 'muted', id: 'diff-none' }, `Versions ${a.version} and ${b.version} are the same program.`));
  };
  const form = h('form', { class: 'card filters', id: 'diff-form' },
    h('label', {}, 'from ', from), h('label', {}, 'to ', to),
    h('button', { type: 'submit', id: 'diff-run' }, 'Compare'));
  form.addEventListener('submit', async (e) => { e.preventDefault(); await compare(); });
  if (page.items.length > 1) await compare();
  return [
    h('h2', {}, 'Versions'),
    table([{ label: 'version', num: true }, { label: 'stored' }, { label: '' }],
      page.items.map((v) => [h('td', { class: 'num' }, String(v.version)), time(v.created_at), v.current ? badge('in force') : '']),
      { id: 'program-versions' }),
    page.items.length > 1 ? [form, out] : h('p', { class: 'muted' }, 'One version so far: nothing to compare.'),
  ];
}

/** The program in force as JSON, stored as a new version after the server's checks. */
function editor(main, p) {
  const text = JSON.stringify(doc(p), null, 2);
  const input = h('textarea', { id: 'program-json', name: 'program', rows: Math.min(40, text.split('\n').length + 1), spellcheck: 'false' }, text);
  const out = h('div', { id: 'program-edit-message', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'program-save' }, 'Check and store as a new version…');
  const form = h('form', { class: 'card', id: 'program-form' },
    h('label', { for: 'program-json' }, 'The program in force, as JSON. A new version applies to orders placed from then on; stored versions never change.'),
    input, h('div', { class: 'actions' }, submit), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let body;
    try {
      body = JSON.parse(input.value);
    } catch (err) {
      fill(out, message('error', `Not JSON: ${err.message}`, 'program-errors'));
      return;
    }
    const changes = diff(doc(p), body);
    if (!changes.length) {
      fill(out, message('info', 'Nothing changed: no version stored.', 'program-errors'));
      return;
    }
    if (!(await confirmAction(`Store a new program version (${changes.length} field${changes.length === 1 ? '' : 's'} changed: ${changes.slice(0, 4).map(([k]) => k).join(', ')}${changes.length > 4 ? ', …' : ''})? Orders placed from now on are paid under it.`, 'Store version'))) return;
    submit.disabled = true;
    try {
      const stored = await api('PUT', '/admin/program', { body });
      await render(main);
      fill(document.getElementById('program-edit-message'), message('ok', `Stored as version ${stored.version}.`, 'program-stored'));
    } catch (err) {
      const errors = err.problem && Array.isArray(err.problem.errors) ? err.problem.errors : null;
      if (err.status === 422 && errors) {
        // Each refused field with its line in the text above.
        fill(out, h('div', { class: 'message error', role: 'alert', id: 'program-errors' },
          `Not stored: ${errors.length} field${errors.length === 1 ? ' is' : 's are'} refused.`,
          h('ul', {}, errors.map((x) => {
            const line = lineOf(input.value, x.field);
            return h('li', { class: 'field-error', 'data-field': x.field }, h('code', {}, x.field || 'body'),
              line ? ` (line ${line})` : '', `: ${x.message}`);
          }))));
      } else {
        fill(out, message('error', err.message, 'program-errors'));
      }
    } finally {
      submit.disabled = false;
    }
  });
  return [h('h2', {}, 'Edit'), form];
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
    ...(await versions(p.version)),
    ...editor(main, p),
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
