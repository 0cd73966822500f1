// Audit: the trail of every write made through the API (GET /admin/audit),
// newest first — when, who (the key's name), what, on what, the request id
// and what it changed (a short before → after, the whole JSON behind a
// click); filtered by actor, action and time, a page at a time. A filter the
// server refuses (422) is shown at its field.
import { get, query, schemaEnum, seg } from './api.js';
import { fill, h, isoToLocal, localToIso, message, time } from './dom.js';

/** The audited actions (docs/API.md); /openapi.json's `Action` list when it has one. */
const ACTIONS = ['program.replace', 'fx_rates.replace', 'affiliate.caps', 'affiliate.update', 'payout.create',
  'payout.complete', 'reconcile.start', 'event.replay', 'order.recompute', 'order.reattribute', 'buyer.link',
  'coupon.add', 'coupon.delete', 'webhook.create', 'webhook.update', 'webhook.delete', 'webhook.rotate_secret',
  'webhook.resend', 'webhook.recover', 'webhook.prune', 'simulation.submit', 'simulation.cancel',
  'adjustment.commission', 'adjustment.points'];
const PAGE = 50;
/** The most characters of each side of the short before → after. */
const SHORT = 60;
const FILTERS = ['actor', 'action', 'since'];
/** The console page of a subject's kind (`affiliate:B` → #/affiliates/B). */
const PAGES = { affiliate: 'affiliates', order: 'orders', payout: 'payouts', webhook_endpoint: 'webhooks', simulation: 'simulations', event: 'events' };

/** A value as one line of JSON, cut to `max` characters; '—' for none. */
function brief(v, max = SHORT) {
  if (v === null || v === undefined) return '—';
  const s = JSON.stringify(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** `adjustment.commission` as pieces that may go on two lines after the dot, where the cell wraps (a phone's width). */
const breakable = (s) => s.split(/(?<=\.)/).map((part) => h('span', { class: 'piece' }, part));

/** The subject, linked to its page in the console when it has one. */
function subject(s) {
  const at = s.indexOf(':');
  const [kind, id] = at < 0 ? [s, ''] : [s.slice(0, at), s.slice(at + 1)];
  if (s === 'program' || kind === 'fx_rates') return h('a', { href: '#/program' }, s);
  if (id && PAGES[kind]) return h('a', { href: `#/${PAGES[kind]}/${seg(id)}` }, s);
  return s;
}

/** A filter's control in its label, with a place for the server's message about it. */
function field(name, label, control) {
  const error = h('span', { class: 'field-error', id: `audit-${name}-error`, hidden: true });
  control.setAttribute('aria-describedby', error.id);
  return { name, control, error, label: h('label', {}, label, control, error) };
}

/** The server's field errors shown at their fields; the others (limit, cursor) returned. */
function showErrors(fieldsByName, errors) {
  const rest = [];
  for (const e of errors) {
    const f = fieldsByName[e.field];
    if (!f) { rest.push(e); continue; }
    fill(f.error, e.message);
    f.error.hidden = false;
    f.control.setAttribute('aria-invalid', 'true');
  }
  return rest;
}

function entries(items, columns) {
  if (!items.length) return h('p', { class: 'muted', 'data-empty': 'audit-table' }, 'No audited write matches.');
  const minor = (c) => (c.minor ? 'minor' : null);
  return h('div', { class: 'table-wrap' }, h('table', { id: 'audit-table', class: 'audit' },
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: minor(c) }, c.label)))),
    items.map((e) => {
      const detailId = `audit-detail-${e.id}`;
      const detail = h('tr', { class: 'audit-detail', id: detailId, hidden: true },
        h('td', { colspan: columns.length },
          h('dl', { class: 'fields' },
            h('dt', {}, 'entry'), h('dd', {}, String(e.id)),
            h('dt', {}, 'at'), h('dd', {}, time(e.at), h('span', { class: 'muted' }, ` (${e.at})`)),
            h('dt', {}, 'actor'), h('dd', {}, e.actor),
            h('dt', {}, 'request id'), h('dd', { class: 'id' }, e.request_id || '—'),
            h('dt', {}, 'action'), h('dd', {}, e.action),
            h('dt', {}, 'subject'), h('dd', {}, subject(e.subject))),
          h('div', { class: 'before-after' },
            h('div', {}, h('h3', {}, 'Before'), e.before === null || e.before === undefined
              ? h('p', { class: 'muted' }, '— (nothing recorded)')
              : h('pre', { class: 'json audit-before', tabindex: 0 }, JSON.stringify(e.before, null, 2))),
            h('div', {}, h('h3', {}, 'After'), e.after === null || e.after === undefined
              ? h('p', { class: 'muted' }, '— (nothing recorded)')
              : h('pre', { class: 'json audit-after', tabindex: 0 }, JSON.stringify(e.after, null, 2))))));
      const toggles = [];
      const toggle = (cls, label, ...content) => {
        const b = h('button', { type: 'button', class: `link ${cls}`, 'aria-expanded': 'false', 'aria-controls': detailId, title: label }, ...content);
        b.addEventListener('click', () => {
          detail.hidden = !detail.hidden;
          for (const t of toggles) t.setAttribute('aria-expanded', String(!detail.hidden));
        });
        toggles.push(b);
        return b;
      };
      return h('tbody', { 'data-entry': String(e.id) },
        h('tr', { class: 'audit-row' },
          h('td', { class: 'when' }, toggle('audit-open', 'Show the whole entry', time(e.at))),
          h('td', { class: 'actor minor' }, h('a', { href: `#/audit${query({ actor: e.actor })}`, title: `Only ${e.actor}'s writes` }, e.actor)),
          h('td', { class: 'action' }, breakable(e.action)),
          h('td', { class: 'subject' }, subject(e.subject)),
          h('td', { class: 'id minor' }, e.request_id || h('span', { class: 'muted' }, '—')),
          h('td', { class: 'change minor' }, toggle('audit-change', 'Show what changed in full', `${brief(e.before)} → ${brief(e.after)}`))),
        detail);
    })));
}

