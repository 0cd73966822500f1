// Overview: events per status, backlog and lag from /metrics, reconcile.
// Everything refreshes every 5 s. Reconcile runs in komisi's background (an
// incremental run every minute, a full sweep daily): the overview shows the
// last result and the running run, which cost one indexed read; it never
// starts a run by itself — a full sweep reads every order — only the
// operator's button does, after a confirmation. What was booked per day is
// on the Reports page (linked here), which loads it when opened, not every 5 s.
import { get, metrics, post } from './api.js';
import { action, confirmAction, fill, h, message, num, table, time } from './dom.js';

const REFRESH_MS = 5000;
const STATUSES = ['pending', 'processing', 'failed', 'dead', 'done'];

/** A quantile's upper bound from cumulative histogram buckets. */
function quantile(buckets, q) {
  const rows = buckets.filter((b) => b.labels.le !== undefined)
    .map((b) => ({ le: b.labels.le === '+Inf' ? Infinity : Number(b.labels.le), n: b.value }))
    .sort((a, b) => a.le - b.le);
  const total = rows.length ? rows[rows.length - 1].n : 0;
  if (!total) return null;
  const hit = rows.find((r) => r.n >= q * total);
  return hit ? hit.le : null;
}

const seconds = (s) => (s === null ? '—' : s === Infinity ? '> 60 s' : `≤ ${s} s`);

function stat(label, value, { id, bad, href } = {}) {
  const v = h('div', { class: 'value', id }, value);
  const body = [h('div', { class: 'label' }, label), v];
  return h('div', { class: `stat${bad ? ' bad' : ''}` }, href ? h('a', { href }, ...body) : body);
}

const IDS = ['affiliate_id', 'buyer_id', 'order_id', 'event_id', 'payout_id'];
const KIND = { full: 'full sweep', incremental: 'incremental run' };

/** What a finished run covered, in words. */
function coverage(r) {
  const checked = Object.entries(r.checked).map(([k, v]) => `${num(v)} ${k}`).join(', ');
  if (r.kind === 'full') return `checked ${checked}`;
  const l = r.coverage.ledger_entries;
  const w = r.coverage.reward_entries;
  return `checked ${checked} — what ledger entries ${num(l.from + 1)}–${num(l.to)} and reward entries ${num(w.from + 1)}–${num(w.to)} touched`;
}

/** The last finished run: its result, when, what it covered, its violations. */
function lastRun(r) {
  if (!r) return message('info', 'No reconcile run has finished yet.', 'reconcile-none');
  const when = h('p', { class: 'muted' }, `Last ${KIND[r.kind]} (#${r.run_id}) finished `, time(r.finished_at),
    ', started ', time(r.started_at));
  if (r.status === 'failed') {
    return [message('error', `The last ${KIND[r.kind]} failed: ${r.error || 'no reason given'}`, 'reconcile-failed'), when];
  }
  const head = r.ok ? message('ok', `ok — ${coverage(r)}`, 'reconcile-ok')
    : message('error', `${num(r.violations_total)} violation(s) — ${coverage(r)}`, 'reconcile-bad');
  const shown = r.violations_total > r.violations.length
    ? h('p', { class: 'muted' }, `The first ${num(r.violations.length)} are listed.`) : null;
  const rows = r.violations.map((v) => [v.kind, v.detail, IDS.filter((k) => v[k] != null).map((k) => `${k}=${v[k]}`).join(' ')]);
  return [head, when, rows.length ? table([{ label: 'kind' }, { label: 'detail' }, { label: 'ids' }], rows, { id: 'violations' }) : null, shown];
}

/** What a run checks after its orders (`phase`). */
const PHASE = { wallets: 'wallets', months: 'month counters', counters: 'cap and budget counters', totals: 'balances and totals' };

