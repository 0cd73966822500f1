// Webhooks: the endpoints komisi sends its events to. Add one (its signing
// secret is shown once, in the answer that made it), disable or enable it,
// rotate its secret (the new one shown once), change it, delete it; per
// endpoint its recent messages, each with every delivery attempt, a resend
// per message, and the recovery of the failed messages of a time window.
// Every change asks first and says what it touches.
import { api, get, parameterEnum, post, query, seg } from './api.js';
import { action, badge, confirmAction, fields, fill, h, isoToLocal, localToIso, message, num, table, time } from './dom.js';

/** The event types komisi sends, when /openapi.json does not list them. */
const TYPES = ['commission.created', 'commission.reversed', 'commission.approved', 'payout.created', 'payout.paid',
  'reward.earned', 'reward.reversed', 'redemption.held', 'redemption.captured', 'redemption.released',
  'redemption.expired', 'points.expired', 'event.dead'];
const STATUSES = ['pending', 'delivered', 'failed'];
const PAGE = 25;
/** The longest response body shown in an attempt's row. */
const EXCERPT = 300;
const DAY_MS = 24 * 3600 * 1000;

/** A message for the list after a deletion on an endpoint's page, shown once. */
let flash = null;

export async function render(main, { id, params }) {
  return id ? endpoint(main, id, params) : list(main);
}

const catalog = () => parameterEnum('/admin/webhook-messages', 'type', TYPES);
const plural = (n, one, many = `${one}s`) => `${num(n)} ${n === 1 ? one : many}`;
const typesText = (types) => (types.length ? types.join(', ') : '—');

function status(e) {
  return h('span', { class: 'endpoint-status' }, badge(e.disabled ? 'disabled' : 'enabled'),
    e.disabled && e.disabled_reason ? h('span', { class: 'muted reason' }, ` ${e.disabled_reason}`) : null);
}

const failing = (iso) => (iso ? h('span', { class: 'neg' }, time(iso)) : h('span', { class: 'muted' }, '—'));

/**
 * The event types as checkboxes: every type (`*`), a whole family
 * (`commission.*`) or single types, and other patterns as free text.
 * `value()` is the `event_types` to send.
 */
function typePicker(types, selected, prefix) {
  const chosen = new Set(selected);
  const idOf = (v) => `${prefix}-${v.replace('*', 'all').replace(/[^a-z0-9_-]/gi, '-')}`;
  const box = (v) => h('input', { type: 'checkbox', value: v, id: idOf(v), checked: chosen.has(v) });
  const every = box('*');
  const families = [...new Set(types.map((t) => t.split('.')[0]))].map((f) => ({
    all: box(`${f}.*`),
    one: types.filter((t) => t.split('.')[0] === f).map(box),
  }));
  const known = new Set(['*', ...types, ...families.map((f) => f.all.value)]);
  const other = h('input', { id: `${prefix}-other`, name: 'other_types', maxlength: 500, autocomplete: 'off', spellcheck: 'false',
    value: selected.filter((v) => !known.has(v)).join(', '), placeholder: 'e.g. reward.*' });
  // A box under a chosen `*` or family adds nothing: it is shown checked and inactive.
  const sync = () => {
    for (const f of families) {
      f.all.disabled = every.checked;
      for (const b of f.one) b.disabled = every.checked || f.all.checked;
    }
    other.disabled = every.checked;
  };
  const el = h('fieldset', { class: 'types', id: prefix, on: { change: sync } },
    h('legend', {}, 'Event types'),
    h('label', { class: 'check every' }, every, 'every type (*)'),
    h('div', { class: 'families' }, families.map((f) => h('div', { class: 'family' },
      h('label', { class: 'check' }, f.all, h('strong', {}, f.all.value)),
      f.one.map((b) => h('label', { class: 'check' }, b, b.value))))),
    h('label', { class: 'wide' }, 'Other types or patterns (comma-separated)', other));
  sync();
  return {
    el,
    value() {
      if (every.checked) return ['*'];
      const out = [];
      for (const f of families) {
        if (f.all.checked) out.push(f.all.value);
        else out.push(...f.one.filter((b) => b.checked).map((b) => b.value));
      }
      for (const v of other.value.split(/[\s,]+/)) if (v && !out.includes(v)) out.push(v);
      return out;
    },
  };
}

