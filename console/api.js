// The API client: the admin key lives in sessionStorage only (this tab, until
// it closes or the operator signs out) and travels only in the Authorization
// header, never in a URL.
const KEY = 'komisi.adminKey';

export const session = {
  key: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An answer other than 2xx: the status and the problem+json body. */
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(describe(status, problem, retryAfter));
    this.status = status;
    this.problem = problem;
  }
}

function describe(status, problem, retryAfter) {
  if (status === 401) return 'The admin key was refused (401): check it and sign in again.';
  if (status === 403) return 'This key is not an admin key (403): the console needs an admin key.';
  if (status === 429) return `Too many requests or failed sign-ins from here (429): try again in ${retryAfter || 'a few'} s.`;
  const title = problem && typeof problem === 'object' ? (problem.detail || problem.title) : null;
  let text = `${status}${title ? ': ' + title : ''}`;
  if (problem && Array.isArray(problem.errors)) {
    text += ' — ' + problem.errors.map((e) => `${e.field || 'body'}: ${e.message}`).join('; ');
  }
  return text;
}

/** Called when the key stops working (401), so the app can ask for it again. */
let onUnauthorized = () => {};
export function whenUnauthorized(f) { onUnauthorized = f; }

/** One API call; resolves to the parsed JSON body. `key` overrides the session's (sign-in). */
export async function api(method, path, { body, headers = {}, key } = {}) {
  const h = { Accept: 'application/json', Authorization: `Bearer ${key ?? session.key() ?? ''}`, ...headers };
  const init = { method, headers: h, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    h['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { title: `komisi did not answer (${e.message})` });
  }
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!r.ok) {
    const err = new ApiError(r.status, data, r.headers.get('Retry-After'));
    if (r.status === 401 && key === undefined) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body, headers) => api('POST', path, { body, headers });

/** `/metrics` (no key): the Prometheus text, as {name: [{labels, value}]}. */
export async function metrics() {
  const r = await fetch('/metrics', { cache: 'no-store', credentials: 'omit' });
  if (!r.ok) throw new ApiError(r.status, { title: 'metrics unavailable' });
  return parsePrometheus(await r.text());
}

export function parsePrometheus(text) {
  const out = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    (out[m[1]] ||= []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

/** The query string of the set entries of an object. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A path segment. */
export const seg = (s) => encodeURIComponent(s);

/** /openapi.json, read once. */
let doc = null;
const openapi = () => (doc ||= fetch('/openapi.json', { cache: 'no-store', credentials: 'omit' }).then((r) => (r.ok ? r.json() : null)));

/** The values a query parameter of an operation takes, from /openapi.json
 * (so the console lists event types komisi adds later), or `fallback`. */
export async function parameterEnum(path, name, fallback) {
  try {
    const d = await openapi();
    const p = d?.paths?.[path]?.get?.parameters?.find((x) => x.name === name);
    const values = p?.schema?.enum?.filter((v) => typeof v === 'string');
    return values?.length ? values : fallback;
  } catch {
    return fallback;
  }
}

/** The values of a named schema of /openapi.json (`Action`), or `fallback`. */
export async function schemaEnum(name, fallback) {
  try {
    const d = await openapi();
    const values = d?.components?.schemas?.[name]?.enum?.filter((v) => typeof v === 'string');
    return values?.length ? values : fallback;
  } catch {
    return fallback;
  }
}
