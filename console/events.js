// Events: the filtered, paged list of /admin/events; one event's page with
// its payload and histories; replaying one, or every failed/dead event that
// matches the filter (each behind a confirmation naming how many).
import { get, parameterEnum, post, query, seg } from './api.js';
import { action, badge, confirmAction, fields, fill, h, isoToLocal, localToIso, message, num, table, time } from './dom.js';

const STATUSES = ['pending', 'processing', 'done', 'failed', 'dead'];
const TYPES = ['order.placed', 'order.refunded', 'order.cancelled', 'order.completed', 'order.recomputed'];
/** An event's order, when it has one (a buyer's wallet events have none). */
const orderLink = (id) => (id ? h('a', { href: `#/orders/${seg(id)}` }, id) : h('span', { class: 'muted' }, '—'));
const PAGE = 25;
const OPEN = ['pending', 'processing', 'failed'];

export async function render(main, { id, params }) {
  return id ? detail(main, id) : list(main, params);
}

function select(name, label, options, value) {
  return h('label', {}, label, h('select', { name, id: `filter-${name}` },
    h('option', { value: '' }, 'any'),
    options.map((o) => h('option', { value: o, selected: o === value }, o))));
}

const filterKeys = ['status', 'type', 'order_id', 'since', 'until'];

async function list(main, params) {
  const f = Object.fromEntries(filterKeys.map((k) => [k, params.get(k) || '']));
  const cursor = params.get('cursor') || '';
  const limit = Math.min(Math.max(Number.parseInt(params.get('limit'), 10) || PAGE, 1), 500);
  const trail = (params.get('trail') || '').split(',').filter(Boolean);

  const [statuses, types] = await Promise.all([
    parameterEnum('/admin/events', 'status', STATUSES), parameterEnum('/admin/events', 'type', TYPES)]);
  const form = h('form', { class: 'card filters', id: 'event-filters' },
    select('status', 'Status', statuses, f.status),
    select('type', 'Type', types, f.type),
    h('label', {}, 'Order id', h('input', { name: 'order_id', id: 'filter-order_id', value: f.order_id, maxlength: 64 })),
    h('label', {}, 'Created from', h('input', { name: 'since', id: 'filter-since', type: 'datetime-local', value: isoToLocal(f.since) })),
    h('label', {}, 'Created before', h('input', { name: 'until', id: 'filter-until', type: 'datetime-local', value: isoToLocal(f.until) })),
    h('button', { type: 'submit', class: 'primary', id: 'apply-filters' }, 'Filter'),
    h('a', { href: '#/events' }, 'Clear'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const d = new FormData(form);
    location.hash = `#/events${query({
      status: d.get('status'), type: d.get('type'), order_id: d.get('order_id').trim(),
      since: localToIso(d.get('since')), until: localToIso(d.get('until')),
      limit: limit === PAGE ? '' : limit,
    })}`;
  });

  const out = h('div', { id: 'events-message', 'aria-live': 'polite' });
  const page = await get(`/admin/events${query({ ...f, limit, cursor })}`);
  const rows = page.items.map((e) => [
    h('td', { class: 'id' }, h('a', { href: `#/events/${seg(e.id)}` }, e.id)),
    e.type,
    orderLink(e.order_id),
    badge(e.status),
    h('td', { class: 'num' }, num(e.attempts)),
    h('td', { class: 'err' }, e.last_error || ''),
    time(e.created_at),
    time(e.updated_at),
  ]);
  const here = (extra) => `#/events${query({ ...f, limit: limit === PAGE ? '' : limit, ...extra })}`;
  const pager = h('div', { class: 'pager' },
    trail.length || cursor ? h('a', { href: here({ cursor: trail[trail.length - 1] === '-' ? '' : trail[trail.length - 1] || '', trail: trail.slice(0, -1).join(',') }), id: 'page-prev' }, '← Newer') : null,
    page.next_cursor ? h('a', { href: here({ cursor: page.next_cursor, trail: [...trail, cursor || '-'].join(',') }), id: 'page-next' }, 'Older →') : null,
    h('span', { class: 'muted' }, `${page.items.length} shown`));

  let bulk = null;
  if (f.status === 'failed' || f.status === 'dead') {
    bulk = action(`Replay every ${f.status} event matching this filter…`, async () => {
      const counts = await get(`/admin/events/counts${query({ type: f.type, order_id: f.order_id, since: f.since, until: f.until })}`);
      const n = counts[f.status];
      if (!n) {
        fill(out, message('info', `No ${f.status} event matches this filter: nothing to replay.`, 'bulk-result'));
        return;
      }
      const what = [`status ${f.status}`, f.type && `type ${f.type}`, f.order_id && `order ${f.order_id}`,
        f.since && `created from ${f.since}`, f.until && `before ${f.until}`].filter(Boolean).join(', ');
      const ok = await confirmAction(`Replay ${n} ${f.status} event${n === 1 ? '' : 's'} (${what})? Each gets a fresh attempt budget and is processed again.`, `Replay ${n}`);
      if (!ok) return;
      const r = await post('/admin/events/replay', {
        status: f.status, type: f.type || undefined, order_id: f.order_id || undefined,
        since: f.since || undefined, until: f.until || undefined,
      });
      await list(main, params);
      fill(document.getElementById('events-message'),
        message('ok', `Replayed ${r.replayed} event${r.replayed === 1 ? '' : 's'}.`, 'bulk-result'));
    }, { id: 'bulk-replay', cls: 'danger', out });
  }

  fill(main,
    h('h1', {}, 'Events'),
    form,
    h('div', { class: 'actions' }, bulk, action('Refresh', () => list(main, params), { id: 'refresh-events' })),
    out,
    table([{ label: 'event' }, { label: 'type' }, { label: 'order', minor: true }, { label: 'status' }, { label: 'attempts', num: true, minor: true },
      { label: 'last error', minor: true }, { label: 'created', minor: true }, { label: 'updated', minor: true }], rows, { id: 'events-table', empty: 'No event matches.' }),
    pager);
}

