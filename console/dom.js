// Building the page: every value from the API goes in as text (a Text node
// or textContent), never as markup. `h` is the only way elements are made.
import { api } from './api.js';

/**
 * h('a', {href: '#/x', class: 'c', on: {click}}, 'text', child, ...)
 * Strings and numbers become Text nodes; null/undefined/false are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') {
      for (const [ev, f] of Object.entries(v)) el.addEventListener(ev, f);
    } else if (k === 'href') {
      // Only the console's own routes: a value from the API can never become a javascript: URL.
      if (!String(v).startsWith('#/')) throw new Error(`refusing link ${v}`);
      el.setAttribute('href', v);
    } else if (k.startsWith('on')) {
      throw new Error(`refusing attribute ${k}`);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let currency = null;
export const setCurrency = (c) => { currency = c; };

/** A decimal string in the program currency, exactly (Intl formats decimal strings without floats). */
export function money(amount, cur = currency) {
  if (amount === null || amount === undefined) return '';
  const s = String(amount);
  try {
    const nf = new Intl.NumberFormat(undefined, cur
      ? { style: 'currency', currency: cur, minimumFractionDigits: 0, maximumFractionDigits: 4 }
      : { maximumFractionDigits: 4 });
    return nf.format(s);
  } catch {
    return cur ? `${s} ${cur}` : s;
  }
}

/** A money cell: right-aligned, red when negative. */
export function moneyCell(amount, cur) {
  return h('td', { class: String(amount).startsWith('-') ? 'num neg' : 'num' }, money(amount, cur));
}

export function num(n) {
  return n === null || n === undefined ? '' : new Intl.NumberFormat().format(n);
}

/** A time in the browser's zone, UTC on hover. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h('span', {}, iso);
  const local = d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
  const utc = `${d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '').replace('Z', '')} UTC`;
  return h('time', { datetime: iso, title: utc }, local);
}

export function badge(status) {
  return h('span', { class: `badge ${String(status).replace(/[^a-z_]/g, '')}` }, status);
}

/**
 * A table: columns [{label, num?, cls?, minor?}], rows of cells (a td
 * element, or anything h accepts). A `minor` column is left out on a phone's
 * width (style.css), where the priority columns stay in view and the row's
 * link leads to everything.
 */
export function table(columns, rows, { empty = 'Nothing to show.', id } = {}) {
  if (!rows.length) return h('p', { class: 'muted', 'data-empty': id || true }, empty);
  const classes = (c, ...more) => [...more, c.minor ? 'minor' : null].filter(Boolean).join(' ') || null;
  return h('div', { class: 'table-wrap' },
    h('table', { id },
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: classes(c, c.num ? 'num' : null) }, c.label)))),
      h('tbody', {}, rows.map((cells) => h('tr', {},
        cells.map((c, i) => {
          const col = columns[i];
          if (c instanceof HTMLTableCellElement) {
            if (col.minor) c.classList.add('minor');
            return c;
          }
          return h('td', { class: classes(col, col.cls || (col.num ? 'num' : null)) }, c);
        }))))));
}

/**
 * A keyset-paged table in `el`: `load(cursor)` gives {items, next_cursor};
 * Previous and Next buttons (`#<tableId>-prev`, `-next`), with the cursors
 * seen so far to go back. Returns a function that shows the first page again,
 * read anew.
 */
export function pager(el, load, columns, row, tableId, empty) {
  const trail = [];
  let cursor = '';
  async function show() {
    const page = await load(cursor);
    fill(el,
      table(columns, page.items.map(row), { id: tableId, empty }),
      h('div', { class: 'pager' },
        trail.length ? h('button', { type: 'button', id: `${tableId}-prev`, on: { click: () => { cursor = trail.pop(); show(); } } }, '← Previous') : null,
        page.next_cursor ? h('button', { type: 'button', id: `${tableId}-next`, on: { click: () => { trail.push(cursor); cursor = page.next_cursor; show(); } } }, 'Next →') : null));
  }
  show().catch((e) => fill(el, message('error', e.message)));
  return () => { trail.length = 0; cursor = ''; return show(); };
}

export function fields(pairs) {
  return h('dl', { class: 'fields' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

export function message(kind, text, id) {
  return h('div', { class: `message ${kind}`, role: kind === 'error' ? 'alert' : 'status', id }, text);
}

/** Asks the operator; resolves true on Confirm. The text says what will be touched. */
export function confirmAction(text, okLabel = 'Confirm') {
  const dialog = document.getElementById('confirm');
  fill(document.getElementById('confirm-text'), text);
  fill(document.getElementById('confirm-ok'), okLabel);
  dialog.returnValue = '';
  dialog.showModal();
  document.getElementById('confirm-cancel').focus();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
  });
}

/** A button that runs `f`, disabled while it runs; errors are shown in `out`. */
export function action(label, f, { cls, id, out } = {}) {
  const b = h('button', { type: 'button', class: cls, id }, label);
  b.addEventListener('click', async () => {
    b.disabled = true;
    try {
      await f();
    } catch (e) {
      if (out) fill(out, message('error', e.message));
      else throw e;
    } finally {
      b.disabled = false;
    }
  });
  return b;
}

/** `datetime-local` value (browser zone) → RFC 3339 UTC, and back. */
export function localToIso(v) { return v ? new Date(v).toISOString() : ''; }
export function isoToLocal(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** An SVG element: like `h`, made with createElementNS; strings become Text nodes. */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith('on')) throw new Error(`refusing attribute ${k}`);
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/**
 * A button that fetches a CSV with the session's key (a plain link could not
 * send it) and saves it as `file`; `#<id>-result` says how many rows.
 */
export function csvButton(path, file, { id, label, noun }) {
  const out = h('span', { id: `${id}-result`, class: 'muted', 'aria-live': 'polite' });
  const button = h('button', { type: 'button', id }, label);
  button.addEventListener('click', async () => {
    try {
      const csv = await api('GET', path, { headers: { Accept: 'text/csv' } });
      const url = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
      // (`h` refuses links that are not http(s): this one is our own blob.)
      const a = document.createElement('a');
      a.href = url;
      a.download = file;
      a.click();
      URL.revokeObjectURL(url);
      fill(out, ` ${num(csv.trim().split('\n').length - 1)} ${noun} saved.`);
    } catch (err) {
      fill(out, message('error', err.message));
    }
  });
  return h('p', { class: 'actions' }, button, out);
}
