// Overview: events per status, backlog and lag from /metrics, reconcile.
// Counts and metrics refresh every 5 s; reconcile (it reads every order, so
// it is costly on a large database) on opening, every 60 s and on demand.
import { get, metrics } from './api.js';
import { fill, h, message, num, table, time } from './dom.js';

const REFRESH_MS = 5000;
const RECONCILE_MS = 60000;
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

export async function render(main) {
  const countsEl = h('div', { class: 'grid', id: 'counts' });
  const metricsEl = h('div', { class: 'grid', id: 'metrics' });
  const reconcileEl = h('div', { id: 'reconcile' });
  const updated = h('p', { class: 'muted', id: 'updated' });
  const reconcileButton = h('button', { type: 'button', id: 'run-reconcile' }, 'Run reconcile now');
  fill(main,
    h('h1', {}, 'Overview'),
    h('h2', {}, 'Events by status'), countsEl,
    h('h2', {}, 'Backlog and lag'), metricsEl,
    h('h2', {}, 'Reconcile'), h('section', { class: 'card' }, reconcileEl, h('div', { class: 'actions' }, reconcileButton)),
    updated);

  let alive = true;
  async function refresh() {
    if (document.hidden) return; // nobody is looking: no load on komisi
    const [counts, m] = await Promise.allSettled([get('/admin/events/counts'), metrics()]);
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
    fill(updated, 'Updated ', time(new Date().toISOString()), ` · every ${REFRESH_MS / 1000} s`);
  }

  let reconciling = false;
  async function reconcile(e) {
    if (reconciling || (!e && document.hidden)) return;
    reconciling = true;
    reconcileButton.disabled = true;
    try {
      const r = await get('/admin/reconcile');
      if (!alive) return;
      const checked = Object.entries(r.checked).map(([k, v]) => `${num(v)} ${k}`).join(', ');
      fill(reconcileEl,
        r.ok ? message('ok', `ok — checked ${checked}`, 'reconcile-ok')
          : message('error', `${r.violations.length} violation(s) — checked ${checked}`, 'reconcile-bad'),
        r.violations.length ? table(
          [{ label: 'kind' }, { label: 'detail' }, { label: 'ids' }],
          r.violations.map((v) => [v.kind, v.detail,
            ['affiliate_id', 'buyer_id', 'order_id', 'event_id', 'payout_id'].filter((k) => v[k] !== undefined).map((k) => `${k}=${v[k]}`).join(' ')]),
          { id: 'violations' }) : null,
        h('p', { class: 'muted' }, 'Checked ', time(new Date().toISOString())));
    } catch (e) {
      if (alive) fill(reconcileEl, message('error', e.message));
    } finally {
      reconciling = false;
      reconcileButton.disabled = false;
    }
  }
  reconcileButton.addEventListener('click', reconcile);

  await refresh();
  reconcile();
  const timers = [setInterval(refresh, REFRESH_MS), setInterval(reconcile, RECONCILE_MS)];
  return () => { alive = false; timers.forEach(clearInterval); };
}
