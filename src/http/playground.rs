//! Self-hosted GraphiQL playground.
//!
//! Everything the page needs (GraphiQL 3, React 18, graphql-ws 5) is embedded
//! in the binary from `assets/graphiql/` and served under
//! [`ASSETS_PREFIX`]; the page never touches a CDN, so it works offline.
//! See `assets/graphiql/README.md` for the exact versions and how to refresh
//! them.
//!
//! Wiring (done by the HTTP layer, not here):
//!
//! ```ignore
//! Router::new()
//!     .route("/graphql", get(playground::graphiql).post(graphql_handler))
//!     .merge(playground::router())
//! ```

use axum::{
    Router,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};

/// URL path (relative to the site root) under which the GraphiQL assets are
/// served. Each asset is at `{ASSETS_PREFIX}/{file name}`.
pub const ASSETS_PREFIX: &str = "/graphiql/assets";

/// Endpoint the playground served by [`graphiql`] talks to (POST for queries
/// and mutations, WebSocket `graphql-transport-ws` for subscriptions).
pub const GRAPHQL_ENDPOINT: &str = "/graphql";

/// Query pre-filled in the editor the first time the playground is opened
/// (GraphiQL keeps the user's own tabs in localStorage afterwards).
pub const DEFAULT_QUERY: &str = r#"# Paste your API key in the Headers tab below, then run.
query UploadStatus($couponSeriesId: ID! = "2") {
  uploadStatus(couponSeriesId: $couponSeriesId) {
    orgId
    couponSeriesId
    uploadJobStatuses(first: 10) {
      jobId uploadStatus createdOn updatedOn
      actualRowCount totalUploadedCount errorCount
      uploadedFileName uploadTableName
      errorFileUrl successFileUrl uploadedFileUrl
      customerIdentifier
      audienceGroup { id name customerCount }
      audienceGroupVersion { id versionNumber customerCount }
    }
  }
}
"#;

/// Headers pre-filled in the headers editor when none were saved yet.
pub const DEFAULT_HEADERS: &str = r#"{
  "Authorization": "Bearer <paste your API key>"
}"#;

const CONTENT_TYPE_JS: &str = "text/javascript; charset=utf-8";
const CONTENT_TYPE_CSS: &str = "text/css; charset=utf-8";
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// One embedded static file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The embedded asset table. File names are the packages' original names;
/// the page adds `?v=<package version>` to each URL so browsers holding an
/// `immutable` cached copy pick up a refreshed file.
static ASSETS: &[Asset] = &[
    Asset {
        name: "graphiql.min.css",
        content_type: CONTENT_TYPE_CSS,
        bytes: include_bytes!("../../assets/graphiql/graphiql.min.css"),
    },
    Asset {
        name: "graphiql.min.js",
        content_type: CONTENT_TYPE_JS,
        bytes: include_bytes!("../../assets/graphiql/graphiql.min.js"),
    },
    Asset {
        name: "react.production.min.js",
        content_type: CONTENT_TYPE_JS,
        bytes: include_bytes!("../../assets/graphiql/react.production.min.js"),
    },
    Asset {
        name: "react-dom.production.min.js",
        content_type: CONTENT_TYPE_JS,
        bytes: include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    },
    Asset {
        name: "graphql-ws.min.js",
        content_type: CONTENT_TYPE_JS,
        bytes: include_bytes!("../../assets/graphiql/graphql-ws.min.js"),
    },
];

fn find_asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// Routes serving the embedded assets at `GET /graphiql/assets/{file}`
/// (HEAD is answered too). Unknown files get `404`.
///
/// The page itself is not routed here: mount [`graphiql`] at
/// `GET /graphql` next to the POST handler.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/graphiql/assets/{file}", get(serve_asset))
}

async fn serve_asset(Path(file): Path<String>) -> Response {
    match find_asset(&file) {
        Some(asset) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(asset.content_type),
                ),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(CACHE_FOREVER),
                ),
                (
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ),
            ],
            asset.bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /graphql`: the GraphiQL page, talking to [`GRAPHQL_ENDPOINT`].
pub async fn graphiql() -> Html<String> {
    Html(graphiql_html(GRAPHQL_ENDPOINT))
}

/// The complete GraphiQL page for `endpoint` (a same-origin path such as
/// `/graphql`). Subscriptions go over WebSocket to the same path
/// (`ws://` or `wss://` matching the page's scheme).
pub fn graphiql_html(endpoint: &str) -> String {
    graphiql_html_with_subscriptions(endpoint, endpoint)
}

/// Like [`graphiql_html`], with a separate path for the WebSocket
/// (`graphql-transport-ws`) subscription endpoint.
pub fn graphiql_html_with_subscriptions(endpoint: &str, subscription_endpoint: &str) -> String {
    PAGE_TEMPLATE
        .replace("__ENDPOINT__", &js_string(endpoint))
        .replace(
            "__SUBSCRIPTION_ENDPOINT__",
            &js_string(subscription_endpoint),
        )
        .replace("__DEFAULT_QUERY__", &js_string(DEFAULT_QUERY))
        .replace("__DEFAULT_HEADERS__", &js_string(DEFAULT_HEADERS))
}

