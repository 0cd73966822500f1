//! The operator console: static HTML, CSS and ES modules from `console/`,
//! embedded in the binary and served at `/console`. These are pages, not API
//! operations, so they stay out of the OpenAPI document; every answer carries
//! a Content-Security-Policy that allows only this origin's own scripts and
//! styles (no inline script or style), so a value that slipped into the page
//! as markup still could not run.
use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::Router;
use std::convert::Infallible;

/// `(path under /console/, content type, bytes)`; `index.html` is also served at `/console`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../console/index.html")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../console/style.css")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../console/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../../console/api.js")),
    ("dom.js", "text/javascript; charset=utf-8", include_bytes!("../../console/dom.js")),
    ("overview.js", "text/javascript; charset=utf-8", include_bytes!("../../console/overview.js")),
    ("events.js", "text/javascript; charset=utf-8", include_bytes!("../../console/events.js")),
    ("orders.js", "text/javascript; charset=utf-8", include_bytes!("../../console/orders.js")),
    ("affiliates.js", "text/javascript; charset=utf-8", include_bytes!("../../console/affiliates.js")),
    ("buyers.js", "text/javascript; charset=utf-8", include_bytes!("../../console/buyers.js")),
    ("adjust.js", "text/javascript; charset=utf-8", include_bytes!("../../console/adjust.js")),
    ("payouts.js", "text/javascript; charset=utf-8", include_bytes!("../../console/payouts.js")),
    ("webhooks.js", "text/javascript; charset=utf-8", include_bytes!("../../console/webhooks.js")),
    ("program.js", "text/javascript; charset=utf-8", include_bytes!("../../console/program.js")),
    ("simulations.js", "text/javascript; charset=utf-8", include_bytes!("../../console/simulations.js")),
    ("audit.js", "text/javascript; charset=utf-8", include_bytes!("../../console/audit.js")),
    ("reports.js", "text/javascript; charset=utf-8", include_bytes!("../../console/reports.js")),
];

/// Only this origin's scripts, styles and API; no inline code, no frames, no forms posting away.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                       connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's router: `/console` and everything under `/console/`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let service = tower::service_fn(|req: Request<Body>| async move { Ok::<_, Infallible>(serve(&req)) });
    Router::new()
        .route_service("/console", service)
        .route_service("/console/", service)
        .route_service("/console/{*asset}", service)
}

fn serve(req: &Request<Body>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = page(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", b"method not allowed\n");
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let name = match req.uri().path().strip_prefix("/console").unwrap_or("") {
        "" | "/" => "index.html",
        rest => rest.trim_start_matches('/'),
    };
    match ASSETS.iter().find(|(path, _, _)| *path == name) {
        // (hyper sends no body to a HEAD, and keeps its Content-Length.)
        Some((_, content_type, bytes)) => page(StatusCode::OK, content_type, bytes),
        None => page(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", b"not found\n"),
    }
}

fn page(status: StatusCode, content_type: &'static str, body: &'static [u8]) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Small files: revalidated every time, so a new binary's console is used at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `console/` is served, and nothing else is listed.
    #[test]
    fn every_console_file_is_embedded() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/console");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("console/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|(p, _, _)| p.to_string()).collect();
        listed.sort();
        assert_eq!(files, listed);
    }

    /// No inline script or style, and no `innerHTML`-style sink, in any asset.
    #[test]
    fn assets_carry_no_inline_code_or_html_sinks() {
        for (path, _, bytes) in ASSETS {
            let text = std::str::from_utf8(bytes).expect("utf-8");
            for bad in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
                assert!(!text.contains(bad), "{path} uses {bad}");
            }
            if path.ends_with(".html") {
                assert!(!text.contains(" style="), "{path} has an inline style");
                assert!(!text.contains("<style"), "{path} has a style element");
                for tag in text.split("<script").skip(1) {
                    assert!(tag.split('>').next().is_some_and(|a| a.contains("src=")), "{path} has an inline script");
                }
            }
        }
    }
}
