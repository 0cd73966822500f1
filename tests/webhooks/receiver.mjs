// Test receiver of komisi's outbound webhooks, driven by tests/api/webhook_receiver.rs.
// Every delivery is checked with the official Standard Webhooks library (npm
// `standardwebhooks`), not with code of ours.
//
//   RECEIVER_SECRETS=whsec_<base64>[,whsec_<base64>...] node tests/webhooks/receiver.mjs
//
// Listens on 127.0.0.1 on an ephemeral port and prints exactly one line,
// `listening <port>`, to stdout when ready (nothing else goes to stdout).
// Exits when its stdin closes (keep it piped) or on SIGTERM.
//
//   POST <any path not under /control/>   a delivery: verified against each secret,
//                                         logged, answered by the path's script
//                                         (default 200 `ok`)
//   POST /control/script   {path, responses: [{status, retry_after?, delay_ms?, body?}]}
//                          the next deliveries to `path` (exactly as in the request
//                          line, query included) get these answers in order, then 200
//   GET  /control/log      the log, in arrival order
//   POST /control/clear    empties the log
//   POST /control/verify   {body, headers, secret} -> {ok, error}: the library's verify()
import http from "node:http";
import { Webhook } from "standardwebhooks";

function fail(message) {
  process.stderr.write(`receiver: ${message}\n`);
  process.exit(2);
}

const secrets = (process.env.RECEIVER_SECRETS ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "");
const hooks = secrets.map((secret, i) => {
  try {
    return new Webhook(secret);
  } catch (e) {
    fail(`RECEIVER_SECRETS[${i}] is not a usable secret (whsec_<base64>): ${e.message}`);
  }
});

/** Every delivery, in arrival order. */
let log = [];
/** path -> the answers still to give, in order. */
const scripts = new Map();

/**
 * The library's verify() over the exact bytes received. jsonParse: false, so
 * only the signature (and the timestamp tolerance) decide: a correctly signed
 * body that is not JSON is still verified.
 */
function verifyWith(hook, body, headers) {
  try {
    hook.verify(body, headers, { jsonParse: false });
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function header(headers, name) {
  const v = headers[name];
  return v === undefined ? null : String(v);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function send(res, status, body, type = "text/plain; charset=utf-8", extra = {}) {
  if (res.destroyed) return; // the client gave up (a timeout test)
  res.writeHead(status, { "content-type": type, ...extra });
  res.end(body);
}

function sendJson(res, status, value) {
  send(res, status, JSON.stringify(value), "application/json");
}

function parseJson(raw) {
  try {
    return [JSON.parse(raw.toString("utf8")), null];
  } catch (e) {
    return [null, e.message];
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function delivery(req, res, raw) {
  const path = req.url;
  const verifiedBy = [];
  let verifyError = null;
  hooks.forEach((hook, i) => {
    const error = verifyWith(hook, raw, req.headers);
    if (error === null) verifiedBy.push(i);
    else if (verifyError === null) verifyError = error;
  });
  const queue = scripts.get(path);
  const reply = queue && queue.length > 0 ? queue.shift() : { status: 200 };
  const status = reply.status ?? 200;
  log.push({
    path,
    webhook_id: header(req.headers, "webhook-id"),
    webhook_timestamp: header(req.headers, "webhook-timestamp"),
    webhook_signature: header(req.headers, "webhook-signature"),
    body: raw.toString("utf8"),
    verified_by: verifiedBy,
    verify_error: verifyError,
    status,
    at: Date.now(),
  });
  if (reply.delay_ms) await sleep(reply.delay_ms);
  // A fresh connection per delivery: no pooled connection of the sender's can
  // meet this server closing it (the "connection closed before message
  // completed" race), so every attempt the sender makes is one the log shows.
  const extra = { connection: "close" };
  if (reply.retry_after != null) extra["retry-after"] = String(reply.retry_after);
  send(res, status, reply.body ?? "ok", "text/plain; charset=utf-8", extra);
}

async function control(req, res, raw) {
  const route = `${req.method} ${req.url}`;
  if (route === "GET /control/log") return sendJson(res, 200, log);
  if (route === "POST /control/clear") {
    log = [];
    return sendJson(res, 200, { ok: true });
  }
  if (route === "POST /control/script") {
    const [v, err] = parseJson(raw);
    if (err !== null || typeof v?.path !== "string" || !Array.isArray(v.responses)) {
      return sendJson(res, 400, { error: `want {path, responses: [...]}: ${err ?? "bad shape"}` });
    }
    for (const r of v.responses) {
      if (!Number.isInteger(r?.status) || r.status < 200 || r.status > 599) {
        return sendJson(res, 400, { error: `bad status in ${JSON.stringify(r)}` });
      }
    }
    scripts.set(v.path, [...(scripts.get(v.path) ?? []), ...v.responses]);
    return sendJson(res, 200, { ok: true });
  }
  if (route === "POST /control/verify") {
    const [v, err] = parseJson(raw);
    if (err !== null || typeof v?.body !== "string" || typeof v.secret !== "string" || typeof v.headers !== "object") {
      return sendJson(res, 400, { error: `want {body, headers, secret}: ${err ?? "bad shape"}` });
    }
    let error;
    try {
      error = verifyWith(new Webhook(v.secret), v.body, v.headers ?? {});
    } catch (e) {
      error = `bad secret: ${e.message}`;
    }
    return sendJson(res, 200, { ok: error === null, error });
  }
  return sendJson(res, 404, { error: `no control route ${route}` });
}

const server = http.createServer(async (req, res) => {
  try {
    const raw = await readBody(req);
    if (req.url.startsWith("/control/")) await control(req, res, raw);
    else if (req.method === "POST") await delivery(req, res, raw);
    else send(res, 405, "deliveries are POSTs", "text/plain; charset=utf-8", { allow: "POST" });
  } catch (e) {
    process.stderr.write(`receiver: ${e.stack ?? e}\n`);
    if (!res.headersSent) send(res, 500, String(e));
  }
});

server.on("clientError", (_e, socket) => socket.destroy());
// Idle control connections outlive reqwest's pool (90 s idle): the control
// client never reuses a connection this server has just closed.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

// Gone with its parent: stdin is a pipe from the test; its end means the test is gone.
process.stdin.on("end", () => process.exit(0));
process.stdin.on("close", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