/** A signing secret, shown this once. */
function secretCard(secret, what) {
  const code = h('code', { class: 'secret', id: 'webhook-secret' }, secret);
  const copy = h('button', { type: 'button', id: 'copy-secret' }, 'Copy');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(secret);
      fill(copy, 'Copied');
    } catch {
      getSelection().selectAllChildren(code);
      fill(copy, 'Selected: copy it with the keyboard');
    }
  });
  return h('section', { class: 'card secret-card', id: 'secret-card' },
    h('p', {}, what),
    h('div', { class: 'secret-row' }, code, copy),
    h('p', { class: 'muted', id: 'secret-note' },
      'Copy it now: it will not be shown again. The receiver checks each delivery\'s webhook-signature header with it.'));
}

// ---------------------------------------------------------------- the list

async function list(main) {
  const types = await catalog();
  const url = h('input', { id: 'webhook-url', name: 'url', type: 'url', required: true, maxlength: 2048,
    autocomplete: 'off', spellcheck: 'false', placeholder: 'https://shop.example/hooks/komisi' });
  const description = h('input', { id: 'webhook-description', name: 'description', maxlength: 500, autocomplete: 'off' });
  let picker = typePicker(types, ['*'], 'new-types');
  const out = h('div', { id: 'webhooks-message', 'aria-live': 'polite' });
  const secretOut = h('div', { id: 'secret-out', 'aria-live': 'polite' });
  const endpoints = h('div', { id: 'endpoints' });
  const create = h('button', { type: 'submit', class: 'primary', id: 'create-webhook' }, 'Add endpoint');
  const pickerSlot = h('div', {}, picker.el);
  const form = h('form', { class: 'card', id: 'webhook-form' },
    h('h2', {}, 'Add an endpoint'),
    h('div', { class: 'row' },
      h('label', { class: 'wide' }, 'URL (https; komisi POSTs each event there)', url),
      h('label', { class: 'wide' }, 'Description (optional)', description)),
    pickerSlot,
    h('div', { class: 'actions' }, create));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const eventTypes = picker.value();
    if (!eventTypes.length) {
      fill(out, message('error', 'Choose at least one event type (or every type).', 'webhook-result'));
      return;
    }
    create.disabled = true;
    try {
      const r = await post('/admin/webhooks', {
        url: url.value.trim(), event_types: eventTypes, description: description.value.trim() || undefined,
      });
      url.value = '';
      description.value = '';
      picker = typePicker(types, ['*'], 'new-types');
      fill(pickerSlot, picker.el);
      await show();
      fill(out);
      fill(secretOut, secretCard(r.secret, h('span', { id: 'webhook-result' }, 'Endpoint ',
        h('a', { href: `#/webhooks/${seg(r.id)}`, id: 'new-webhook' }, r.url), ` added (${typesText(r.event_types)}). Its signing secret:`)));
    } catch (err) {
      fill(out, message('error', err.message, 'webhook-result'));
    } finally {
      create.disabled = false;
    }
  });

  async function show() {
    const page = await get('/admin/webhooks');
    fill(endpoints, table(
      [{ label: 'endpoint' }, { label: 'event types' }, { label: 'description' }, { label: 'status' }, { label: 'failing since' }, { label: 'created' }],
      page.items.map((e) => [
        h('td', { class: 'url' }, h('a', { href: `#/webhooks/${seg(e.id)}` }, e.url)),
        h('td', { class: 'types' }, typesText(e.event_types)),
        h('td', { class: 'name' }, e.description || ''),
        status(e),
        failing(e.failing_since),
        time(e.created_at),
      ]),
      { id: 'webhooks-table', empty: 'No endpoint yet: komisi sends no webhook.' }));
  }

  const note = flash;
  flash = null;
  await show();
  fill(main,
    h('h1', {}, 'Webhooks'),
    note ? message('ok', note, 'webhook-deleted') : null,
    secretOut,
    h('p', { class: 'muted' }, 'komisi POSTs each event an endpoint subscribes to, signed as Standard Webhooks says; a delivery not answered 2xx is retried for about a day before its message fails.'),
    h('div', { class: 'actions' }, action('Refresh', show, { id: 'refresh-webhooks', out })),
    h('h2', {}, 'Endpoints'),
    endpoints,
    form,
    out);
}

