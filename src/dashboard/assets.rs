//! The dashboard's static files, embedded in the binary: one stylesheet and one script. Their
//! URLs carry a hash of their content (`/static/app-HASH.css`), so they are cached for a year
//! (`immutable`) and a new build's files get new URLs; an `ETag` answers revalidations.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const CSS: &[u8] = include_bytes!("../../static/app.css");
const JS: &[u8] = include_bytes!("../../static/app.js");

struct Asset {
    url: String,
    etag: String,
    body: &'static [u8],
    content_type: &'static str,
}

fn asset(stem: &str, ext: &str, body: &'static [u8], content_type: &'static str) -> Asset {
    let hash = hex::encode(&Sha256::digest(body)[..8]);
    Asset {
        url: format!("/static/{stem}-{hash}.{ext}"),
        etag: format!("\"{hash}\""),
        body,
        content_type,
    }
}

static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        asset("app", "css", CSS, "text/css; charset=utf-8"),
        asset("app", "js", JS, "text/javascript; charset=utf-8"),
    ]
});

pub(crate) fn css_url() -> &'static str {
    &ASSETS[0].url
}

pub(crate) fn js_url() -> &'static str {
    &ASSETS[1].url
}

/// `GET /static/NAME`: the file whose current URL this is (404 otherwise), or 304 when the
/// browser's copy is current.
pub(crate) async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.url["/static/".len()..] == name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    let cached = [
        (header::ETAG, a.etag.as_str()),
        (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, cached).into_response();
    }
    (cached, [(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
}