export async function render(main, { params }) {
  const f = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || '']));
  const cursor = params.get('cursor') || '';
  // (`limit` in the address only, as on the events page: 1-500.)
  const limit = Math.min(Math.max(Number.parseInt(params.get('limit'), 10) || PAGE, 1), 500);
  const keep = limit === PAGE ? '' : limit;
  const trail = (params.get('trail') || '').split(',').filter(Boolean);
  const actions = await schemaEnum('Action', ACTIONS);

  const actor = field('actor', 'Actor (key name)', h('input', { name: 'actor', id: 'audit-actor', value: f.actor, maxlength: 64,
    autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. admin-1' }));
  const action = field('action', 'Action', h('select', { name: 'action', id: 'audit-action' },
    h('option', { value: '' }, 'any'),
    // An action in the URL that the list does not know stays selectable, so the server can say why.
    [...actions, ...(f.action && !actions.includes(f.action) ? [f.action] : [])]
      .map((a) => h('option', { value: a, selected: a === f.action }, a))));
  const since = field('since', 'At or after', h('input', { name: 'since', id: 'audit-since', type: 'datetime-local', value: isoToLocal(f.since) }));
  const form = h('form', { class: 'card filters', id: 'audit-filters' },
    actor.label, action.label, since.label,
    h('button', { type: 'submit', class: 'primary', id: 'audit-apply' }, 'Filter'),
    h('a', { href: '#/audit' }, 'Clear'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/audit${query({ actor: actor.control.value.trim(), action: action.control.value, since: localToIso(since.control.value), limit: keep })}`;
  });

  const heading = h('h1', {}, 'Audit');
  const intro = h('p', { class: 'muted' }, 'Every write made through the API, newest first, recorded in the transaction of the write.');
  let page;
  try {
    page = await get(`/admin/audit${query({ ...f, limit, cursor })}`);
  } catch (e) {
    const errors = e.status === 422 && Array.isArray(e.problem?.errors) ? e.problem.errors : null;
    if (!errors) throw e;
    const byName = { actor, action, since };
    const rest = showErrors(byName, errors);
    fill(main, heading, intro, form, rest.length
      ? message('error', `Refused: ${rest.map((x) => `${x.field || 'query'}: ${x.message}`).join('; ')}`, 'audit-error')
      : message('error', 'Nothing listed: the server refused a filter (see its field).', 'audit-error'));
    // Where to correct it: the first refused field.
    (errors.map((x) => byName[x.field]).find(Boolean) || actor).control.focus();
    return null;
  }

  const here = (extra) => `#/audit${query({ ...f, limit: keep, ...extra })}`;
  const go = (hash) => () => { location.hash = hash; };
  const newer = trail.length || cursor
    ? here({ cursor: trail[trail.length - 1] === '-' ? '' : trail[trail.length - 1] || '', trail: trail.slice(0, -1).join(',') })
    : null;
  const columns = [{ label: 'time' }, { label: 'actor', minor: true }, { label: 'action' }, { label: 'subject' },
    { label: 'request id', minor: true }, { label: 'before → after', minor: true }];
  fill(main, heading, intro, form,
    entries(page.items, columns),
    h('div', { class: 'pager' },
      newer ? h('button', { type: 'button', id: 'audit-newer', on: { click: go(newer) } }, '← Newer') : null,
      page.next_cursor ? h('button', { type: 'button', id: 'audit-older', on: { click: go(here({ cursor: page.next_cursor, trail: [...trail, cursor || '-'].join(',') })) } }, 'Older →') : null,
      h('span', { class: 'muted', id: 'audit-shown' }, `${page.items.length} shown`)));
  return null;
}
