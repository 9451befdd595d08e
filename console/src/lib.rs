//! Fleetgate's web console (CONSOLE.md): a single page of plain HTML, CSS and hand-written ES
//! modules, embedded in the binary with `include_bytes!` and served under `/console/` (`/`
//! redirects there) by [`configure`].
//!
//! The crate owns the console's assets and the headers they are served with: a strict
//! Content-Security-Policy (scripts, styles and fetches from this origin only, no inline code),
//! no framing, `nosniff`, no referrer, and revalidation by `ETag` so a new binary's assets are
//! picked up at once. It must not hold API logic or state of its own: the page talks to the
//! public REST API (API.md) with the signed-in token, exactly as any other client, so the
//! console can never do more than that token may.

use ntex::http::{Method, StatusCode, header};
use ntex::util::Bytes;
use ntex::web::{self, DefaultError, HttpRequest, HttpResponse, HttpResponseBuilder};

/// The Content-Security-Policy of every console response: nothing inline, nothing from another
/// origin, no `<base>`, no framing, forms post only here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'";

/// Where the console lives; `/` and `/console` redirect here.
pub const CONSOLE_PATH: &str = "/console/";

/// One embedded file.
struct Asset {
    /// Path below `/console/`.
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// FNV-1a of `body`, computed at compile time: the `ETag`.
    hash: u64,
}

/// FNV-1a (64 bit): a cheap, stable content hash for `ETag`s (not a security measure).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// Declares the embedded files once: name (below `assets/`) and content type.
macro_rules! assets {
    ($($name:literal => $content_type:expr,)*) => {
        const ASSETS: &[Asset] = &[$(Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../assets/", $name)),
            hash: fnv1a(include_bytes!(concat!("../assets/", $name))),
        }),*];
    };
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

assets! {
    "index.html" => HTML,
    "console.css" => CSS,
    "favicon.svg" => SVG,
    "api.js" => JS,
    "dom.js" => JS,
    "app.js" => JS,
    "views/overview.js" => JS,
    "views/accounts.js" => JS,
    "views/provisioning.js" => JS,
    "views/request.js" => JS,
    "views/devices.js" => JS,
    "views/jobs.js" => JS,
    "views/job.js" => JS,
    "views/users.js" => JS,
    "views/endpoints.js" => JS,
}

/// A response builder with the console's security headers.
fn secured(status: StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer");
    b
}