// ---------------------------------------------------------------- one endpoint

function subject(m) {
  const routes = { order: 'orders', affiliate: 'affiliates', payout: 'payouts', event: 'events' };
  const route = routes[m.subject_kind];
  const label = `${m.subject_kind} ${m.subject_id}`;
  return route && m.subject_id !== null && m.subject_id !== undefined
    ? h('a', { href: `#/${route}/${seg(String(m.subject_id))}` }, label) : label;
}

const excerpt = (s) => (s && s.length > EXCERPT ? `${s.slice(0, EXCERPT)}…` : s);

function attemptsTable(m) {
  return table([{ label: 'at' }, { label: 'status', num: true }, { label: 'duration', num: true, minor: true }, { label: 'response', minor: true }, { label: 'error' }],
    m.attempt_log.map((a) => [
      time(a.at),
      h('td', { class: a.status_code >= 200 && a.status_code < 300 ? 'num' : 'num neg' }, a.status_code ?? '—'),
      h('td', { class: 'num' }, `${num(a.duration_ms)} ms`),
      h('td', { class: 'resp' }, a.response ? excerpt(a.response) : h('span', { class: 'muted' }, '—')),
      h('td', { class: 'err' }, a.error || ''),
    ]), { empty: 'No attempt yet.' });
}

