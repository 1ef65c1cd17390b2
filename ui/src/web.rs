//! The web app, embedded at build time (see `build.rs`): `/assets/*` are Vite's hashed files
//! (cached for a year); every other path that is not the API gets `index.html`, and the app
//! routes itself (`/slos/checkout-availability?from=now-6h` can be shared).

use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, mime, bytes)| (*mime, *bytes))
}

pub async fn serve(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        return crate::error::ApiError::NotFound(format!("no API endpoint {method} {path}"))
            .into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "the web app answers GET only",
        )
            .into_response();
    }
    if let Some((mime, bytes)) = asset(path) {
        let mut r = (StatusCode::OK, bytes).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        if path.starts_with("/assets/") {
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
        }
        return r;
    }
    // A missing build file is a 404, not the app (app paths may hold dots: SLO names).
    if path.starts_with("/assets/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match asset("/index.html") {
        Some((mime, bytes)) => {
            let mut r = (StatusCode::OK, bytes).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            r
        }
        None => (StatusCode::NOT_FOUND, "the web UI was not built").into_response(),
    }
}
