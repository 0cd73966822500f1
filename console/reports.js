// Reports: what komisi booked per day over a window of the program's time
// zone (/admin/reports/daily) — commissions up, reversals below the axis,
// orders per day, the numbers as a table and the window's totals — and the
// window's top affiliates (/admin/reports/top-affiliates).
//
// Loaded when the page opens, when the window or the ranking changes, and on
// Refresh — never on a timer: nobody reads a month's figures every 5 s. The
// window is kept in the address (`#/reports?days=7`, or `?since=&until=`
// with the API's exclusive `until`; `&by=sales`) without reloading the page.
// The charts are SVG drawn here at the width they get (again when that width
// changes), so their labels stay readable on a phone.
import { get, query, seg } from './api.js';
import { fill, h, message, money, moneyCell, num, svg, table } from './dom.js';

const PRESETS = [7, 30, 90];
const DEFAULT_DAYS = 30;
const BY = ['commission', 'sales', 'orders'];
const TOP = 10;
const DAY_MS = 86400000;
const DATE = /^\d{4}-\d{2}-\d{2}$/;
/** What the commissions bar stacks (credits by kind), bottom up. */
const KINDS = [['commission', 'commission'], ['tier_bonus', 'tier bonus'], ['milestone_bonus', 'milestone bonus']];

/** '2026-12-05' plus n days. */
const addDays = (date, n) => new Date(Date.parse(`${date}T00:00:00Z`) + n * DAY_MS).toISOString().slice(0, 10);

