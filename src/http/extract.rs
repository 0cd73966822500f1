//! Extractors for the cross-cutting concerns: bearer-key auth (storefront vs
//! admin) and JSON bodies whose failures become problem+json (400/413/415/422).
use super::error::ApiError;
use super::AppState;
use crate::domain::audit::Actor;
use crate::domain::FieldError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

/// The configured bearer keys.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    pub storefront: Vec<String>,
    pub admin: Vec<String>,
    /// Each key's name, storefront keys first, then admin keys: who made a
    /// request, in the access log (never the key itself).
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Storefront,
    Admin,
}

impl ApiKeys {
    /// Keys as configured: `name:key`, or a bare key (named `storefront-<n>` /
    /// `admin-<n>`, n from 1). A name is 1-64 of `A-Z a-z 0-9 _ . -`; an entry
    /// whose part before the first `:` is no name is a bare key.
    pub fn new(storefront: &[String], admin: &[String]) -> Self {
        fn split(entries: &[String], role: &str) -> (Vec<String>, Vec<String>) {
            entries
                .iter()
                .enumerate()
                .map(|(i, entry)| match entry.split_once(':') {
                    Some((name, key)) if !key.is_empty() && super::audit::is_key_name(name) => {
                        (key.to_owned(), name.to_owned())
                    }
                    _ => (entry.clone(), format!("{role}-{}", i + 1)),
                })
                .unzip()
        }
        let (storefront, mut names) = split(storefront, "storefront");
        let (admin, admin_names) = split(admin, "admin");
        names.extend(admin_names);
        Self { storefront, admin, names }
    }

    /// The role and number of the key given (storefront keys first, then
    /// admin keys), comparing against every key in constant time, so timing
    /// reveals nothing.
    fn which(&self, given: &[u8]) -> Option<(Role, usize)> {
        let keys =
            self.storefront.iter().map(|k| (Role::Storefront, k)).chain(self.admin.iter().map(|k| (Role::Admin, k)));
        keys.enumerate().fold(None, |hit, (n, (role, k))| {
            let equal = bool::from(k.as_bytes().ct_eq(given));
            if equal && hit.is_none() {
                Some((role, n))
            } else {
                hit
            }
        })
    }
}

/// Who is calling: the key's role and number, after the rate limits (see [`super::limit`]).
fn authenticate(parts: &Parts, state: &AppState) -> Result<(Role, usize), ApiError> {
    let addr = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    state.limits.refused(addr).map_err(|wait| ApiError::too_many("auth", wait))?;
    match bearer(parts).and_then(|key| state.keys.which(key)) {
        Some((role, n)) => {
            if let (Some(actor), Some(name)) = (parts.extensions.get::<super::Actor>(), state.keys.names.get(n)) {
                let _ = actor.0.set(name.clone());
            }
            state.limits.key(n).map_err(|wait| ApiError::too_many("key", wait))?;
            Ok((role, n))
        }
        None => {
            state.limits.failed(addr).map_err(|wait| ApiError::too_many("auth", wait))?;
            Err(ApiError::Unauthorized)
        }
    }
}

fn bearer(parts: &Parts) -> Option<&[u8]> {
    let value = parts.headers.get(header::AUTHORIZATION)?.as_bytes();
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"Bearer ") {
        return None;
    }
    (!rest.is_empty()).then_some(rest)
}

/// Who made a write, for the audit trail: the key's name (never the key)
/// and the request's id.
fn actor(state: &AppState, key: usize) -> Actor {
    let name = state.keys.names.get(key).cloned().unwrap_or_else(|| format!("key-{}", key + 1));
    Actor { key: name, request_id: super::current_request_id() }
}

/// A storefront caller (an admin key is accepted too).
pub struct Storefront {
    key: usize,
}

impl Storefront {
    /// The caller, for the audit trail of a write.
    pub fn actor(&self, state: &AppState) -> Actor {
        actor(state, self.key)
    }
}

impl FromRequestParts<AppState> for Storefront {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(parts, state).map(|(_, key)| Storefront { key })
    }
}

/// An operator caller: a storefront key is refused with 403.
pub struct Admin {
    key: usize,
}

impl Admin {
    /// The caller, for the audit trail of a write.
    pub fn actor(&self, state: &AppState) -> Actor {
        actor(state, self.key)
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(parts, state)? {
            (Role::Admin, key) => Ok(Admin { key }),
            (Role::Storefront, _) => Err(ApiError::Forbidden),
        }
    }
}

/// A JSON body. Syntax errors → 400; wrong shapes or types → 422 naming the
/// field path (e.g. `items[2].unit_price`); over the body limit → 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&body(req, state).await?).map(ApiJson)
    }
}

/// A JSON body that may be left out: no body at all (or JSON `null`) is
/// None; a body must be `application/json` and parse, as for [`ApiJson`].
#[derive(Debug, Clone)]
pub struct OptionalApiJson<T>(pub Option<T>);