async function endpoint(main, id, params) {
  let e;
  try {
    e = await get(`/admin/webhooks/${seg(id)}`);
  } catch (err) {
    fill(main, h('p', {}, h('a', { href: '#/webhooks' }, '← Webhooks')), h('h1', {}, 'Webhooks'),
      message('error', err.status === 404 ? `No webhook endpoint ${id}.` : err.message, 'webhook-error'));
    return null;
  }
  const types = await catalog();
  let alive = true;
  let timer = null;
  const f = { status: params.get('status') || '', type: params.get('type') || '' };
  const cursor = params.get('cursor') || '';
  const trail = (params.get('trail') || '').split(',').filter(Boolean);
  const here = (extra) => `#/webhooks/${seg(id)}${query({ ...f, ...extra })}`;

  const heading = h('h1', {}, 'Endpoint ', h('span', { id: 'webhook-heading' }, e.url));
  const summary = h('section', { class: 'card', id: 'webhook-summary' });
  const buttons = h('div', { class: 'actions' });
  const out = h('div', { id: 'webhook-message', 'aria-live': 'polite' });
  const secretOut = h('div', { id: 'secret-out' });
  const messages = h('div', { id: 'messages' });
  const pager = h('div', { class: 'pager' });
  const messagesOut = h('div', { id: 'messages-message', 'aria-live': 'polite' });
  const expanded = new Set();
  let buttonsFor = null;

  /** The summary; the buttons only when enabled/disabled changed (a running one keeps its state). */
  function showEndpoint() {
    fill(heading, 'Endpoint ', h('span', { id: 'webhook-heading' }, e.url));
    fill(summary, fields([
      ['id', h('span', { class: 'id' }, e.id)],
      ['url', h('span', { id: 'webhook-summary-url' }, e.url)],
      ['event types', h('span', { id: 'webhook-types' }, typesText(e.event_types))],
      ['description', e.description || '—'],
      ['status', h('span', { id: 'webhook-status' }, status(e))],
      ['failing since', failing(e.failing_since)],
      ['previous secret', e.previous_secret_expires_at ? h('span', {}, 'still signs until ', time(e.previous_secret_expires_at)) : '—'],
      ['created', time(e.created_at)],
      ['updated', time(e.updated_at)],
    ]));
    if (buttonsFor === e.disabled) return;
    buttonsFor = e.disabled;
    const toggle = e.disabled
      ? action('Enable', async () => {
        e = await api('PATCH', `/admin/webhooks/${seg(e.id)}`, { body: { disabled: false } });
        showEndpoint();
        fill(out, message('ok', `Enabled: komisi sends to ${e.url} again.`, 'toggle-result'));
      }, { id: 'enable-webhook', cls: 'primary', out })
      : action('Disable…', async () => {
        if (!(await confirmAction(`Disable endpoint ${e.url}? Until it is enabled again komisi sends it nothing (its pending messages wait) and writes no message for it.`, 'Disable'))) return;
        e = await api('PATCH', `/admin/webhooks/${seg(e.id)}`, { body: { disabled: true } });
        showEndpoint();
        fill(out, message('ok', `Disabled: komisi sends nothing to ${e.url}.`, 'toggle-result'));
      }, { id: 'disable-webhook', out });
    const rotate = action('Rotate secret…', async () => {
      if (!(await confirmAction(`Rotate the signing secret of ${e.url}? A new secret signs every delivery from now on; the current one signs them too for 24 hours, so the receiver can switch.`, 'Rotate'))) return;
      const r = await post(`/admin/webhooks/${seg(e.id)}/rotate-secret`);
      const { secret, ...rest } = r;
      e = rest;
      showEndpoint();
      fill(out);
      fill(secretOut, secretCard(secret, h('span', { id: 'rotate-result' }, `The new signing secret of ${e.url}:`)));
    }, { id: 'rotate-webhook', out });
    const remove = action('Delete…', async () => {
      if (!(await confirmAction(`Delete endpoint ${e.url}? Its messages and their attempts are deleted with it and komisi sends it nothing more; this cannot be undone.`, 'Delete'))) return;
      await api('DELETE', `/admin/webhooks/${seg(e.id)}`);
      flash = `Endpoint ${e.url} is deleted.`;
      location.hash = '#/webhooks';
    }, { id: 'delete-webhook', cls: 'danger', out });
    fill(buttons, toggle, rotate, remove);
  }

  // Messages, newest first, and the endpoint's health: followed every
  // second while a message is pending.
  async function loadMessages() {
    const [page, now] = await Promise.all([
      get(`/admin/webhook-messages${query({ endpoint: id, ...f, limit: PAGE, cursor })}`),
      get(`/admin/webhooks/${seg(id)}`)]);
    if (!alive) return;
    e = now;
    showEndpoint();
    fill(messages, messageTable(page.items));
    fill(pager,
      trail.length || cursor ? h('a', { href: here({ cursor: trail[trail.length - 1] === '-' ? '' : trail[trail.length - 1] || '', trail: trail.slice(0, -1).join(',') }), id: 'messages-prev' }, '← Newer') : null,
      page.next_cursor ? h('a', { href: here({ cursor: page.next_cursor, trail: [...trail, cursor || '-'].join(',') }), id: 'messages-next' }, 'Older →') : null,
      h('span', { class: 'muted' }, `${page.items.length} shown`));
    clearTimeout(timer);
    if (page.items.some((m) => m.status === 'pending')) {
      timer = setTimeout(() => loadMessages().catch((err) => fill(messagesOut, message('error', err.message))), 1000);
    }
  }

  function messageTable(items) {
    if (!items.length) return h('p', { class: 'muted', 'data-empty': 'messages-table' }, 'No message matches.');
    const columns = ['message', 'type', 'subject', 'status', 'attempts', 'created', 'delivered / next attempt', ''];
    return h('div', { class: 'table-wrap' }, h('table', { id: 'messages-table' },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c)))),
      items.map((m) => {
        const detailId = `attempts-${m.id}`;
        const open = expanded.has(m.id);
        const detail = h('tr', { class: 'attempts', id: detailId, hidden: !open },
          h('td', { colspan: columns.length },
            h('h3', {}, `Attempts of ${m.id}`),
            attemptsTable(m),
            h('details', { class: 'payload' }, h('summary', {}, `Payload (sequence ${m.sequence})`),
              h('pre', { class: 'json', tabindex: 0 }, JSON.stringify(m.payload, null, 2)))));
        const toggle = h('button', { type: 'button', class: 'link attempts-toggle', 'aria-expanded': String(open), 'aria-controls': detailId },
          plural(m.attempts, 'attempt'));
        toggle.addEventListener('click', () => {
          const now = !expanded.has(m.id);
          if (now) expanded.add(m.id);
          else expanded.delete(m.id);
          detail.hidden = !now;
          toggle.setAttribute('aria-expanded', String(now));
        });
        const resend = action('Resend…', async () => {
          const again = m.status === 'delivered' ? ' It was delivered already: the receiver gets it again, with the same webhook-id.' : '';
          if (!(await confirmAction(`Resend message ${m.id} (${m.type}, now ${m.status}) to ${e.url}?${again}`, 'Resend'))) return;
          const r = await post(`/admin/webhook-messages/${seg(m.id)}/resend`);
          fill(messagesOut, message('info', `Message ${r.id} is queued again (${r.status}).`, 'resend-result'));
          await loadMessages();
        }, { id: `resend-${m.id}`, cls: 'resend', out: messagesOut });
        const when = m.status === 'delivered' ? time(m.delivered_at)
          : m.status === 'pending' ? h('span', {}, 'next ', time(m.next_attempt_at)) : h('span', { class: 'muted' }, '—');
        return h('tbody', { 'data-message': m.id },
          h('tr', { class: 'message-row' },
            h('td', { class: 'id' }, m.id),
            h('td', {}, m.type),
            h('td', { class: 'subject' }, subject(m)),
            h('td', { class: 'status' }, badge(m.status)),
            h('td', {}, toggle),
            h('td', {}, time(m.created_at)),
            h('td', {}, when),
            h('td', {}, resend)),
          detail);
      })));
  }

  const filters = h('form', { class: 'card filters', id: 'message-filters' },
    h('label', {}, 'Status', h('select', { name: 'status', id: 'message-status' },
      h('option', { value: '' }, 'any'), STATUSES.map((s) => h('option', { value: s, selected: s === f.status }, s)))),
    h('label', {}, 'Type', h('select', { name: 'type', id: 'message-type' },
      h('option', { value: '' }, 'any'), types.map((t) => h('option', { value: t, selected: t === f.type }, t)))),
    h('button', { type: 'submit', class: 'primary', id: 'apply-message-filters' }, 'Filter'),
    h('a', { href: `#/webhooks/${seg(id)}` }, 'Clear'));
  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const d = new FormData(filters);
    location.hash = `#/webhooks/${seg(id)}${query({ status: d.get('status'), type: d.get('type') })}`;
  });

  // Recovery: the failed messages created in a window, counted first.
  const since = h('input', { id: 'recover-since', name: 'since', type: 'datetime-local', required: true,
    value: isoToLocal(new Date(Date.now() - DAY_MS).toISOString()) });
  const until = h('input', { id: 'recover-until', name: 'until', type: 'datetime-local' });
  const recoverOut = h('div', { id: 'recover-message', 'aria-live': 'polite' });
  const recoverButton = h('button', { type: 'submit', class: 'danger', id: 'recover-webhook' }, 'Recover failed messages…');
  const recover = h('form', { class: 'card filters', id: 'recover-form' },
    h('label', {}, 'Created from', since), h('label', {}, 'Created before (optional)', until), recoverButton);
  recover.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const range = { since: localToIso(since.value), until: localToIso(until.value) || undefined };
    recoverButton.disabled = true;
    try {
      const failed = await get(`/admin/webhook-messages${query({ endpoint: id, status: 'failed', ...range, limit: 100 })}`);
      const n = failed.items.length;
      const span = `created from ${range.since}${range.until ? ` before ${range.until}` : ''}`;
      if (!n) {
        fill(recoverOut, message('info', `No failed message of this endpoint was ${span}: nothing to recover.`, 'recover-result'));
        return;
      }
      const count = failed.next_cursor ? `at least ${num(n)} failed messages` : plural(n, 'failed message');
      if (!(await confirmAction(`Send ${count} (${span}) to ${e.url} again? Each is queued with a fresh retry schedule.`, 'Recover'))) return;
      const r = await post(`/admin/webhooks/${seg(id)}/recover`, range);
      fill(recoverOut, message('ok', `Queued ${plural(r.requeued, 'failed message')} again.`, 'recover-result'));
      await loadMessages();
    } catch (err) {
      fill(recoverOut, message('error', err.message, 'recover-result'));
    } finally {
      recoverButton.disabled = false;
    }
  });

  // Changes: the URL, the description, the event types.
  const editUrl = h('input', { id: 'edit-url', name: 'url', type: 'url', required: true, maxlength: 2048, value: e.url, autocomplete: 'off', spellcheck: 'false' });
  const editDescription = h('input', { id: 'edit-description', name: 'description', maxlength: 500, value: e.description || '', autocomplete: 'off' });
  const editPicker = typePicker(types, e.event_types, 'edit-types');
  const editOut = h('div', { id: 'edit-message', 'aria-live': 'polite' });
  const save = h('button', { type: 'submit', class: 'primary', id: 'save-webhook' }, 'Save changes');
  const edit = h('form', { class: 'card', id: 'edit-form' },
    h('div', { class: 'row' }, h('label', { class: 'wide' }, 'URL', editUrl), h('label', { class: 'wide' }, 'Description', editDescription)),
    editPicker.el,
    h('div', { class: 'actions' }, save), editOut);
  edit.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const eventTypes = editPicker.value();
    if (!eventTypes.length) {
      fill(editOut, message('error', 'Choose at least one event type (or every type).', 'edit-result'));
      return;
    }
    save.disabled = true;
    try {
      e = await api('PATCH', `/admin/webhooks/${seg(id)}`, {
        // An empty description removes it.
        body: { url: editUrl.value.trim(), description: editDescription.value.trim(), event_types: eventTypes },
      });
      showEndpoint();
      fill(editOut, message('ok', 'Saved.', 'edit-result'));
    } catch (err) {
      fill(editOut, message('error', err.message, 'edit-result'));
    } finally {
      save.disabled = false;
    }
  });

  showEndpoint();
  await loadMessages();
  fill(main,
    h('p', {}, h('a', { href: '#/webhooks' }, '← Webhooks')),
    heading,
    summary,
    buttons, out, secretOut,
    h('h2', {}, 'Messages'),
    filters,
    h('div', { class: 'actions' }, action('Refresh', loadMessages, { id: 'refresh-messages', out: messagesOut })),
    messagesOut,
    messages,
    pager,
    h('h2', {}, 'Recover failed messages'),
    h('p', { class: 'muted' }, 'Sends this endpoint\'s failed messages of a time window again (after the receiver was down, say).'),
    recover, recoverOut,
    h('h2', {}, 'Change the endpoint'),
    edit);
  return () => { alive = false; clearTimeout(timer); };
}