/// `s` as a double-quoted JavaScript string literal that is also safe to put
/// inside an HTML `<script>` element: quotes, backslashes, control
/// characters, `<`, `>`, `&` and the JS line separators are `\u` escaped,
/// so nothing in `s` can end the string or the script element.
fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Control characters are all below U+00A0: four hex digits suffice.
            '<' | '>' | '&' | '\'' | '\u{2028}' | '\u{2029}' => push_u_escape(&mut out, c),
            c if c.is_control() => push_u_escape(&mut out, c),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn push_u_escape(out: &mut String, c: char) {
    use std::fmt::Write as _;
    let _ = write!(out, "\\u{:04x}", u32::from(c));
}

/// The page. `__NAME__` placeholders are replaced with JS string literals
/// by [`graphiql_html_with_subscriptions`]. Asset URLs carry the package
/// version as a cache buster (the route ignores the query string).
const PAGE_TEMPLATE: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <title>Coupon Upload API · GraphiQL</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="/graphiql/assets/graphiql.min.css?v=3.9.0">
  <style>
    html, body { height: 100%; margin: 0; overflow: hidden; }
    #graphiql { height: 100vh; }
    .playground-message { font: 14px/1.5 system-ui, sans-serif; padding: 2rem; }
  </style>
</head>
<body>
  <div id="graphiql">
    <p class="playground-message">Loading GraphiQL…</p>
    <noscript><p class="playground-message">GraphiQL needs JavaScript.</p></noscript>
  </div>

  <script src="/graphiql/assets/react.production.min.js?v=18.3.1"></script>
  <script src="/graphiql/assets/react-dom.production.min.js?v=18.3.1"></script>
  <script src="/graphiql/assets/graphql-ws.min.js?v=5.16.2"></script>
  <script src="/graphiql/assets/graphiql.min.js?v=3.9.0"></script>
  <script>
  (function () {
    "use strict";

    var ENDPOINT = __ENDPOINT__;
    var SUBSCRIPTION_ENDPOINT = __SUBSCRIPTION_ENDPOINT__;
    var DEFAULT_QUERY = __DEFAULT_QUERY__;
    var DEFAULT_HEADERS = __DEFAULT_HEADERS__;
    // GraphiQL's default storage namespace is "graphiql"; with
    // shouldPersistHeaders it keeps the headers editor text here.
    var SAVED_HEADERS_KEY = "graphiql:headers";

    var container = document.getElementById("graphiql");
    if (!window.React || !window.ReactDOM || !window.GraphiQL || !window.graphqlWs) {
      container.innerHTML =
        '<p class="playground-message">Could not load the GraphiQL assets.</p>';
      return;
    }

    // Same origin: http(s)://host/graphql for queries and mutations,
    // ws(s)://host/graphql for subscriptions.
    var url = new URL(ENDPOINT, window.location.href).toString();
    var wsUrl = new URL(SUBSCRIPTION_ENDPOINT, window.location.href);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    var subscriptionUrl = wsUrl.toString();

    function authorizationOf(headers) {
      if (!headers || typeof headers !== "object") return undefined;
      for (var name in headers) {
        if (Object.prototype.hasOwnProperty.call(headers, name) &&
            name.toLowerCase() === "authorization" && headers[name] != null) {
          return String(headers[name]);
        }
      }
      return undefined;
    }

    function savedHeaders() {
      try {
        return JSON.parse(window.localStorage.getItem(SAVED_HEADERS_KEY) || "null");
      } catch (e) {
        return null;
      }
    }

    // One graphql-ws client per Authorization value: GraphiQL hands the
    // fetcher the parsed headers editor content on every request, and the
    // WebSocket carries the API key in connectionParams (browsers cannot set
    // headers on a WebSocket). When the key changes, the old socket is closed
    // and the next subscription connects with the new one.
    var current = null;

    function fetcherFor(headers) {
      var authorization = authorizationOf(headers);
      if (authorization === undefined) authorization = authorizationOf(savedHeaders());
      if (current && current.authorization === authorization) return current.fetcher;
      if (current) current.wsClient.dispose();
      var wsClient = graphqlWs.createClient({
        url: subscriptionUrl,
        lazy: true,
        connectionParams: function () {
          return authorization === undefined ? {} : { Authorization: authorization };
        }
      });
      current = {
        authorization: authorization,
        wsClient: wsClient,
        fetcher: GraphiQL.createFetcher({
          url: url,
          subscriptionUrl: subscriptionUrl,
          wsClient: wsClient
        })
      };
      return current.fetcher;
    }

    function fetcher(graphQLParams, options) {
      return fetcherFor(options && options.headers)(graphQLParams, options);
    }

    ReactDOM.createRoot(container).render(
      React.createElement(GraphiQL, {
        fetcher: fetcher,
        defaultQuery: DEFAULT_QUERY,
        defaultHeaders: DEFAULT_HEADERS,
        isHeadersEditorEnabled: true,
        shouldPersistHeaders: true,
        defaultEditorToolsVisibility: "headers"
      })
    );
  })();
  </script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `/graphiql/assets/...` path the page references, without the
    /// `?v=` query string.
    fn referenced_assets(html: &str) -> Vec<String> {
        let prefix = format!("{ASSETS_PREFIX}/");
        html.match_indices(&prefix)
            .map(|(start, _)| {
                let rest = &html[start..];
                let end = rest.find(['"', '?', '\'', ' ', '>']).unwrap_or(rest.len());
                rest[..end].to_owned()
            })
            .collect()
    }

    #[test]
    fn page_references_only_embedded_assets() {
        let html = graphiql_html(GRAPHQL_ENDPOINT);
        let referenced = referenced_assets(&html);
        assert_eq!(referenced.len(), ASSETS.len(), "{referenced:?}");
        for path in &referenced {
            let name = path.strip_prefix(&format!("{ASSETS_PREFIX}/")).unwrap();
            let asset = find_asset(name).unwrap_or_else(|| panic!("{path} is not embedded"));
            assert!(!asset.bytes.is_empty(), "{path} is empty");
        }
        for asset in ASSETS {
            assert!(
                referenced.iter().any(|p| p.ends_with(asset.name)),
                "{} is embedded but unused",
                asset.name
            );
        }
    }

    #[test]
    fn page_has_no_remote_urls() {
        let html = graphiql_html(GRAPHQL_ENDPOINT);
        assert!(!html.contains("http://"), "page contains an http:// URL");
        assert!(!html.contains("https://"), "page contains an https:// URL");
        assert!(!html.contains("//cdn") && !html.contains("unpkg") && !html.contains("jsdelivr"));
    }

    #[test]
    fn page_is_filled_in() {
        let html = graphiql_html(GRAPHQL_ENDPOINT);
        assert!(!html.contains("__ENDPOINT__"));
        assert!(!html.contains("__SUBSCRIPTION_ENDPOINT__"));
        assert!(!html.contains("__DEFAULT_QUERY__"));
        assert!(!html.contains("__DEFAULT_HEADERS__"));
        assert!(html.contains(r#"var ENDPOINT = "/graphql";"#));
        assert!(html.contains("isHeadersEditorEnabled: true"));
        assert!(html.contains("shouldPersistHeaders: true"));
        assert!(html.contains(&js_string(DEFAULT_QUERY)));
        assert!(html.contains("Bearer \\u003cpaste your API key\\u003e"));
        assert!(DEFAULT_QUERY.contains("uploadStatus(couponSeriesId: $couponSeriesId)"));
    }

    #[test]
    fn endpoint_cannot_break_out_of_the_script() {
        let html = graphiql_html("/x\"</script><script>alert(1)</script>'\\\u{2028}");
        assert_eq!(html.matches("</script>").count(), 5);
        assert!(html.contains(
            r#"var ENDPOINT = "/x\"\u003c/script\u003e\u003cscript\u003ealert(1)\u003c/script\u003e\u0027\\\u2028";"#
        ));
        assert_eq!(js_string("a\u{1}b\nc"), r#""a\u0001b\nc""#);
    }

    #[test]
    fn asset_table_is_sane() {
        for asset in ASSETS {
            assert!(!asset.bytes.is_empty(), "{} is empty", asset.name);
            let expected = if asset.name.ends_with(".css") {
                CONTENT_TYPE_CSS
            } else {
                assert!(asset.name.ends_with(".js"), "{}", asset.name);
                CONTENT_TYPE_JS
            };
            assert_eq!(asset.content_type, expected, "{}", asset.name);
        }
        assert!(find_asset("nope.js").is_none());
        assert!(find_asset("../graphiql.min.js").is_none());
    }

    /// Serves `router()` on a loopback port and fetches every asset the page
    /// references (and one that does not exist).
    #[tokio::test]
    async fn router_serves_every_referenced_asset() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router::<()>().route("/graphql", get(graphiql));
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = reqwest::Client::new();
        let base = format!("http://{addr}");

        let page = client.get(format!("{base}/graphql")).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert_eq!(html, graphiql_html(GRAPHQL_ENDPOINT));

        for path in referenced_assets(&html) {
            let name = path.rsplit('/').next().unwrap();
            let asset = find_asset(name).unwrap();
            let response = client
                .get(format!("{base}{path}?v=1"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], asset.content_type, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], CACHE_FOREVER, "{path}");
            let body = response.bytes().await.unwrap();
            assert_eq!(body.len(), asset.bytes.len(), "{path}");
        }

        let missing = client
            .get(format!("{base}{ASSETS_PREFIX}/missing.js"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);

        server.abort();
    }
}