async function detail(main, id) {
  let alive = true;
  let timer = null;
  const summary = h('section', { class: 'card', id: 'event-summary' });
  const payload = h('pre', { class: 'json', id: 'event-payload', tabindex: 0 });
  const attempts = h('div', { id: 'attempt-history' });
  const replays = h('div', { id: 'replay-history' });
  const out = h('div', { id: 'event-message', 'aria-live': 'polite' });
  let current = null;
  let replayed = false;

  async function load() {
    const e = await get(`/admin/events/${seg(id)}`);
    if (!alive) return null;
    current = e;
    fill(summary, fields([
      ['id', h('span', { class: 'id' }, e.id)],
      ['type', e.type],
      ['order', orderLink(e.order_id)],
      ['status', h('span', { id: 'event-status' }, badge(e.status))],
      ['attempts', num(e.attempts)],
      ['last error', e.last_error ? h('span', { class: 'neg' }, e.last_error) : '—'],
      ['partition', e.partition],
      ['created', time(e.created_at)],
      ['updated', time(e.updated_at)],
      ['applied', time(e.applied_at)],
      ['next attempt', OPEN.includes(e.status) ? time(e.next_attempt_at) : '—'],
    ]));
    payload.textContent = JSON.stringify(e.payload, null, 2);
    fill(attempts, table([{ label: 'at' }, { label: 'error' }],
      e.attempt_history.map((a) => [time(a.at), h('td', { class: 'err' }, a.error)]), { empty: 'No failed attempt.', id: 'attempts-table' }));
    fill(replays, table([{ label: 'at' }, { label: 'status before' }],
      e.replay_history.map((r) => [time(r.at), badge(r.previous_status)]), { empty: 'Never replayed.', id: 'replays-table' }));
    if (replayed && !OPEN.includes(e.status)) {
      fill(out, message(e.status === 'done' ? 'ok' : 'error', `Replayed: the event is ${e.status} now.`, 'replay-result'));
      replayed = false;
    }
    // While the event is open, follow it until it settles.
    clearTimeout(timer);
    if (OPEN.includes(e.status)) timer = setTimeout(() => load().catch(() => {}), 1000);
    return e;
  }

  const replay = action('Replay this event…', async () => {
    const e = current;
    const note = e.status === 'done'
      ? 'It is done: it is processed again and changes nothing.'
      : 'It gets a fresh attempt budget and is processed again.';
    const of = e.order_id ? ` of order ${e.order_id}` : '';
    if (!(await confirmAction(`Replay 1 event (${e.type}${of}, now ${e.status})? ${note}`, 'Replay 1'))) return;
    const r = await post(`/admin/events/${seg(e.id)}/replay`);
    fill(out, message('info', `Replay accepted: the event is ${r.status} and is being processed.`, 'replay-result'));
    replayed = true;
    await load();
  }, { id: 'replay-one', cls: 'danger', out });

  await load();
  fill(main,
    h('p', {}, h('a', { href: '#/events' }, '← Events')),
    h('h1', {}, `Event ${id}`),
    summary,
    h('div', { class: 'actions' }, replay),
    out,
    h('h2', {}, 'Payload'), payload,
    h('h2', {}, 'Attempt history'), attempts,
    h('h2', {}, 'Replay history'), replays);
  return () => { alive = false; clearTimeout(timer); };
}