impl<S, T> FromRequest<S> for OptionalApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = is_json(&req);
        let bytes = body(req, state).await?;
        // No body, or JSON null, is "left out".
        if bytes.is_empty() || (is_json && bytes.trim_ascii() == b"null") {
            return Ok(OptionalApiJson(None));
        }
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_json(&bytes).map(|v| OptionalApiJson(Some(v)))
    }
}

/// Whether the request says its body is `application/json`.
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// The whole body; above the limit → 413.
async fn body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body is an object: serde would read a JSON array into a struct
    // by position (`["o-1","b",…]` as an order), which no client means.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b) if *b != b'{' && (b"[\"-tfn".contains(b) || b.is_ascii_digit())) {
        return Err(ApiError::Validation(vec![FieldError::new("", "the body must be a JSON object")]));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let message = strip_position(&inner.to_string());
                let base = if path == "." { String::new() } else { path };
                // The path of an unknown field already ends with its name.
                let field = match named_field(&message) {
                    Some(name) if base.is_empty() => name.to_owned(),
                    Some(name) if base == name || base.ends_with(&format!(".{name}")) => base,
                    Some(name) => format!("{base}.{name}"),
                    None => base,
                };
                ApiError::Validation(vec![FieldError::new(field, message)])
            }
            // serde_json reports an enum given a number ("status": 1) as a
            // syntax error; in a body that is valid JSON it is the field's.
            _ if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() => {
                let field = if path == "." { String::new() } else { path };
                ApiError::Validation(vec![FieldError::new(field, "has the wrong type or an unknown value")])
            }
            _ => ApiError::BadRequest(format!("body is not valid JSON: {inner}")),
        }
    })
}

/// For "missing field `x`" and "unknown field `x`, expected …", the field named.
fn named_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `").or_else(|| message.strip_prefix("unknown field `"))?;
    rest.split('`').next()
}

/// serde_json appends " at line L column C" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Page sizes of every listing: `limit` 1–500, 50 when left out.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// A listing's `limit` parameter, recording a field error when it is out of 1–500.
/// An optional RFC 3339 time from a query or body, recording a field error
/// when it does not parse.
pub fn rfc3339(field: &str, raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<chrono::DateTime<chrono::Utc>> {
    raw.and_then(|s| match chrono::DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t.with_timezone(&chrono::Utc)),
        Err(_) => {
            errors.push(FieldError::new(field, "must be an RFC 3339 timestamp"));
            None
        }
    })
}

/// A numeric keyset cursor, only in the form this API writes: up to 19
/// digits (no sign); past the largest stored id it is every row. Empty or
/// absent: the first page.
pub fn id_cursor(raw: Option<&str>, errors: &mut Vec<FieldError>) -> Option<u64> {
    match raw {
        None | Some("") => None,
        Some(s) => match s.parse::<u64>() {
            Ok(n) if s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) => Some(n.min(i64::MAX as u64)),
            _ => {
                errors.push(FieldError::new("cursor", "not a cursor returned by this API"));
                None
            }
        },
    }
}

pub fn page_limit(raw: Option<&str>, errors: &mut Vec<FieldError>) -> u32 {
    match raw.map(str::parse::<u32>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError::new("limit", format!("must be an integer 1-{MAX_LIMIT}")));
            DEFAULT_LIMIT
        }
    }
}

/// Parses one storefront-given id, recording a field error when it is invalid,
/// so a handler can report every bad field of a request at once.
pub fn id_field<T>(
    field: impl Into<String>,
    raw: &str,
    parse: fn(&str) -> Result<T, crate::domain::ids::InvalidId>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    parse(raw).map_err(|e| errors.push(FieldError::new(field, e.to_string()))).ok()
}

/// A query string whose failures are problem+json: a query that cannot be
/// decoded (a repeated parameter, bad percent-encoding) → 400.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path parameters whose failures are problem+json (a segment that is not
/// UTF-8 once decoded → 404: no resource has such an id).
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::BadRequest(format!("query string: {}", e.body_text()))
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        ApiError::NotFound("resource")
    }
}

#[cfg(test)]
mod key_tests {
    use super::ApiKeys;

    #[test]
    fn keys_are_named_by_their_prefix_or_by_role_and_position() {
        let k = ApiKeys::new(
            &["shop-1:sf-secret".into(), "bare".into()],
            &["alice:adm:with:colons".into(), "no name here:x".into(), ":empty-name".into(), "bob:".into()],
        );
        assert_eq!(k.storefront, ["sf-secret", "bare"]);
        assert_eq!(k.admin, ["adm:with:colons", "no name here:x", ":empty-name", "bob:"]);
        assert_eq!(k.names, ["shop-1", "storefront-2", "alice", "admin-2", "admin-3", "admin-4"]);
    }
}
