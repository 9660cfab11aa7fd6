//! `/graphql`: queries over POST and GET, and GraphiQL for browsers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::BatchRequest;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql_axum::GraphQLBatchRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::Router;
use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::multipart::{self, is_multipart};
use super::{AppState, Shared};
use crate::error::AppError;
use crate::graphql::RequestContext;
use crate::graphql::compiled::StatusPlan;
use crate::graphql::spans::first_error_code;

pub fn router() -> Router<Shared> {
    Router::new().route("/graphql", get(graphql_get).post(graphql))
}

fn is_websocket(req: &Request) -> bool {
    req.headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `GET /graphql`: a WebSocket upgrade (subscriptions), a browser asking for GraphiQL, or a
/// GraphQL GET request.
async fn graphql_get(state: State<Shared>, req: Request) -> Response {
    if is_websocket(&req) {
        let Some(protocol) = super::ws::protocol(req.headers()) else {
            return (
                StatusCode::BAD_REQUEST,
                "offer the graphql-transport-ws or graphql-ws subprotocol",
            )
                .into_response();
        };
        let peer = super::Peer::of(req.extensions());
        let (mut parts, _) = req.into_parts();
        return match WebSocketUpgrade::from_request_parts(&mut parts, &state.0).await {
            Ok(ws) => super::ws::upgrade(state.0, protocol, ws, peer),
            Err(e) => e.into_response(),
        };
    }
    let wants_html = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if wants_html && req.method() == Method::GET {
        return Html(super::playground::graphiql_html("/graphql")).into_response();
    }
    graphql(state, req).await
}

/// The most an unauthenticated client may send (enough for GraphiQL's introspection query).
const ANONYMOUS_BODY_LIMIT: usize = 64 * 1024;

/// Authenticates before executing anything. Without a valid key, the only thing that runs is a
/// pure introspection query (the schema is public: it is `schema.graphql`), so GraphiQL can show
/// the docs before a key is pasted; its body is read only up to [`ANONYMOUS_BODY_LIMIT`].
/// Anything else gets 401 with `UNAUTHENTICATED`.
async fn graphql(State(state): State<Shared>, req: Request) -> Response {
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let is_get = req.method() == Method::GET;
    if !is_get && !req.headers().contains_key(axum::http::header::CONTENT_TYPE) {
        // GraphQL over HTTP: a POST says what its body is.
        let mut res = AppError::BadUserInput(
            "a POST needs `Content-Type: application/json` (or multipart/form-data for uploads)"
                .into(),
        )
        .into_response();
        *res.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return res;
    }
    let peer = super::Peer::of(req.extensions());
    let org = match state.authorize(req.headers(), peer).await {
        Ok(org) => org,
        Err(e @ AppError::Unauthenticated(_)) if is_multipart(&req) => return e.into_response(),
        Err(e @ AppError::Unauthenticated(_)) => {
            let Ok(req) = limit_body(req, ANONYMOUS_BODY_LIMIT).await else {
                return e.into_response();
            };
            let Ok(batch) = parse(req, &state).await else {
                return e.into_response();
            };
            if !matches!(batch, BatchRequest::Single(_)) {
                return e.into_response();
            }
            let docs = prepare(&batch, &state.docs);
            if !(state.limits.introspection && docs.iter().all(|d| d.introspection_only)) {
                return e.into_response();
            }
            // Held to the same limits as any request (one operation, depth, aliases,
            // complexity), and limited per client address, before it runs.
            if let Err(refused) =
                check_limits(&docs, &state.limits).and_then(|()| state.anonymous_work(peer))
            {
                return refused.into_response();
            }
            return run(&state, batch, &docs, None, &accept).await;
        }
        Err(e) => return e.into_response(),
    };
    let batch = if is_multipart(&req) {
        // Multipart bodies carry uploads, which only READ_WRITE keys may make: refuse the
        // others before reading a byte of the file.
        if let Err(e) = org.require_write() {
            return e.into_response();
        }
        match multipart::graphql_request(req, &state.uploads).await {
            Ok(batch) => batch,
            Err(e) => return e.into_response(),
        }
    } else {
        let req = match limit_body(req, state.uploads.max_field_bytes).await {
            Ok(req) => req,
            Err(e) => return e.into_response(),
        };
        match parse(req, &state).await {
            Ok(batch) => batch,
            Err(rejection) => return rejection,
        }
    };
    let docs = prepare(&batch, &state.docs);
    if let Err(e) = check_limits(&docs, &state.limits) {
        return e.into_response();
    }
    if is_get && docs.iter().any(|d| d.has_mutation) {
        // GraphQL over HTTP: GET is for queries only.
        let mut res =
            AppError::BadUserInput("mutations must be sent with POST".into()).into_response();
        *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        res.headers_mut()
            .insert(axum::http::header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    if let Some(res) = answer_compiled(&state, &batch, &docs, &org, &accept).await {
        return res;
    }
    run(&state, batch, &docs, Some(org), &accept).await
}

/// Executes a request's operations with async-graphql and answers: each gets its parsed
/// document, its errors their codes, its name and outcome counted. With the caller's org
/// (anonymous requests run introspection only), a single operation that succeeded proves its
/// document valid, so its compiled plan may answer from then on.
async fn run(
    state: &AppState,
    mut batch: BatchRequest,
    docs: &[DocSummary],
    org: Option<crate::domain::OrgContext>,
    accept: &str,
) -> Response {
    hand_parsed(&mut batch, docs);
    let signed_in = org.is_some();
    if let Some(org) = org {
        batch = batch.data(RequestContext::new(state.service.clone(), org));
    }
    let mut res = execute(state, batch, docs).await;
    code_client_errors(&mut res);
    if signed_in
        && let async_graphql::BatchResponse::Single(r) = &res
        && r.errors.is_empty()
        && let [doc] = docs
        && let Some(parsed) = &doc.parsed
    {
        parsed.proven.store(true, Ordering::Relaxed);
    }
    for (doc, r) in docs.iter().zip(responses(&res)) {
        state
            .service
            .metrics()
            .observe_operation(&doc.name, &first_error_code(r));
    }
    respond(res, accept, state.limits.max_response_bytes)
}

/// A single request whose document compiled to a status plan, proven valid, answered by the
/// plan (see `graphql::compiled`); `None` when it is to be executed by async-graphql.
async fn answer_compiled(
    state: &AppState,
    batch: &BatchRequest,
    docs: &[DocSummary],
    org: &crate::domain::OrgContext,
    accept: &str,
) -> Option<Response> {
    let (BatchRequest::Single(request), [doc]) = (batch, docs) else {
        return None;
    };
    let parsed = doc.parsed.as_ref()?;
    let plan = parsed.plan.as_ref()?;
    if !parsed.proven.load(Ordering::Relaxed) {
        return None;
    }
    let answer = plan.answer(&state.service, org, request, state.limits.max_complexity);
    let body = crate::graphql::spans::traced_compiled(answer, &doc.name).await?;
    let metrics = state.service.metrics();
    metrics.count_compiled_answer();
    if body.len() > state.limits.max_response_bytes {
        metrics.observe_operation(&doc.name, "RESPONSE_TOO_LARGE");
        return Some(too_large(body.len(), state.limits.max_response_bytes));
    }
    metrics.observe_operation(&doc.name, "OK");
    let media = if accept.contains(GRAPHQL_RESPONSE_JSON) {
        GRAPHQL_RESPONSE_JSON
    } else {
        "application/json"
    };
    Some(
        (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, media)],
            body,
        )
            .into_response(),
    )
}

/// Each operation in its own span, with its log line; a batch's operations run concurrently,
/// as async-graphql runs them.
async fn execute(
    state: &AppState,
    batch: BatchRequest,
    docs: &[DocSummary],
) -> async_graphql::BatchResponse {
    use crate::graphql::spans::traced;
    let name = |i: usize| docs.get(i).map_or("anonymous", |d| d.name.as_str());
    match batch {
        BatchRequest::Single(r) => {
            async_graphql::BatchResponse::Single(traced(&state.schema, r, name(0)).await)
        }
        BatchRequest::Batch(rs) => async_graphql::BatchResponse::Batch(
            futures_util::future::join_all(
                rs.into_iter()
                    .enumerate()
                    .map(|(i, r)| traced(&state.schema, r, name(i))),
            )
            .await,
        ),
    }
}

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The response per the GraphQL-over-HTTP spec: a client that accepts
/// `application/graphql-response+json` gets that media type, and 400 when the request failed
/// before execution (parse or validation: errors without a path, no data); anything else gets
/// the legacy `application/json` with 200.
fn respond(res: async_graphql::BatchResponse, accept: &str, max_bytes: usize) -> Response {
    let legacy = !accept.contains(GRAPHQL_RESPONSE_JSON);
    let request_error = |r: &async_graphql::Response| {
        r.data == async_graphql::Value::Null
            && !r.errors.is_empty()
            && r.errors.iter().all(|e| e.path.is_empty())
    };
    let all = responses(&res);
    let failed = !all.is_empty() && all.iter().all(request_error);
    // The database is down and nothing could be answered: 503, as the other doors say it.
    let unavailable = !all.is_empty()
        && all.iter().all(|r| {
            !r.errors.is_empty()
                && r.errors.iter().all(|e| {
                    e.extensions
                        .as_ref()
                        .and_then(|x| x.get("code"))
                        .is_some_and(|c| *c == async_graphql::Value::from("UNAVAILABLE"))
                })
        });
    let (status, media) = match (legacy, failed) {
        (true, _) => (StatusCode::OK, "application/json"),
        (false, true) => (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE_JSON),
        (false, false) => (StatusCode::OK, GRAPHQL_RESPONSE_JSON),
    };
    let body = if !legacy && failed {
        // A request error has no `data` at all in the GraphQL response media type.
        without_data(&res)
    } else {
        serde_json::to_vec(&res)
    };
    let (status, retry) = if unavailable {
        (StatusCode::SERVICE_UNAVAILABLE, Some("2"))
    } else {
        (status, None)
    };
    match body {
        Ok(body) if body.len() > max_bytes => too_large(body.len(), max_bytes),
        Ok(body) => {
            let mut res =
                (status, [(axum::http::header::CONTENT_TYPE, media)], body).into_response();
            if let Some(secs) = retry {
                res.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from_static(secs),
                );
            }
            res
        }
        Err(e) => AppError::Internal(e.into()).into_response(),
    }
}

