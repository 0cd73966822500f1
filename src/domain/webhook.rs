//! Outbound webhooks, the pure part (docs/API.md "Webhooks"): the message
//! catalog and the subscriptions that select from it, the body and its
//! Standard Webhooks signature, the retry schedule, what an answer means, and
//! which addresses an endpoint may name.
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::Sha256;
use std::net::IpAddr;
use std::time::Duration;

/// What a message says happened. Each is written in the transaction that
/// commits the change it describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    CommissionCreated,
    CommissionReversed,
    CommissionApproved,
    PayoutCreated,
    PayoutPaid,
    RewardEarned,
    RewardReversed,
    RedemptionHeld,
    RedemptionCaptured,
    RedemptionReleased,
    RedemptionExpired,
    PointsExpired,
    EventDead,
}

impl MessageType {
    pub const ALL: [MessageType; 13] = [
        Self::CommissionCreated,
        Self::CommissionReversed,
        Self::CommissionApproved,
        Self::PayoutCreated,
        Self::PayoutPaid,
        Self::RewardEarned,
        Self::RewardReversed,
        Self::RedemptionHeld,
        Self::RedemptionCaptured,
        Self::RedemptionReleased,
        Self::RedemptionExpired,
        Self::PointsExpired,
        Self::EventDead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CommissionCreated => "commission.created",
            Self::CommissionReversed => "commission.reversed",
            Self::CommissionApproved => "commission.approved",
            Self::PayoutCreated => "payout.created",
            Self::PayoutPaid => "payout.paid",
            Self::RewardEarned => "reward.earned",
            Self::RewardReversed => "reward.reversed",
            Self::RedemptionHeld => "redemption.held",
            Self::RedemptionCaptured => "redemption.captured",
            Self::RedemptionReleased => "redemption.released",
            Self::RedemptionExpired => "redemption.expired",
            Self::PointsExpired => "points.expired",
            Self::EventDead => "event.dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Whose state a message changes: one subject's messages carry increasing
/// `sequence` numbers in the order their changes committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubjectKind {
    Affiliate,
    Buyer,
    Payout,
    Event,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Affiliate => "affiliate",
            Self::Buyer => "buyer",
            Self::Payout => "payout",
            Self::Event => "event",
        }
    }
}

/// One change to tell subscribers about, before it is addressed to endpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub kind: MessageType,
    pub subject: (SubjectKind, String),
    /// The body's `data`, without `sequence` (added from the stored row).
    pub data: Map<String, Value>,
}

impl Notice {
    pub fn new(kind: MessageType, subject: SubjectKind, id: impl Into<String>, data: Value) -> Self {
        let data = match data {
            Value::Object(map) => map,
            other => Map::from_iter([("value".to_owned(), other)]),
        };
        Self { kind, subject: (subject, id.into()), data }
    }
}

/// At most this many patterns per endpoint.
pub const MAX_PATTERNS: usize = 50;