/** Today's date in `tz` (the report's days are that zone's). */
function today(tz) {
  try {
    const p = Object.fromEntries(new Intl.DateTimeFormat('en-US', { timeZone: tz, year: 'numeric', month: '2-digit', day: '2-digit' })
      .formatToParts(new Date()).map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day}`;
  } catch {
    return new Date().toISOString().slice(0, 10);
  }
}

/** 'Dec 5': a date as the axis shows it. */
const shortDate = (date) => new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' })
  .format(new Date(`${date}T00:00:00Z`));

/** The exact sum of decimal strings ('207000', '-10.5'), as a decimal string. */
function addDecimals(...xs) {
  const parts = xs.map((x) => String(x ?? '0').trim().match(/^([-+]?)(\d*)(?:\.(\d*))?$/) || ['', '', '0', '']);
  const scale = Math.max(0, ...parts.map((m) => (m[3] || '').length));
  let total = 0n;
  for (const [, sign, int, frac = ''] of parts) {
    const v = BigInt(`${int || '0'}${frac.padEnd(scale, '0')}`);
    total += sign === '-' ? -v : v;
  }
  const neg = total < 0n;
  const digits = (neg ? -total : total).toString().padStart(scale + 1, '0');
  const out = scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
  return neg ? `-${out}` : out;
}

/** A day's commissions booked: the credits of every kind. */
const booked = (d) => addDecimals(d.commission, d.tier_bonus, d.milestone_bonus);

const compact = (v) => new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 }).format(v);

/** About `n` round ticks (1, 2 or 5 × 10^k apart) covering lo..hi, 0 among them. */
function ticks(lo, hi, n, { integer = false } = {}) {
  if (hi - lo <= 0) hi = lo + 1;
  let step = (hi - lo) / Math.max(1, n - 1);
  const p = 10 ** Math.floor(Math.log10(step));
  step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= step);
  if (integer) step = Math.max(1, Math.round(step));
  const out = [];
  for (let v = Math.floor(lo / step) * step; v < hi + step / 2; v += step) out.push(Math.round(v / step) * step);
  if (out[out.length - 1] < hi) out.push(out[out.length - 1] + step);
  return out;
}

/**
 * A bar a day drawn `width` px wide: `up` series stacked above the axis
 * (values ≥ 0), `down` (≤ 0) below it. Each day is a `g.day` (data-date)
 * with its <title>; the y axis has round ticks, the x axis as many dates as
 * fit, the last day always among them.
 */
function dayChart({ id, summary, width, height, days, up, down, integer, tip }) {
  const narrow = width < 480;
  const M = { top: 10, right: 6, bottom: 22, left: narrow ? 38 : 48 };
  const plotW = Math.max(20, width - M.left - M.right);
  const plotH = height - M.top - M.bottom;
  const n = days.length;
  const ups = days.map((d) => up.map((s) => Math.max(0, Number(d[s.key]) || 0)));
  const downs = days.map((d) => (down ? Math.min(0, Number(d[down.key]) || 0) : 0));
  const hi = Math.max(0, ...ups.map((v) => v.reduce((a, b) => a + b, 0)));
  const lo = Math.min(0, ...downs);
  const ts = ticks(lo, hi, plotH < 100 ? 3 : 5, { integer });
  const [bottom, top] = [ts[0], ts[ts.length - 1]];
  const y = (v) => M.top + ((top - v) / (top - bottom)) * plotH;
  const slot = plotW / n;
  const barW = Math.max(1, Math.min(32, slot * 0.7));
  const x0 = (i) => M.left + i * slot;
  // Dates that fit (about 52 px each), counted back from the last day.
  const every = Math.max(1, Math.ceil(n / Math.max(1, Math.floor(plotW / 52))));
  const labelled = (i) => (n - 1 - i) % every === 0;
  // A bar from one value to another, at least 1 px tall when they differ.
  const bar = (cls, x, from, to) => {
    if (from === to) return null;
    const hgt = Math.max(1, Math.abs(y(to) - y(from)));
    return svg('rect', { class: `bar ${cls}`, x, y: to > from ? y(from) - hgt : y(from), width: barW, height: hgt });
  };
  return svg('svg', {
    id, class: 'report-chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': summary,
    'data-days': n,
  },
  svg('title', {}, summary),
  ts.map((t) => svg('g', { class: 'tick' },
    svg('line', { class: t === 0 ? 'axis' : 'grid', x1: M.left, x2: M.left + plotW, y1: y(t), y2: y(t) }),
    svg('text', { x: M.left - 5, y: y(t) + 4, 'text-anchor': 'end' }, integer ? num(t) : compact(t)))),
  days.map((d, i) => {
    const x = x0(i) + (slot - barW) / 2;
    let base = 0;
    const stack = up.map((s, k) => {
      const r = bar(s.key, x, base, base + ups[i][k]);
      base += ups[i][k];
      return r;
    });
    return svg('g', { class: 'day', 'data-date': d.date },
      svg('title', {}, tip(d)),
      svg('rect', { class: 'slot', x: x0(i), y: M.top, width: slot, height: plotH }),
      stack,
      down ? bar(down.key, x, 0, downs[i]) : null);
  }),
  days.map((d, i) => {
    if (!labelled(i)) return null;
    const cx = x0(i) + slot / 2;
    // Kept inside the chart at its edges.
    const anchor = cx + 24 > width ? 'end' : cx - 24 < 0 ? 'start' : 'middle';
    const tx = anchor === 'end' ? Math.min(width - 1, x0(i) + slot) : anchor === 'start' ? x0(i) : cx;
    return svg('text', { class: 'date', x: tx, y: height - 6, 'text-anchor': anchor }, shortDate(d.date));
  }));
}

function stat(label, value, id, { negative, raw } = {}) {
  return h('div', { class: 'stat' }, h('div', { class: 'label' }, label),
    h('div', { class: `value${negative ? ' neg' : ''}`, id, 'data-value': raw }, value));
}

/** The window from the address: a preset (days) or dates (the API's since and exclusive until). */
function windowOf(params) {
  const since = params.get('since');
  const until = params.get('until');
  if (DATE.test(since || '') && DATE.test(until || '')) return { since, until };
  const days = Number(params.get('days'));
  return { days: PRESETS.includes(days) ? days : DEFAULT_DAYS };
}

/** The top affiliates ranked `by`; the ranked column and the commission stay in view on a phone. */
function topTable(top, by) {
  const cur = top.currency;
  const minor = (col) => col !== by && col !== 'commission';
  const ranked = (td, col) => { if (col === by) td.classList.add('ranked'); return td; };
  const rows = top.items.map((a, i) => [
    h('td', { class: 'num' }, String(i + 1)),
    h('td', { class: 'affiliate' }, h('a', { href: `#/affiliates/${seg(a.affiliate_id)}` }, a.name ?? a.affiliate_id),
      a.name != null && a.name !== a.affiliate_id ? h('span', { class: 'muted' }, ` ${a.affiliate_id}`) : null),
    ranked(h('td', { class: 'num' }, num(a.orders)), 'orders'),
    ranked(moneyCell(a.sales, cur), 'sales'),
    ranked(moneyCell(a.commission, cur), 'commission'),
  ]);
  return table([
    { label: '#', num: true, minor: true }, { label: 'affiliate' },
    { label: 'orders', num: true, minor: minor('orders') }, { label: 'sales', num: true, minor: minor('sales') },
    { label: 'commission', num: true, minor: minor('commission') },
  ], rows, { id: 'top-table', empty: 'No affiliate booked anything in this window.' });
}