/// An answer over the response size limit, replaced: 200 with one error and no data (the
/// request was valid; the client asks for less), as `application/json`, which every client reads.
fn too_large(bytes: usize, max_bytes: usize) -> Response {
    tracing::warn!(
        bytes,
        max_bytes,
        "response over the size limit; replaced by an error"
    );
    let body = serde_json::json!({
        "data": null,
        "errors": [{
            "message": format!(
                "the response would be {bytes} bytes, over the limit of {max_bytes}; ask for \
                 fewer items (a smaller `first`) or fewer fields"
            ),
            "extensions": { "code": "RESPONSE_TOO_LARGE" },
        }],
    });
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The response as JSON with each operation's `data` key removed.
fn without_data(res: &async_graphql::BatchResponse) -> serde_json::Result<Vec<u8>> {
    let mut value = serde_json::to_value(res)?;
    let drop_data = |v: &mut serde_json::Value| {
        if let Some(map) = v.as_object_mut() {
            map.remove("data");
        }
    };
    match &mut value {
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_data),
        other => drop_data(other),
    }
    serde_json::to_vec(&value)
}

/// Reads a (non-multipart) body up to `limit` bytes: past it, `PAYLOAD_TOO_LARGE`, after
/// reading and discarding the rest (up to the multipart drain limit), so a client still sending
/// gets the 413 rather than a broken pipe.
async fn limit_body(req: Request, limit: usize) -> Result<Request, AppError> {
    use futures_util::StreamExt;
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            // The client went away mid-body: nothing to answer.
            return Err(AppError::BadUserInput(
                "the request body was cut short".into(),
            ));
        };
        if bytes.len() + chunk.len() > limit {
            let mut drained = (bytes.len() + chunk.len()) as u64;
            while drained <= multipart::DRAIN_LIMIT {
                match stream.next().await {
                    Some(Ok(c)) => drained += c.len() as u64,
                    _ => break,
                }
            }
            return Err(AppError::PayloadTooLarge(format!(
                "the request body is larger than {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Request::from_parts(
        parts,
        axum::body::Body::from(bytes.freeze()),
    ))
}

async fn parse(req: Request, state: &AppState) -> Result<BatchRequest, Response> {
    GraphQLBatchRequest::<GraphQLRejection>::from_request(req, state)
        .await
        .map(|b| b.into_inner())
        .map_err(IntoResponse::into_response)
}

/// Our own errors all carry `extensions.code`; the ones that do not come from async-graphql's
/// parsing, validation and input coercion, which are the client's mistakes: `BAD_USER_INPUT`.
fn code_client_errors(res: &mut async_graphql::BatchResponse) {
    for r in responses_mut(res) {
        for e in &mut r.errors {
            let ext = e.extensions.get_or_insert_with(Default::default);
            if ext.get("code").is_none() {
                ext.set("code", "BAD_USER_INPUT");
            }
        }
    }
}

/// Limits the schema does not check itself: batch size and aliases. (Depth and complexity are
/// the schema's, see `GraphqlLimits`.)
fn check_limits(
    docs: &[DocSummary],
    limits: &crate::graphql::GraphqlLimits,
) -> Result<(), AppError> {
    if docs.len() > limits.max_batch {
        return Err(AppError::BadUserInput(format!(
            "a batch may hold at most {} operations, this one has {}",
            limits.max_batch,
            docs.len()
        )));
    }
    if docs.iter().any(|d| d.aliases > limits.max_aliases) {
        return Err(AppError::BadUserInput(format!(
            "a request may use at most {} aliases",
            limits.max_aliases
        )));
    }
    Ok(())
}

/// A batch's responses, a single one as a batch of one.
fn responses(res: &async_graphql::BatchResponse) -> &[async_graphql::Response] {
    match res {
        async_graphql::BatchResponse::Single(r) => std::slice::from_ref(r),
        async_graphql::BatchResponse::Batch(rs) => rs,
    }
}

fn responses_mut(res: &mut async_graphql::BatchResponse) -> &mut [async_graphql::Response] {
    match res {
        async_graphql::BatchResponse::Single(r) => std::slice::from_mut(r),
        async_graphql::BatchResponse::Batch(rs) => rs,
    }
}

/// A batch's requests, a single one as a batch of one.
fn requests(batch: &BatchRequest) -> &[async_graphql::Request] {
    match batch {
        BatchRequest::Single(r) => std::slice::from_ref(r),
        BatchRequest::Batch(rs) => rs,
    }
}

fn requests_mut(batch: &mut BatchRequest) -> &mut [async_graphql::Request] {
    match batch {
        BatchRequest::Single(r) => std::slice::from_mut(r),
        BatchRequest::Batch(rs) => rs,
    }
}

/// What the handler needs to know of one request's document.
#[derive(Clone)]
struct DocSummary {
    /// The requested `operationName`, else the document's only operation's name, else
    /// `anonymous`.
    name: String,
    aliases: usize,
    has_mutation: bool,
    /// Every operation selects only `__schema`, `__type` or `__typename` at its root.
    introspection_only: bool,
    parsed: Option<Arc<ParsedDoc>>,
}

/// Documents parsed lately, by their text, with what [`DocSummary`] reads of them: a client
/// sends the same few queries over and over, and parsing is a large share of a small query's
/// cost. Bounded: at most [`DOC_CACHE_ENTRIES`] documents of at most [`DOC_CACHE_MAX_LEN`]
/// bytes, the least used evicted first.
pub struct DocCache {
    docs: quick_cache::sync::Cache<String, Arc<ParsedDoc>>,
}

impl Default for DocCache {
    fn default() -> Self {
        Self {
            docs: quick_cache::sync::Cache::new(DOC_CACHE_ENTRIES),
        }
    }
}

struct ParsedDoc {
    doc: ExecutableDocument,
    /// The document compiled, if it is a status query that can be (see `graphql::compiled`).
    plan: Option<StatusPlan>,
    /// async-graphql has executed the document without errors: it is valid, and its plan
    /// may answer.
    proven: AtomicBool,
    /// The first operation's name.
    first_name: Option<String>,
    aliases: usize,
    has_mutation: bool,
    introspection_only: bool,
}

const DOC_CACHE_ENTRIES: usize = 256;
const DOC_CACHE_MAX_LEN: usize = 16 * 1024;

impl DocCache {
    fn get_or_parse(&self, query: &str) -> Option<Arc<ParsedDoc>> {
        if let Some(hit) = self.docs.get(query) {
            return Some(hit);
        }
        // A document that does not parse is reported by execution, not here.
        let doc = Arc::new(ParsedDoc::read(
            async_graphql::parser::parse_query(query).ok()?,
        ));
        if query.len() <= DOC_CACHE_MAX_LEN {
            self.docs.insert(query.to_owned(), doc.clone());
        }
        Some(doc)
    }
}

impl ParsedDoc {
    fn read(doc: ExecutableDocument) -> Self {
        use async_graphql::parser::types::{OperationType, Selection};
        let ops = || doc.operations.iter();
        Self {
            plan: StatusPlan::compile(&doc),
            proven: AtomicBool::new(false),
            first_name: ops()
                .next()
                .and_then(|(name, _)| name.map(|n| n.to_string())),
            aliases: crate::graphql::gate::count_aliases(&doc),
            has_mutation: ops().any(|(_, op)| op.node.ty == OperationType::Mutation),
            introspection_only: ops().all(|(_, op)| {
                op.node
                    .selection_set
                    .node
                    .items
                    .iter()
                    .all(|sel| match &sel.node {
                        Selection::Field(f) => f.node.name.node.starts_with("__"),
                        _ => false,
                    })
            }),
            doc,
        }
    }
}

/// Parses each request's document once (or takes it from the cache); returns what the handler
/// checks, with the parsed document.
fn prepare(batch: &BatchRequest, cache: &DocCache) -> Vec<DocSummary> {
    requests(batch)
        .iter()
        .map(|r| {
            let parsed = cache.get_or_parse(&r.query);
            DocSummary {
                name: r
                    .operation_name
                    .clone()
                    .or_else(|| parsed.as_ref().and_then(|p| p.first_name.clone()))
                    .unwrap_or_else(|| "anonymous".into()),
                aliases: parsed.as_ref().map_or(0, |p| p.aliases),
                has_mutation: parsed.as_ref().is_some_and(|p| p.has_mutation),
                introspection_only: parsed.as_ref().is_some_and(|p| p.introspection_only),
                parsed,
            }
        })
        .collect()
}

/// Hands each request its parsed document, so the schema does not parse it again (a copy: the
/// executor takes it by value). Only for requests the executor runs.
fn hand_parsed(batch: &mut BatchRequest, docs: &[DocSummary]) {
    for (r, d) in requests_mut(batch).iter_mut().zip(docs) {
        if let Some(p) = &d.parsed {
            r.set_parsed_query(p.doc.clone());
        }
    }
}
