// The worked example (docs/RULES.md) through a client generated from komisi's
// OpenAPI document: openapi-typescript types every path, body and answer,
// openapi-fetch calls them. scripts/test.sh type-checks it (`tsc --noEmit`),
// then compiles and runs it against a fresh komisi with the default program:
//   node dist/worked-example.js BASE_URL STOREFRONT_KEY ADMIN_KEY
// It exits 1 with the reason when an answer is not what the API documents.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/komisi.js";

type Order = components["schemas"]["OrderView"];
type EventId = components["schemas"]["EventId"];

const [base, storefrontKey, adminKey] = process.argv.slice(2);
if (!base || !storefrontKey || !adminKey) {
  console.error("usage: node dist/worked-example.js BASE_URL STOREFRONT_KEY ADMIN_KEY");
  process.exit(2);
}
const storefront = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${storefrontKey}` } });
const admin = createClient<paths>({ baseUrl: base, headers: { Authorization: `Bearer ${adminKey}` } });

function check(ok: boolean, what: string): asserts ok {
  if (!ok) {
    console.error(`worked example: ${what}`);
    process.exit(1);
  }
}

// Ids of this run, so that a shared server's other data never collides.
const run = Date.now().toString(36);
const id = (name: string) => `${name}-${run}`;

// A ← B ← C, each with its referral code.
for (const [name, parent] of [["A", null], ["B", "A"], ["C", "B"]] as const) {
  const { data, error, response } = await storefront.POST("/v1/affiliates", {
    body: { id: id(name), name: `Affiliate ${name}`, parent_id: parent && id(parent), referral_code: id(`code-${name}`) },
  });
  check(response.status === 201 && data !== undefined, `create ${name}: ${response.status} ${JSON.stringify(error)}`);
  check(data.id === id(name), `create ${name} answered ${data.id}`);
}

// The order through C's code: a shirt ×2, a phone, a gift card (excluded).
const orderId = id("o");
const placed = await storefront.POST("/v1/orders", {
  body: {
    id: orderId,
    buyer_id: id("x"),
    referral_code: id("code-C"),
    currency: "IDR",
    items: [
      { sku: "shirt", category: "fashion", quantity: 2, unit_price: "75000" },
      { sku: "phone", category: "electronics", quantity: 1, unit_price: "2000000" },
      { sku: "voucher", category: "gift-card", quantity: 1, unit_price: "100000" },
    ],
  },
});
check(placed.response.status === 202 && placed.data !== undefined, `place: ${placed.response.status}`);
const eventId: EventId = placed.data.event_id;
check(placed.response.headers.get("x-request-id") !== null, "every answer carries X-Request-Id");

// Processed in the background: poll the order.
let order: Order | undefined;
for (let i = 0; i < 300 && order?.commission_status !== "processed"; i++) {
  const { data } = await storefront.GET("/v1/orders/{id}", { params: { path: { id: orderId } } });
  order = data;
  if (order?.commission_status !== "processed") await new Promise((r) => setTimeout(r, 100));
}
check(order?.commission_status === "processed", `the order is processed (${order?.commission_status})`);

// C 95 000 (level 1), B 64 500 (level 2), A 21 500 (level 3): money is a decimal string.
const paid = new Map(order.commissions.map((l) => [`${l.affiliate_id}@${l.level}`, l.amount]));
for (const [name, level, amount] of [["C", 1, "95000"], ["B", 2, "64500"], ["A", 3, "21500"]] as const) {
  check(paid.get(`${id(name)}@${level}`) === amount, `${name} earns ${amount}: ${JSON.stringify(order.commissions)}`);
}
// One event id type everywhere: the order's events, its ledger lines, the admin's event.
check(order.events.some((e) => e.id === eventId), "the order lists the event intake answered");
check(order.commissions.every((l) => l.event_id === eventId), "each line names the event that wrote it");
const event = await admin.GET("/admin/events/{id}", { params: { path: { id: eventId } } });
check(event.data?.status === "done", `the event is done: ${JSON.stringify(event.error)}`);

// Why C earns 95 000: the explanation's line for C.
const why = await storefront.GET("/v1/orders/{id}/explanation", { params: { path: { id: orderId } } });
const cLine = why.data?.commissions.find((l) => l.affiliate_id === id("C") && l.kind === "commission");
check(cLine?.amount === "95000" && cLine.paid === "95000", `C's explained line: ${JSON.stringify(cLine)}`);
check(why.data?.eligible_amount === "2150000", `eligible 2 150 000: ${why.data?.eligible_amount}`);

// C's balance.
const c = await storefront.GET("/v1/affiliates/{id}", { params: { path: { id: id("C") } } });
check(c.data?.balances.pending === "95000", `C's pending balance: ${JSON.stringify(c.data?.balances)}`);

// An invalid order: a typed problem naming the field, nothing stored.
const bad = await storefront.POST("/v1/orders", {
  body: { id: id("bad"), buyer_id: "x", currency: "IDR", items: [{ sku: "s", category: "c", quantity: 1, unit_price: "-1" }] },
});
check(bad.response.status === 422 && bad.error !== undefined, `a negative price is refused: ${bad.response.status}`);
check(bad.error.errors?.some((e) => e.field === "items[0].unit_price") === true, JSON.stringify(bad.error));
const none = await storefront.GET("/v1/orders/{id}", { params: { path: { id: id("bad") } } });
check(none.response.status === 404, "the refused order was not stored");

console.log(`worked example through the generated client: C 95000, B 64500, A 21500 (order ${orderId}, event ${eventId})`);