/** A row a day, newest first, with the window's totals in the footer (the rows' sums). */
function dailyTable(r) {
  const cur = r.currency;
  const columns = [
    { label: 'date' }, { label: 'orders', num: true }, { label: 'eligible sales', num: true, minor: true },
    { label: 'commissions', num: true }, { label: 'reversals', num: true }, { label: 'adjustments', num: true, minor: true },
    { label: 'points earned', num: true, minor: true }, { label: 'points spent', num: true, minor: true },
  ];
  const days = [...r.days].reverse();
  const rows = days.map((d) => [
    h('td', { class: 'date', title: `${d.start} – ${d.end} (UTC)` }, d.date),
    num(d.orders), moneyCell(d.eligible_sales, cur), moneyCell(booked(d), cur), moneyCell(d.reversals, cur),
    moneyCell(d.adjustments, cur), num(d.points_earned), num(d.points_spent),
  ]);
  const sum = (k) => addDecimals(...r.days.map((d) => d[k]));
  const count = (k) => r.days.reduce((a, d) => a + d[k], 0);
  const totals = {
    orders: count('orders'), sales: sum('eligible_sales'), commissions: addDecimals(...r.days.map(booked)),
    reversals: sum('reversals'), adjustments: sum('adjustments'), earned: count('points_earned'), spent: count('points_spent'),
  };
  const foot = (id, value, text, col) => h('td', {
    id: `daily-total-${id}`, 'data-value': value,
    class: [col.num ? 'num' : null, col.minor ? 'minor' : null, String(value).startsWith('-') ? 'neg' : null].filter(Boolean).join(' '),
  }, text);
  const wrap = table(columns, rows, { id: 'daily-table', empty: 'No day in this window.' });
  // A day that booked nothing is quieter.
  const quiet = (d) => !d.orders && !d.points_earned && !d.points_spent
    && ['eligible_sales', 'commission', 'tier_bonus', 'milestone_bonus', 'reversals', 'adjustments'].every((k) => Number(d[k]) === 0);
  wrap.querySelectorAll('tbody tr').forEach((tr, i) => { if (quiet(days[i])) tr.classList.add('quiet'); });
  wrap.querySelector('table')?.append(h('tfoot', {}, h('tr', {},
    h('th', { scope: 'row' }, 'Total'),
    foot('orders', totals.orders, num(totals.orders), columns[1]),
    foot('sales', totals.sales, money(totals.sales, cur), columns[2]),
    foot('commissions', totals.commissions, money(totals.commissions, cur), columns[3]),
    foot('reversals', totals.reversals, money(totals.reversals, cur), columns[4]),
    foot('adjustments', totals.adjustments, money(totals.adjustments, cur), columns[5]),
    foot('points-earned', totals.earned, num(totals.earned), columns[6]),
    foot('points-spent', totals.spent, num(totals.spent), columns[7]))));
  return wrap;
}

