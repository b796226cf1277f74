//! The annotation page at `/` and its files at `/assets/...` (`web/`, built by
//! `scripts/web.sh` into `web/dist`).
//!
//! The files are compiled into the binary (debug builds too: a binary behaves the same
//! wherever it is copied, e.g. the test suite's images), so every way the gateway runs
//! (`aiaa up`, the gateway image, the chart) serves the page of its own build with nothing
//! to install or mount; the build script rebuilds the gateway when `web/dist` changes. A
//! binary built before the page was has none: `/` then answers a short page that says how
//! to build it.
//!
//! `/` answers the page to browsers (an `Accept` naming `text/html`) and the server's JSON
//! description to everything else (3D Slicer's reviewer and scripts check that the root
//! answers). The page is `no-cache` (it names the assets of this build); the assets carry a
//! content hash in their names and are cached for a year. Every page answer carries a
//! content security policy that allows this origin only: the page loads nothing from any
//! other host.

use axum::extract::Path;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use rust_embed::Embed;

use crate::error::{GatewayError, Result};
use crate::response;
use crate::routes::health;

#[derive(Embed)]
#[folder = "../../web/dist"] // relative to this crate's Cargo.toml
#[allow_missing = true]
struct Assets;

/// Same origin only. `blob:` and `data:` images: niivue's colour bars and the label
/// download; `blob:` workers: none today, but niivue may start one for decompression.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; worker-src 'self' blob:; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// What `/` answers when the binary was built without the page.
const NOT_BUILT: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>aiaa: page not built</title></head><body><h1>The annotation page is not built into \
this server</h1><p>This binary was compiled before the page's files existed. From the \
checkout run <code>scripts/web.sh</code> (it needs Node.js 18 or newer and installs the \
page's packages with <code>npm ci</code>), then build the server again; \
<code>scripts/up.sh</code> does both.</p><p>The APIs work without it: \
<a href=\"/v1/models\">/v1/models</a>, <a href=\"/info/\">/info/</a>.</p></body></html>";

/// Whether this binary carries the page (logged at start).
pub fn built() -> bool {
    Assets::get("index.html").is_some()
}

/// `GET /`: the page for browsers, the server's description for everything else.
pub async fn root(headers: HeaderMap) -> Response {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"));
    if !wants_html {
        return health::root().await;
    }
    let (status, body) = match Assets::get("index.html") {
        Some(file) => (StatusCode::OK, Bytes::from(file.data.into_owned())),
        None => (StatusCode::OK, Bytes::from_static(NOT_BUILT.as_bytes())),
    };
    let mut answer = response::bytes(status, "text/html; charset=utf-8", body);
    set_security_headers(answer.headers_mut());
    answer
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    answer
}

/// `GET /assets/{file}`: one of the page's files (names carry their content hash).
pub async fn asset(Path(file): Path<String>) -> Result<Response> {
    let path = format!("assets/{file}");
    let found = Assets::get(&path)
        .ok_or_else(|| GatewayError::NotFound(format!("no such file of the page: /{path}")))?;
    // Source maps are JSON; mime_guess does not know the extension.
    let mime = if file.ends_with(".map") {
        "application/json".to_string()
    } else {
        found.metadata.mimetype().to_string()
    };
    let mut answer = response::bytes(StatusCode::OK, &mime, Bytes::from(found.data.into_owned()));
    set_security_headers(answer.headers_mut());
    answer.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    Ok(answer)
}

fn set_security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scripts_get_json_and_browsers_get_html() {
        let json = root(HeaderMap::new()).await;
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        let mut browser = HeaderMap::new();
        browser.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"),
        );
        let html = root(browser).await;
        assert_eq!(html.status(), StatusCode::OK);
        assert_eq!(html.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        let csp = html.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert_eq!(html.headers()[header::CACHE_CONTROL], "no-cache");
    }

    #[tokio::test]
    async fn unknown_assets_are_404_naming_the_file() {
        let err = asset(Path("nothing-here.js".into())).await.unwrap_err();
        assert!(
            matches!(&err, GatewayError::NotFound(m) if m.contains("/assets/nothing-here.js")),
            "{err:?}"
        );
        // Nothing outside web/dist.
        for outside in ["../../Cargo.toml", "../../../Cargo.toml"] {
            assert!(asset(Path(outside.into())).await.is_err(), "{outside}");
        }
    }

    #[tokio::test]
    async fn every_built_asset_is_served_with_its_type_and_cached() {
        for name in Assets::iter().filter(|n| n.starts_with("assets/")) {
            let file = name.trim_start_matches("assets/").to_string();
            let answer = asset(Path(file)).await.unwrap();
            let ty = answer.headers()[header::CONTENT_TYPE].to_str().unwrap();
            if name.ends_with(".js") {
                assert_eq!(ty, "text/javascript", "{name}");
            }
            if name.ends_with(".css") {
                assert_eq!(ty, "text/css", "{name}");
            }
            assert_eq!(
                answer.headers()[header::CACHE_CONTROL],
                "public, max-age=31536000, immutable"
            );
        }
    }
}
