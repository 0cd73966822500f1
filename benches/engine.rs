//! Micro-benchmarks of the pure engine and of order parsing + validation.
//! `cargo bench --bench engine` (CI runs each once in the test profile: `cargo test --bench '*'`).
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use komisi::domain::entitlement::{entitle, AffiliateSnapshot, FrozenContext};
use komisi::domain::ids::{AffiliateId, BuyerId, Category, Sku};
use komisi::domain::ledger::{delta, Applied};
use komisi::domain::order::{OrderItem, OrderState};
use komisi::domain::program::Program;
use rust_decimal::Decimal;

fn order() -> OrderState {
    let items = [
        ("fashion", 2, 75_000),
        ("electronics", 1, 2_000_000),
        ("gift-card", 1, 100_000),
        ("food", 3, 12_500),
        ("fashion", 1, 310_000),
    ];
    OrderState {
        buyer_id: BuyerId::parse("buyer-1").unwrap(),
        items: items
            .iter()
            .enumerate()
            .map(|(n, (c, q, p))| OrderItem {
                sku: Sku::parse(&format!("sku-{n}")).unwrap(),
                category: Category::parse(c).unwrap(),
                quantity: *q,
                refunded: 0,
                unit_price: Decimal::from(*p),
            })
            .collect(),
        cancelled: false,
        fx_rate: None,
    }
}

fn context() -> FrozenContext {
    let snap = |id: &str| AffiliateSnapshot {
        id: AffiliateId::parse(id).unwrap(),
        suspended: false,
        buyer_id: None,
        email_hash: None,
        unqualified: false,
        caps: None,
    };
    FrozenContext {
        direct: Some(snap("leaf")),
        upline: vec![snap("mid"), snap("root")],
        volume_before: Decimal::from(12_000_000),
        nth_in_month: 3,
        buyer_first_order: true,
        buyer_email_hash: None,
    }
}

fn engine(c: &mut Criterion) {
    let program = Program::parse(&Program::default_doc()).unwrap();
    let (order, ctx) = (order(), context());
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));
    g.bench_function("entitlement_3_levels_5_items", |b| b.iter(|| entitle(black_box(&order), &program, &ctx)));
    let entitled = entitle(&order, &program, &ctx);
    let mut applied = Applied::default();
    applied.add(&delta(&entitled, &Applied::default()));
    g.bench_function("entitlement_and_delta_replay", |b| {
        b.iter(|| delta(&entitle(black_box(&order), &program, &ctx), black_box(&applied)))
    });
    g.finish();
}

fn parsing(c: &mut Criterion) {
    let body = serde_json::json!({
        "id": "order-000001", "buyer_id": "buyer-1", "referral_code": "code-leaf", "currency": "IDR",
        "items": [
            {"sku": "sku-0", "category": "fashion", "quantity": 2, "unit_price": "75000"},
            {"sku": "sku-1", "category": "electronics", "quantity": 1, "unit_price": "2000000"},
            {"sku": "sku-2", "category": "gift-card", "quantity": 1, "unit_price": "100000"},
            {"sku": "sku-3", "category": "food", "quantity": 3, "unit_price": "12500.50"},
            {"sku": "sku-4", "category": "fashion", "quantity": 1, "unit_price": "310000"}
        ]
    })
    .to_string();
    let mut g = c.benchmark_group("intake");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("parse_and_validate_order_5_items", |b| {
        b.iter(|| komisi::http::orders::parse_order_json(black_box(body.as_bytes())).map(|o| o.request_hash))
    });
    g.finish();
}

criterion_group!(benches, engine, parsing);
criterion_main!(benches);