/// Checks an endpoint's subscription: each entry is `*`, a family
/// (`commission.*`) or a type of the catalog. Returns the patterns, sorted
/// and without repeats.
pub fn parse_patterns(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.is_empty() {
        return Err("subscribe to at least one type (\"*\" for all)".into());
    }
    if raw.len() > MAX_PATTERNS {
        return Err(format!("at most {MAX_PATTERNS} patterns"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let known = p == "*"
            || MessageType::parse(p).is_some()
            || p.strip_suffix(".*")
                .is_some_and(|family| MessageType::ALL.iter().any(|t| t.as_str().split('.').next() == Some(family)));
        if !known {
            return Err(format!(
                "{:?} is not a message type, a family like \"commission.*\", or \"*\"",
                p.chars().take(60).collect::<String>()
            ));
        }
        out.push(p.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether a subscription selects messages of this type.
pub fn subscribed(patterns: &[String], kind: MessageType) -> bool {
    let name = kind.as_str();
    patterns.iter().any(|p| {
        p == "*" || p == name || p.strip_suffix(".*").is_some_and(|family| name.split('.').next() == Some(family))
    })
}

// ---- secrets and signatures (Standard Webhooks)

const SECRET_PREFIX: &str = "whsec_";

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", B64.encode(key))
}

/// The HMAC key of a `whsec_…` secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix(SECRET_PREFIX)?).ok().filter(|k| (24..=64).contains(&k.len()))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts every key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per key, space-separated
/// (during a rotation's overlap, the new secret's first).
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter().map(|k| sign(k, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// The body: `{type, timestamp, data}` with `data.sequence`, the same bytes
/// on every attempt (keys in a fixed order).
pub fn body(kind: &str, committed_at: DateTime<Utc>, data: &Map<String, Value>, sequence: u64) -> String {
    let mut data = data.clone();
    data.insert("sequence".into(), Value::from(sequence));
    let mut top = Map::new();
    top.insert("type".into(), Value::from(kind));
    top.insert("timestamp".into(), Value::from(committed_at.to_rfc3339_opts(SecondsFormat::Micros, true)));
    top.insert("data".into(), Value::Object(data));
    Value::Object(top).to_string()
}

// ---- retries

/// The pause after each failed attempt: after the last, the message has failed.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl RetrySchedule {
    /// Standard Webhooks' schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    pub const DEFAULT: &'static str = "5s,5m,30m,2h,5h,10h,10h";

    /// A comma-separated list of durations (`5s`, `5m`, `2h`, `150ms`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let delays = s
            .split(',')
            .map(|d| humantime::parse_duration(d.trim()).map_err(|e| format!("{d:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() || delays.len() > 20 {
            return Err("1 to 20 delays".into());
        }
        Ok(Self(delays))
    }

    /// The pause before the next attempt after `tries` failed ones (None:
    /// no more attempts), spread by `jitter` in [-1, 1] times a tenth.
    pub fn next(&self, tries: u32, jitter: f64) -> Option<Duration> {
        let base = *self.0.get(usize::try_from(tries).ok()?.checked_sub(1)?)?;
        let spread = base.as_secs_f64() * 0.1 * jitter.clamp(-1.0, 1.0);
        Some(Duration::from_secs_f64((base.as_secs_f64() + spread).max(0.0)))
    }
}

/// What an attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// 410 Gone: the receiver asks for no more messages.
    Gone,
    /// Try again later; at the time the receiver asked for, if it did.
    Retry(Option<Duration>),
}

/// The longest `Retry-After` honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

impl Verdict {
    /// `status`: None when no answer came (connection refused, timeout).
    /// Redirects are failures (they are not followed).
    pub fn of(status: Option<u16>, retry_after: Option<&str>) -> Self {
        match status {
            Some(200..=299) => Self::Delivered,
            Some(410) => Self::Gone,
            Some(429 | 503) => Self::Retry(retry_after.and_then(parse_retry_after)),
            _ => Self::Retry(None),
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
            (at - Utc::now()).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

// ---- where an endpoint may point

/// The longest URL accepted.
pub const MAX_URL: usize = 2048;

/// Whether a message may be sent to this address: not loopback, private,
/// link-local, multicast, unspecified, reserved, shared (CGNAT) or broadcast — for
/// IPv6 also unique-local, and an IPv4 address mapped into IPv6 is judged
/// as the IPv4 one.
pub fn public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 0
                || a >= 240
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// An endpoint URL's own rules, before any name is resolved: absolute, at
/// most [`MAX_URL`] long, `https` (or `http` when private addresses are
/// allowed), with a host, no credentials, and — when the host is an address
/// — a public one.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, String> {
    if raw.len() > MAX_URL {
        return Err(format!("at most {MAX_URL} characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("not an absolute URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err("must be https (plain http only with KOMISI_WEBHOOK_ALLOW_PRIVATE=true)".into()),
        other => return Err(format!("scheme {other:?} is not https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let host = url.host().ok_or("has no host")?;
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(d) if is_localhost(d) => return Err("names a loopback host".into()),
            url::Host::Domain(_) => None,
        };
        if ip.is_some_and(|ip| !public_ip(ip)) {
            return Err("names a loopback, private, link-local or multicast address".into());
        }
    }
    Ok(url)
}

// ---- what is stored

/// A receiver of messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `ep_` and 32 hex digits.
    pub id: String,
    pub url: String,
    /// Patterns ([`parse_patterns`]).
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// The signing secret as stored (see `engine::webhooks::Sealer`).
    pub secret: String,
    /// After a rotation, the old secret, which also signs until it expires.
    pub previous_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub disabled: bool,
    pub disabled_reason: Option<String>,
    /// The first failed attempt since the last success.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An enabled endpoint's subscription, as the outbox reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    pub id: String,
    pub patterns: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    Delivered,
    /// Every attempt of the schedule failed, or the endpoint answered 410.
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed].into_iter().find(|m| m.as_str() == s)
    }
}

/// One message addressed to one endpoint, as the outbox writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxRow {
    /// `msg_` and 32 hex digits: the `webhook-id`.
    pub message_id: String,
    pub endpoint_id: String,
    pub kind: MessageType,
    pub subject_kind: SubjectKind,
    pub subject_id: String,
    /// `data` as JSON.
    pub data: String,
}

/// A stored message with its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The row id: the message's `sequence`.
    pub row: u64,
    pub id: String,
    pub endpoint_id: String,
    pub kind: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub data: Map<String, Value>,
    pub created_at: DateTime<Utc>,
    pub status: MessageStatus,
    /// Attempts since it was last queued.
    pub tries: u32,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub log: Vec<Attempt>,
}

impl Message {
    /// The body every attempt sends.
    pub fn body(&self) -> String {
        body(&self.kind, self.created_at, &self.data, self.row)
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: DateTime<Utc>,
    /// None: no answer (refused, timed out, address not allowed).
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    /// The first 1 KB of the answer's body.
    pub response: Option<String>,
    pub error: Option<String>,
}

/// Where a message stands after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    Retry(DateTime<Utc>),
    Failed,
}

/// An endpoint's health after a batch of attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Some attempt succeeded: the endpoint is not failing.
    pub delivered: bool,
    /// Some attempt was answered 410: disable it now.
    pub gone: bool,
    /// It was failing before the batch (only then a success clears it).
    pub was_failing: bool,
    /// Failing since before this: disable it.
    pub disable_before: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// Which messages a list shows.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub endpoint: Option<String>,
    pub status: Option<MessageStatus>,
    pub kind: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// `localhost` and its subdomains, with or without the root's dot.
fn is_localhost(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_standard_webhooks_test_vector_signs_as_the_spec_says() {
        // From the Standard Webhooks specification's examples.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, r#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let both = signature_header(&[key.clone(), vec![7; 32]], "m", 1, "{}");
        assert_eq!(both.split(' ').count(), 2);
        assert!(both.starts_with(&sign(&key, "m", 1, "{}")));
    }

    #[test]
    fn new_secrets_are_32_random_bytes_behind_the_prefix() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(secret_key(&a).unwrap().len(), 32);
        assert_eq!(secret_key("whsec_c2hvcnQ="), None, "too short a key");
        assert_eq!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), None, "no prefix");
    }

    #[test]
    fn patterns_select_a_type_a_family_or_everything() {
        let p = parse_patterns(&["commission.*".into(), "payout.paid".into(), "commission.*".into()]).unwrap();
        assert_eq!(p, vec!["commission.*".to_owned(), "payout.paid".to_owned()]);
        assert!(subscribed(&p, MessageType::CommissionReversed));
        assert!(subscribed(&p, MessageType::PayoutPaid));
        assert!(!subscribed(&p, MessageType::PayoutCreated));
        assert!(MessageType::ALL.iter().all(|t| subscribed(&["*".into()], *t)));
        for bad in ["commission", "nope.*", "commission.created.x", "", "**"] {
            assert!(parse_patterns(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(parse_patterns(&[]).is_err());
    }

    #[test]
    fn the_body_is_the_same_bytes_every_time_with_its_sequence() {
        let at = DateTime::parse_from_rfc3339("2026-12-05T10:00:00.123456Z").unwrap().with_timezone(&Utc);
        let n = Notice::new(MessageType::RewardEarned, SubjectKind::Buyer, "x", serde_json::json!({"points": 26500}));
        let a = body(n.kind.as_str(), at, &n.data, 7);
        assert_eq!(a, body(n.kind.as_str(), at, &n.data, 7));
        assert_eq!(
            a,
            r#"{"data":{"points":26500,"sequence":7},"timestamp":"2026-12-05T10:00:00.123456Z","type":"reward.earned"}"#
        );
    }

    #[test]
    fn retries_follow_the_schedule_then_stop() {
        let s = RetrySchedule::parse(RetrySchedule::DEFAULT).unwrap();
        assert_eq!(s.next(1, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(s.next(2, 0.0), Some(Duration::from_secs(300)));
        assert_eq!(s.next(7, 0.0), Some(Duration::from_secs(36_000)));
        assert_eq!(s.next(8, 0.0), None, "eight attempts in all");
        assert_eq!(s.next(1, 1.0), Some(Duration::from_secs_f64(5.5)));
        assert!(RetrySchedule::parse("5s,,1m").is_err());
        assert_eq!(RetrySchedule::parse("100ms, 1s").unwrap().0.len(), 2);
    }

    #[test]
    fn answers_are_judged_as_the_spec_says() {
        assert_eq!(Verdict::of(Some(204), None), Verdict::Delivered);
        assert_eq!(Verdict::of(Some(301), None), Verdict::Retry(None), "a redirect is a failure");
        assert_eq!(Verdict::of(Some(410), None), Verdict::Gone);
        assert_eq!(Verdict::of(Some(429), Some("30")), Verdict::Retry(Some(Duration::from_secs(30))));
        assert_eq!(Verdict::of(Some(503), Some("999999")), Verdict::Retry(Some(MAX_RETRY_AFTER)));
        assert_eq!(Verdict::of(Some(500), Some("30")), Verdict::Retry(None), "only 429 and 503 ask for a time");
        assert_eq!(Verdict::of(None, None), Verdict::Retry(None));
    }

    #[test]
    fn only_public_https_urls_are_accepted_unless_private_is_allowed() {
        for bad in [
            "https://127.0.0.1/hook",
            "https://10.0.0.1/hook",
            "https://[::1]/hook",
            "https://[::ffff:192.168.1.1]/hook",
            "https://169.254.169.254/latest",
            "https://[fd00::1]/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://localhost/hook",
            "https://LOCALHOST./hook",
            "https://a.localhost/hook",
            "http://example.com/hook",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "/relative",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad} was accepted");
        }
        assert!(check_url("https://example.com/hooks?x=1", false).is_ok());
        assert!(check_url("https://93.184.216.34/", false).is_ok());
        assert!(check_url("http://127.0.0.1:9/hook", true).is_ok());
        assert!(check_url("ftp://127.0.0.1/", true).is_err());
    }

    proptest! {
        #[test]
        fn every_ipv4_in_a_refused_range_is_refused(a in 0u8..=255, b in 0u8..=255, c in 0u8..=255, d in 0u8..=255) {
            let ip = std::net::Ipv4Addr::new(a, b, c, d);
            let refused = a == 0 || a == 10 || a == 127 || (a == 169 && b == 254) || (a == 172 && (16..32).contains(&b))
                || (a == 192 && b == 168) || (a == 100 && (64..128).contains(&b)) || a >= 224;
            prop_assert_eq!(public_ip(IpAddr::V4(ip)), !refused);
            // The same address mapped into IPv6 is judged the same.
            prop_assert_eq!(public_ip(IpAddr::V6(ip.to_ipv6_mapped())), !refused);
        }

        #[test]
        fn a_signature_changes_with_every_byte_of_the_body(body in ".{0,64}", i in 0usize..64) {
            let key = vec![1u8; 32];
            let sig = sign(&key, "msg_1", 1, &body);
            let mut bytes = body.clone().into_bytes();
            if !bytes.is_empty() {
                let i = i % bytes.len();
                bytes[i] ^= 1;
                if let Ok(changed) = String::from_utf8(bytes) {
                    prop_assert_ne!(sign(&key, "msg_1", 1, &changed), sig);
                }
            }
        }
    }
}
