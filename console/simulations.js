// Simulations: backtest a candidate program (the current one, edited as
// JSON) over the orders placed in a window; its progress, then its totals
// per kind and level (a bar per level's change), the affiliates and orders
// that change most, and the CSV of every affiliate.
import { api, get, seg } from './api.js';
import { badge, csvButton, fields, fill, h, message, money, num, svg, table, time } from './dom.js';


const POLL_MS = 1000;
const DAY_MS = 86400000;

export async function render(main, { id }) {
  if (id) return show(main, id);
  const program = await get('/admin/program');
  delete program.version;
  const cur = program.currency;
  const now = Date.now();
  const text = h('textarea', { id: 'sim-program', name: 'program', rows: 18, spellcheck: 'false' }, JSON.stringify(program, null, 2));
  const since = h('input', { id: 'sim-since', name: 'since', value: new Date(now - 30 * DAY_MS).toISOString(), required: true });
  const until = h('input', { id: 'sim-until', name: 'until', value: new Date(now).toISOString(), required: true });
  const compare = h('input', { id: 'sim-compare', name: 'compare_to', value: 'applied', required: true });
  const out = h('div', { id: 'sim-message', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'sim-run' }, 'Run the simulation');
  const form = h('form', { class: 'card', id: 'sim-form' },
    h('label', {}, `The candidate program (the one in force, ${cur}; edit it)`, text),
    h('div', { class: 'filters' },
      h('label', {}, 'Orders placed from (RFC 3339)', since),
      h('label', {}, 'until (at most 366 days)', until),
      h('label', {}, 'Compare with: applied, or a version', compare)),
    h('p', { class: 'muted' }, 'Runs in the background over the orders\' frozen contexts; writes nothing to the ledger.'),
    h('div', { class: 'actions' }, submit), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let candidate;
    try {
      candidate = JSON.parse(text.value);
    } catch (err) {
      fill(out, message('error', `The program is not JSON: ${err.message}`, 'sim-error'));
      return;
    }
    const c = compare.value.trim();
    const body = { program: candidate, since: since.value.trim(), until: until.value.trim(), compare_to: /^\d+$/.test(c) ? Number(c) : c };
    submit.disabled = true;
    try {
      const queued = await api('POST', '/admin/simulations', { body });
      location.hash = `#/simulations/${queued.id}`;
    } catch (err) {
      // The message lists every refused field (`program.levels[0]: …`).
      fill(out, message('error', err.message, 'sim-error'));
    } finally {
      submit.disabled = false;
    }
  });
  fill(main, h('h1', {}, 'Simulations'), form);
  return null;
}

async function show(main, id) {
  const cur = (await get('/admin/program')).currency;
  let timer = null;
  const refresh = async () => {
    const s = await get(`/admin/simulations/${seg(id)}`);
    const p = s.progress;
    const share = p.total ? p.done / p.total : (s.status === 'done' ? 1 : 0);
    fill(main,
      h('h1', {}, `Simulation ${s.id}`),
      h('section', { class: 'card', id: 'sim-summary' }, fields([
        ['status', h('span', { id: 'sim-status' }, badge(s.status))],
        ['window', h('span', {}, time(s.since), ' – ', time(s.until))],
        ['compared with', String(s.compare_to)],
        ['progress', h('span', { class: 'usage' },
          h('progress', { id: 'sim-progress', max: '1', value: String(share) }),
          ` ${num(p.done)} of ${num(p.total)} orders${p.eta_secs != null ? `, about ${Math.ceil(p.eta_secs)} s left` : ''}`)],
        s.error ? ['error', h('span', { class: 'neg' }, s.error)] : null,
      ])),
      s.result ? result(s, cur) : null);
    if (['queued', 'running'].includes(s.status)) timer = setTimeout(refresh, POLL_MS);
  };
  await refresh();
  return () => clearTimeout(timer);
}

function result(s, cur) {
  const r = s.result;
  const levels = new Map();
  for (const t of r.totals) levels.set(t.level, (levels.get(t.level) || 0) + Number(t.delta));
  const deltas = [...levels.entries()].sort((a, b) => a[0] - b[0]);
  const most = Math.max(1, ...deltas.map(([, d]) => Math.abs(d)));
  const W = 400; const ROW = 26;
  const chart = svg('svg', { id: 'sim-chart', viewBox: `0 0 ${W + 160} ${deltas.length * ROW}`, role: 'img', 'aria-label': 'change per level' },
    deltas.map(([level, d], i) => {
      const width = Math.round((Math.abs(d) / most) * (W / 2));
      const x = d >= 0 ? W / 2 : W / 2 - width;
      return svg('g', { class: 'level', 'data-level': level },
        svg('title', {}, `level ${level}: ${d >= 0 ? '+' : ''}${d}`),
        svg('text', { x: 0, y: i * ROW + 17 }, `level ${level}`),
        svg('rect', { class: d >= 0 ? 'bar' : 'bar neg', x: x + 60, y: i * ROW + 4, width, height: ROW - 8 }),
        svg('text', { x: W + 70, y: i * ROW + 17 }, `${d >= 0 ? '+' : ''}${money(String(d), cur)}`));
    }));
  return h('section', { id: 'sim-result' },
    h('h2', {}, 'Result'),
    h('section', { class: 'card' }, fields([
      ['orders', `${num(r.orders)} recomputed${r.skipped ? `, ${num(r.skipped)} never processed (left out)` : ''}`],
      ['paid', `${money(r.baseline_total, cur)} → ${money(r.candidate_total, cur)}`],
      ['points', `${num(r.points_baseline)} → ${num(r.points_candidate)}`],
      ['tiers', `${num(r.affiliates_reaching_a_tier)} affiliates would reach one, ${num(r.affiliates_losing_a_tier)} lose one`],
      ['milestones', `${num(r.affiliates_reaching_a_milestone)} would reach one, ${num(r.affiliates_losing_a_milestone)} lose one`],
    ])),
    h('h3', {}, 'Change per level'), chart,
    table([{ label: 'kind' }, { label: 'level', num: true }, { label: 'now', num: true, minor: true }, { label: 'candidate', num: true, minor: true }, { label: 'change', num: true }],
      r.totals.map((t) => [t.kind, h('td', { class: 'num' }, String(t.level)), h('td', { class: 'num' }, money(t.baseline, cur)),
        h('td', { class: 'num' }, money(t.candidate, cur)), h('td', { class: String(t.delta).startsWith('-') ? 'num neg' : 'num' }, money(t.delta, cur))]),
      { id: 'sim-totals' }),
    h('h3', {}, 'Affiliates that change most'),
    table([{ label: 'affiliate' }, { label: 'now', num: true }, { label: 'candidate', num: true }, { label: 'change', num: true }],
      r.top_affiliates.map((a) => [h('a', { href: `#/affiliates/${seg(a.id)}` }, a.id), h('td', { class: 'num' }, money(a.baseline, cur)),
        h('td', { class: 'num' }, money(a.candidate, cur)), h('td', { class: 'num' }, money(a.delta, cur))]),
      { id: 'sim-affiliates', empty: 'No affiliate would be paid differently.' }),
    csvButton(`/admin/simulations/${seg(String(s.id))}/affiliates.csv`, `simulation-${s.id}-affiliates.csv`,
      { id: 'sim-csv', label: 'Download every affiliate (CSV)', noun: 'affiliates' }));
}