/** The running run: how far, how long left, what it checks now, where. */
function running(p) {
  if (!p) return null;
  const pct = p.total ? ` (${Math.floor((100 * p.done) / p.total)} %)` : '';
  const eta = p.eta_seconds != null ? `, about ${Math.ceil(p.eta_seconds)} s left` : '';
  const now = p.phase && p.phase !== 'orders' ? `, now checking ${PHASE[p.phase] ?? p.phase}` : '';
  return h('p', { id: 'reconcile-running' }, `Running: ${KIND[p.kind]} #${p.run_id}, ${num(p.done)} of ${num(p.total)} orders${pct}${eta}${now}, on ${p.owner}, started `, time(p.started_at));
}

export async function render(main) {
  const countsEl = h('div', { class: 'grid', id: 'counts' });
  const metricsEl = h('div', { class: 'grid', id: 'metrics' });
  const reconcileEl = h('div', { id: 'reconcile' });
  const updated = h('p', { class: 'muted', id: 'updated' });
  const sweepOut = h('div');
  const sweep = action('Run a full sweep…', async () => {
    const ok = await confirmAction('Run a full reconcile sweep now? It reads every order, affiliate and wallet: on a large database it takes minutes (its progress shows here).', 'Run a full sweep');
    if (!ok) return;
    const r = await post('/admin/reconcile', { kind: 'full' });
    fill(sweepOut, message(r.started ? 'ok' : 'info', r.started ? `Full sweep #${r.run_id} started.` : `Run #${r.run_id} is running already: nothing started.`, 'sweep-started'));
    await refresh();
  }, { id: 'run-reconcile', out: sweepOut });
  fill(main,
    h('h1', {}, 'Overview'),
    h('h2', {}, 'Events by status'), countsEl,
    h('h2', {}, 'Backlog and lag'), metricsEl,
    h('h2', {}, 'Reconcile'), h('section', { class: 'card' }, reconcileEl, h('div', { class: 'actions' }, sweep), sweepOut),
    h('h2', {}, 'Booked per day'),
    h('p', { id: 'overview-reports' }, 'Commissions booked and reversed and orders per day, the totals and the top affiliates of the last 7, 30 or 90 days or of any window: ',
      h('a', { href: '#/reports', id: 'overview-reports-link' }, 'Reports'), ' (loaded when opened, not refreshed here).'),
    updated);

  let alive = true;
  async function refresh() {
    if (document.hidden) return; // nobody is looking: no load on komisi
    const [counts, m, rec] = await Promise.allSettled([get('/admin/events/counts'), metrics(), get('/admin/reconcile')]);
    if (!alive) return;
    if (counts.status === 'fulfilled') {
      const c = counts.value;
      fill(countsEl, STATUSES.map((s) => stat(s, num(c[s]), {
        id: `count-${s}`, bad: (s === 'dead' || s === 'failed') && c[s] > 0, href: `#/events?status=${s}`,
      })));
    } else {
      fill(countsEl, message('error', counts.reason.message));
    }
    if (m.status === 'fulfilled') {
      const g = (name) => (m.value[name] || []).reduce((a, x) => a + x.value, 0);
      const lag = m.value.komisi_event_lag_seconds_bucket || [];
      const sum = g('komisi_event_lag_seconds_sum');
      const count = g('komisi_event_lag_seconds_count');
      fill(metricsEl,
        stat('backlog (open events)', num(g('komisi_events_pending')), { id: 'metric-backlog' }),
        stat('dead (gauge)', num(g('komisi_events_dead')), { id: 'metric-dead' }),
        stat('lag p50', seconds(quantile(lag, 0.5)), { id: 'metric-lag-p50' }),
        stat('lag p99', seconds(quantile(lag, 0.99)), { id: 'metric-lag-p99' }),
        stat('lag mean', count ? `${(sum / count).toFixed(3)} s` : '—', { id: 'metric-lag-mean' }),
        stat('events applied', num(count), { id: 'metric-applied' }));
    } else {
      fill(metricsEl, message('error', m.reason.message));
    }
    if (rec.status === 'fulfilled') {
      fill(reconcileEl, running(rec.value.running), lastRun(rec.value.last));
    } else {
      fill(reconcileEl, message('error', rec.reason.message));
    }
    fill(updated, 'Updated ', time(new Date().toISOString()), ` · every ${REFRESH_MS / 1000} s`);
  }

  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => { alive = false; clearInterval(timer); };
}