export async function render(main, { params }) {
  let win = windowOf(params);
  let by = BY.includes(params.get('by')) ? params.get('by') : 'commission';
  let alive = true;
  let seq = 0;
  let topSeq = 0;
  let report = null;

  // The days are the program's (neither report is asked for another zone).
  const program = await get('/admin/program');
  const tz = program.timezone;

  const presetButtons = PRESETS.map((n) => h('button', { type: 'button', id: `report-days-${n}`, 'aria-pressed': 'false',
    on: { click: () => change({ days: n }) } }, `${n} days`));
  const sinceInput = h('input', { type: 'date', id: 'report-since', name: 'since', required: true, 'aria-describedby': 'report-error' });
  const lastInput = h('input', { type: 'date', id: 'report-last', name: 'last', required: true, 'aria-describedby': 'report-error' });
  const form = h('form', { class: 'card filters', id: 'report-window', novalidate: true },
    h('div', { class: 'window-presets' }, h('span', { class: 'group-label', id: 'report-presets-label' }, 'Last'),
      h('div', { class: 'segmented', role: 'group', 'aria-labelledby': 'report-presets-label' }, presetButtons)),
    h('label', {}, 'From', sinceInput),
    h('label', {}, 'To (inclusive)', lastInput),
    h('button', { type: 'submit', class: 'primary', id: 'report-apply' }, 'Show'),
    h('button', { type: 'button', id: 'report-refresh', on: { click: () => load() } }, 'Refresh'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const since = sinceInput.value;
    const last = lastInput.value;
    for (const i of [sinceInput, lastInput]) i.removeAttribute('aria-invalid');
    const bad = !DATE.test(since) ? [sinceInput, 'Choose the first day.'] : !DATE.test(last) ? [lastInput, 'Choose the last day.']
      : last < since ? [lastInput, 'The last day is before the first.'] : null;
    if (bad) {
      bad[0].setAttribute('aria-invalid', 'true');
      fill(errorEl, message('error', bad[1]));
      bad[0].focus();
      return;
    }
    change({ since, until: addDays(last, 1) });
  });

  const tzEl = h('strong', { id: 'report-tz' }, tz);
  const rangeEl = h('span', { id: 'report-range' });
  const statusEl = h('span', { id: 'report-status', class: 'muted', 'aria-live': 'polite' });
  const errorEl = h('div', { id: 'report-error' });
  const totalsEl = h('div', { class: 'grid', id: 'report-totals' });
  const bookedFig = h('figure', { class: 'report-figure', id: 'booked-figure' });
  const ordersFig = h('figure', { class: 'report-figure', id: 'orders-figure' });
  const dailyEl = h('div', { id: 'daily' });
  const byButtons = BY.map((b) => h('button', { type: 'button', id: `top-by-${b}`, 'aria-pressed': String(b === by),
    on: { click: () => { if (b !== by) { by = b; remember(); loadTop(); } } } }, b));
  const topEl = h('div', { id: 'top' });
  const topStatus = h('span', { class: 'muted', id: 'top-status', 'aria-live': 'polite' });
  const results = h('div', { id: 'report' },
    h('h2', {}, 'Totals'), totalsEl,
    h('h2', {}, 'Booked per day'), bookedFig, ordersFig,
    h('div', { class: 'heading-row' }, h('h2', { id: 'top-heading' }, 'Top affiliates'),
      h('div', { class: 'window-presets' }, h('span', { class: 'group-label', id: 'top-by-label' }, 'Rank by'),
        h('div', { class: 'segmented', role: 'group', 'aria-labelledby': 'top-by-label' }, byButtons)), topStatus),
    topEl,
    h('h2', {}, 'Per day'), dailyEl);

  fill(main,
    h('h1', {}, 'Reports'),
    h('p', { class: 'muted' }, 'What komisi booked per day, in days of ', tzEl, ' (the program\'s time zone)',
      rangeEl, '. Loaded when opened and when the window changes, not every 5 s.'),
    form, statusEl, errorEl, results);

  /** The window's dates: a preset counts back from today in the program's zone. */
  const dates = () => {
    if (!win.days) return { since: win.since, until: win.until };
    const end = addDays(today(tz), 1);
    return { since: addDays(end, -win.days), until: end };
  };
  const remember = () => {
    const w = win.days ? { days: win.days === DEFAULT_DAYS ? '' : win.days } : { since: win.since, until: win.until };
    history.replaceState(null, '', `#/reports${query({ ...w, by: by === 'commission' ? '' : by })}`);
    for (const b of byButtons) b.setAttribute('aria-pressed', String(b.id === `top-by-${by}`));
  };
  const change = (w) => {
    win = w;
    remember();
    load();
  };

  function showWindow(since, until) {
    for (const b of presetButtons) b.setAttribute('aria-pressed', String(b.id === `report-days-${win.days}`));
    sinceInput.value = since;
    lastInput.value = addDays(until, -1);
  }

  const topPath = (w) => `/admin/reports/top-affiliates${query({ ...w, by, limit: TOP })}`;

  /** The window's report and top affiliates; shown together, or (refused) the last ones stay. */
  async function load() {
    const mine = ++seq;
    const topMine = ++topSeq;
    const w = dates();
    showWindow(w.since, w.until);
    fill(errorEl);
    for (const i of [sinceInput, lastInput]) i.removeAttribute('aria-invalid');
    fill(statusEl, 'Loading…');
    fill(topStatus, 'Loading…');
    results.setAttribute('aria-busy', 'true');
    const [daily, top] = await Promise.allSettled([get(`/admin/reports/daily${query(w)}`), get(topPath(w))]);
    if (!alive || mine !== seq) return;
    results.removeAttribute('aria-busy');
    fill(statusEl);
    if (daily.status === 'rejected') {
      const e = daily.reason;
      const errors = e.status === 422 && Array.isArray(e.problem?.errors) ? e.problem.errors : [];
      const label = { since: 'From', until: 'To' };
      const inputs = { since: sinceInput, until: lastInput };
      for (const x of errors) inputs[x.field]?.setAttribute('aria-invalid', 'true');
      const still = report ? ` The figures below are still those of ${report.since} to ${addDays(report.until, -1)}.` : '';
      fill(errorEl, message('error', (errors.length
        ? `Not shown: ${errors.map((x) => `${label[x.field] || x.field}: ${x.message}`).join('; ')}.` : e.message) + still, 'report-failed'));
      if (topMine === topSeq) fill(topStatus);
      return;
    }
    report = daily.value;
    draw();
    fill(statusEl, `${num(report.days.length)} day${report.days.length === 1 ? '' : 's'}, loaded ${new Date().toLocaleTimeString()}.`);
    if (topMine === topSeq) showTop(top);
  }

  /** The top affiliates again (another ranking), of the window shown. */
  async function loadTop() {
    const mine = ++topSeq;
    fill(topStatus, 'Loading…');
    const [top] = await Promise.allSettled([get(topPath(report ? { since: report.since, until: report.until } : dates()))]);
    if (alive && mine === topSeq) showTop(top);
  }

  function showTop(top) {
    fill(topStatus);
    if (top.status === 'rejected') {
      fill(topEl, message('error', top.reason.message, 'top-failed'));
      return;
    }
    fill(topEl, topTable(top.value, by));
    topEl.dataset.by = top.value.by;
  }

  function draw() {
    const r = report;
    const cur = r.currency;
    const last = addDays(r.until, -1);
    fill(tzEl, r.tz);
    fill(rangeEl, ': ', h('span', { class: 'nowrap' }, r.since), ' to ', h('span', { class: 'nowrap' }, last));
    results.dataset.since = r.since;
    results.dataset.until = r.until;
    results.dataset.tz = r.tz;
    const t = r.totals;
    const credits = booked(t);
    const net = addDecimals(credits, t.reversals, t.adjustments);
    fill(totalsEl,
      stat('orders', num(t.orders), 'total-orders', { raw: t.orders }),
      stat('eligible sales', money(t.eligible_sales, cur), 'total-sales', { raw: t.eligible_sales }),
      stat('commissions booked', money(credits, cur), 'total-commissions', { raw: credits }),
      stat('reversals', money(t.reversals, cur), 'total-reversals', { raw: t.reversals, negative: t.reversals.startsWith('-') }),
      stat('adjustments', money(t.adjustments, cur), 'total-adjustments', { raw: t.adjustments, negative: t.adjustments.startsWith('-') }),
      stat('net change', money(net, cur), 'total-net', { raw: net, negative: net.startsWith('-') }),
      stat('points earned', num(t.points_earned), 'total-points-earned', { raw: t.points_earned }),
      stat('points spent', num(t.points_spent), 'total-points-spent', { raw: t.points_spent }));
    drawCharts();
    fill(dailyEl, dailyTable(r));
  }

  /** The charts at the width their box has now. */
  let drawnWidth = 0;
  function drawCharts() {
    if (!report) return;
    const r = report;
    const cur = r.currency;
    const last = addDays(r.until, -1);
    const pad = getComputedStyle(bookedFig);
    const inner = Math.floor(bookedFig.clientWidth - parseFloat(pad.paddingLeft) - parseFloat(pad.paddingRight));
    const width = inner > 0 ? inner : 600;
    drawnWidth = bookedFig.clientWidth;
    const days = r.days.map((d) => ({ ...d, booked: booked(d) }));
    const best = days.reduce((a, d) => (Number(d.booked) > Number(a.booked) ? d : a), days[0]);
    const mostOrders = days.reduce((a, d) => (d.orders > a.orders ? d : a), days[0]);
    const span = `${r.since} to ${last} (days of ${r.tz})`;
    const bookedSummary = `Commissions booked per day in ${cur}, ${span}: ${money(booked(r.totals), cur)} booked, `
      + `${money(r.totals.reversals.replace(/^-/, ''), cur)} reversed`
      + (best && Number(best.booked) > 0 ? `; most on ${best.date}, ${money(best.booked, cur)}.` : '.');
    const ordersSummary = `Orders per day, ${span}: ${num(r.totals.orders)} in all`
      + (mostOrders && mostOrders.orders > 0 ? `; most on ${mostOrders.date}, ${num(mostOrders.orders)}.` : '.');
    const tipBooked = (d) => `${d.date}: ${money(d.booked, cur)} booked (commission ${money(d.commission, cur)}, tier bonus `
      + `${money(d.tier_bonus, cur)}, milestone bonus ${money(d.milestone_bonus, cur)}); reversals ${money(d.reversals, cur)}`;
    fill(bookedFig,
      h('figcaption', { id: 'booked-caption' }, `Commissions booked per day (${cur})`,
        h('span', { class: 'muted' }, ' — credits up, reversals down')),
      dayChart({ id: 'booked-chart', summary: bookedSummary, width, height: width < 480 ? 190 : 230, days,
        up: KINDS.map(([key]) => ({ key })), down: { key: 'reversals' }, tip: tipBooked }),
      h('ul', { class: 'legend' },
        KINDS.map(([key, label]) => h('li', {}, h('span', { class: `swatch ${key}` }), label)),
        h('li', {}, h('span', { class: 'swatch reversals' }), 'reversals')));
    fill(ordersFig,
      h('figcaption', { id: 'orders-caption' }, 'Orders per day'),
      dayChart({ id: 'orders-chart', summary: ordersSummary, width, height: 120, days, integer: true,
        up: [{ key: 'orders' }], tip: (d) => `${d.date}: ${num(d.orders)} order${d.orders === 1 ? '' : 's'}` }));
  }

  // Redrawn when the charts' box changes width (a rotated phone, a resized window).
  let frame = 0;
  const resized = new ResizeObserver(() => {
    if (!report || bookedFig.clientWidth === drawnWidth) return;
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(drawCharts);
  });
  resized.observe(bookedFig);

  remember();
  await load();
  return () => {
    alive = false;
    resized.disconnect();
    cancelAnimationFrame(frame);
  };
}