/// A plain-text answer for what the console does not have (with the same headers).
fn plain(status: StatusCode, text: &'static str) -> HttpResponse {
    secured(status)
        .content_type("text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(text)
}

/// `/` and `/console`: 308 to `/console/`.
async fn redirect() -> HttpResponse {
    secured(StatusCode::PERMANENT_REDIRECT)
        .header(header::LOCATION, CONSOLE_PATH)
        .header(header::CACHE_CONTROL, "no-store")
        .finish()
}

/// `GET /console/{tail}`: the asset (`index.html` for an empty tail), 304 when the browser's
/// copy is current, 404 otherwise.
async fn asset(req: HttpRequest) -> HttpResponse {
    // ntex-router hands `/console/` over with a tail of "/".
    let name = match req
        .match_info()
        .get("tail")
        .map(|t| t.trim_start_matches('/'))
    {
        Some(tail) if !tail.is_empty() => tail,
        _ => "index.html",
    };
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let etag = format!("\"{:016x}\"", asset.hash);
    let current = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    // Names are not fingerprinted: revalidate every time (cheap, a 304), so a new binary's
    // assets are used at once and the page never mixes two versions.
    let mut b = secured(if current {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    b.header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, "no-cache");
    if current || req.method() == Method::HEAD {
        b.content_type(asset.content_type).finish()
    } else {
        b.content_type(asset.content_type)
            .body(Bytes::from_static(asset.body))
    }
}

/// Other methods than GET and HEAD.
async fn method_not_allowed() -> HttpResponse {
    let mut res = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    res.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    res
}

/// Registers the console: `/` and `/console` redirect to `/console/`, and `/console/{tail}*`
/// serves the embedded assets. Configure it before `fleetgate_api::configure`, whose catch-all
/// 404 would otherwise answer these paths: `App::new().configure(console::configure)
/// .configure(api::configure)`.
pub fn configure(cfg: &mut web::ServiceConfig<DefaultError>) {
    for path in ["/", "/console"] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(redirect))
                .route(web::head().to(redirect))
                .default_service(web::to(method_not_allowed)),
        );
    }
    // `/console/` on its own: ntex-router 1.1 panics reading an empty `{tail}*`.
    for path in [CONSOLE_PATH, "/console/{tail}*"] {
        cfg.service(
            web::resource(path)
                .route(web::get().to(asset))
                .route(web::head().to(asset))
                .default_service(web::to(method_not_allowed)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntex::web::test::{TestRequest, call_service, init_service, read_body};
    use ntex::web::{App, WebResponse};

    async fn get(path: &str, etag: Option<&str>) -> WebResponse {
        let app = init_service(App::new().configure(configure)).await;
        let mut req = TestRequest::get().uri(path);
        if let Some(tag) = etag {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        call_service(&app, req.to_request()).await
    }

    fn header_of(res: &WebResponse, name: header::HeaderName) -> &str {
        res.headers().get(name).unwrap().to_str().unwrap()
    }

    fn assert_secured(res: &WebResponse) {
        assert_eq!(
            header_of(res, header::CONTENT_SECURITY_POLICY),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header_of(res, header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(header_of(res, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header_of(res, header::REFERRER_POLICY), "no-referrer");
    }

    #[ntex::test]
    async fn root_and_bare_path_redirect_to_the_console() {
        for path in ["/", "/console"] {
            let res = get(path, None).await;
            assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT, "{path}");
            assert_eq!(header_of(&res, header::LOCATION), CONSOLE_PATH);
            assert_secured(&res);
        }
    }

    #[ntex::test]
    async fn every_asset_is_served_with_its_type_and_the_headers() {
        for asset in ASSETS {
            let res = get(&format!("/console/{}", asset.name), None).await;
            assert_eq!(res.status(), StatusCode::OK, "{}", asset.name);
            assert_eq!(header_of(&res, header::CONTENT_TYPE), asset.content_type);
            assert_eq!(header_of(&res, header::CACHE_CONTROL), "no-cache");
            assert_secured(&res);
            assert_eq!(read_body(res).await.as_ref(), asset.body, "{}", asset.name);
        }
        let res = get("/console/", None).await;
        assert_eq!(header_of(&res, header::CONTENT_TYPE), HTML);
    }

    #[ntex::test]
    async fn a_current_copy_is_revalidated_with_304() {
        let res = get("/console/app.js", None).await;
        let etag = header_of(&res, header::ETAG).to_string();
        let again = get("/console/app.js", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_secured(&again);
        assert!(read_body(again).await.is_empty());
        let other = get("/console/app.js", Some("\"0\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[ntex::test]
    async fn unknown_files_and_other_methods_are_refused() {
        let res = get("/console/nope.js", None).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_secured(&res);
        let app = init_service(App::new().configure(configure)).await;
        let res = call_service(
            &app,
            TestRequest::post().uri("/console/app.js").to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header_of(&res, header::ALLOW), "GET, HEAD");
    }

    /// Every module the page imports is embedded (a missing one would be a blank console).
    #[test]
    fn every_import_is_an_asset() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            let dir = asset.name.rsplit_once('/').map_or("", |(d, _)| d);
            for line in text.lines().filter(|l| l.contains(" from '")) {
                let target = line
                    .split(" from '")
                    .nth(1)
                    .unwrap()
                    .split('\'')
                    .next()
                    .unwrap();
                let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
                for part in target.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        p => parts.push(p),
                    }
                }
                let resolved = parts.join("/");
                assert!(
                    ASSETS.iter().any(|a| a.name == resolved),
                    "{} imports {target}, which is not embedded",
                    asset.name
                );
            }
        }
    }
}
