//! GraphQL over WebSocket on `/graphql`: `graphql-transport-ws` (the `graphql-ws` npm client,
//! GraphiQL) and the legacy `graphql-ws` protocol (subscriptions-transport-ws).
//!
//! The key comes in the `connection_init` payload (`{"Authorization": "Bearer <key>"}`, or the
//! bare key under `"token"`); a bad key closes the socket with 4403 and a reason starting with
//! `UNAUTHENTICATED`. On shutdown every socket is closed cleanly (1001, going away).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{
    ALL_WEBSOCKET_PROTOCOLS, WebSocket as GqlWebSocket, WebSocketProtocols, WsMessage,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use super::Shared;
use crate::error::AppError;
use crate::graphql::RequestContext;

/// Limits on WebSocket connections.
#[derive(Clone, Debug)]
pub struct WsLimits {
    /// Open (initialised) connections one API key may hold; past it the socket closes with 4429.
    pub max_per_key: usize,
    /// How often an open socket's key is checked again (a revoked key closes it with 4403).
    pub recheck: Duration,
    /// A socket with no operation in flight and no message either way for this long is closed
    /// (1000, idle). Sockets with a live subscription stay open however quiet.
    pub idle_timeout: Duration,
    /// A socket that has not sent `connection_init` by then is closed (4408), so idle
    /// unauthenticated sockets do not pile up.
    pub init_timeout: Duration,
    /// The largest message (and frame) a client may send; a larger one closes the socket with
    /// 1009 before it is parsed.
    pub max_message_bytes: usize,
    /// Sockets not yet authenticated, per client address and in all; past either the upgrade
    /// is refused with 429.
    pub max_unauthenticated_per_ip: usize,
    pub max_unauthenticated: usize,
    /// Operations one socket may have in flight; past it the socket closes with 4429.
    pub max_operations: usize,
}

impl Default for WsLimits {
    fn default() -> Self {
        Self {
            max_per_key: 20,
            recheck: Duration::from_secs(30),
            init_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_message_bytes: 64 * 1024,
            max_unauthenticated_per_ip: 16,
            max_unauthenticated: 1024,
            max_operations: 100,
        }
    }
}

/// Sockets counted by `K` (an API key's id, or a client address for sockets not yet
/// authenticated), with their total.
pub struct Slots<K> {
    counts: Mutex<(HashMap<K, usize>, usize)>,
}

impl<K> Default for Slots<K> {
    fn default() -> Self {
        Self {
            counts: Mutex::new((HashMap::new(), 0)),
        }
    }
}

/// One socket's place in its [`Slots`]; given back when dropped.
pub struct Slot<K: Hash + Eq> {
    of: Arc<Slots<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Slots<K> {
    /// A place under `key`, unless `key` holds `per_key` already or all keys `total`.
    pub fn take(this: &Arc<Self>, key: K, per_key: usize, total: usize) -> Option<Slot<K>> {
        let mut guard = this.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (by_key, all) = &mut *guard;
        if *all >= total || by_key.get(&key).is_some_and(|n| *n >= per_key) {
            return None;
        }
        *by_key.entry(key.clone()).or_default() += 1;
        *all += 1;
        Some(Slot {
            of: this.clone(),
            key,
        })
    }
}

impl<K: Hash + Eq> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut guard = self.of.counts.lock().unwrap_or_else(|p| p.into_inner());
        let (by_key, all) = &mut *guard;
        if let Some(n) = by_key.get_mut(&self.key) {
            *n -= 1;
            *all -= 1;
            if *n == 0 {
                by_key.remove(&self.key);
            }
        }
    }
}

/// Open sockets per API key.
pub type WsCounts = Arc<Slots<i64>>;

/// Sockets upgraded but not yet authenticated, per client address.
pub type Unauthenticated = Slots<std::net::IpAddr>;

/// What a socket is doing, for the idle timeout.
struct Activity {
    operations: std::collections::HashSet<String>,
    last: std::time::Instant,
    /// Messages the client sent.
    received: u64,
    /// The client sent a message or frame over the size limit.
    too_large: bool,
    /// The client has sent `connection_init`.
    init_sent: bool,
    /// The client sent something other than `connection_init` (or a ping) before it.
    premature: bool,
}

/// What the socket reads of a client's message itself: its `type` and `id`, borrowed; the rest
/// (a payload, say) is skipped without being built. Before `connection_init`, the `type` is all
/// that decides what happens to a message.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<std::borrow::Cow<'a, str>>,
}

impl Activity {
    fn new() -> Self {
        Self {
            operations: Default::default(),
            last: std::time::Instant::now(),
            received: 0,
            too_large: false,
            init_sent: false,
            premature: false,
        }
    }

    fn message(bytes: &[u8]) -> Option<(String, String)> {
        let head: Head = serde_json::from_slice(bytes).ok()?;
        Some((
            head.kind?.into_owned(),
            head.id.map(|i| i.into_owned()).unwrap_or_default(),
        ))
    }

    fn client_message(&mut self, bytes: &[u8]) {
        self.last = std::time::Instant::now();
        self.received += 1;
        let message = Self::message(bytes);
        if !self.init_sent {
            match message.as_ref().map(|(t, _)| t.as_str()) {
                Some("connection_init") => self.init_sent = true,
                Some("ping" | "pong") => {}
                // Anything else (an operation, or not a message) before the socket is
                // initialised: it is not handed on, and the socket closes with 4401.
                _ => self.premature = true,
            }
            return;
        }
        match message {
            Some((t, id)) if t == "subscribe" || t == "start" => {
                self.operations.insert(id);
            }
            Some((t, id)) if t == "complete" || t == "stop" => {
                self.operations.remove(&id);
            }
            _ => {}
        }
    }

    fn server_message(&mut self, bytes: &[u8]) {
        self.last = std::time::Instant::now();
        if let Some((t, id)) = Self::message(bytes)
            && (t == "complete" || t == "error")
        {
            self.operations.remove(&id);
        }
    }

    /// How long the socket has been idle; zero while an operation is in flight.
    fn idle_for(&self) -> Duration {
        if self.operations.is_empty() {
            self.last.elapsed()
        } else {
            Duration::ZERO
        }
    }
}

/// The key from a `connection_init` payload: `Authorization` (any case; `Bearer ` optional),
/// `X-CAP-API-OAUTH-TOKEN`, `token`, or the same inside `headers`.
fn key_from_payload(payload: &Value) -> Option<String> {
    let obj = payload.as_object()?;
    for (k, v) in obj {
        let Some(s) = v.as_str() else { continue };
        match k.to_ascii_lowercase().as_str() {
            "authorization" => {
                let s = s.trim();
                return Some(match s.split_once(' ') {
                    Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => {
                        key.trim().to_owned()
                    }
                    _ => s.to_owned(),
                });
            }
            "token" | "x-cap-api-oauth-token" => return Some(s.trim().to_owned()),
            _ => {}
        }
    }
    obj.get("headers").and_then(key_from_payload)
}

/// The first GraphQL protocol the client offers in `Sec-WebSocket-Protocol`.
pub fn protocol(headers: &axum::http::HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())?
        .split(',')
        .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
}

pub fn upgrade(
    state: Shared,
    protocol: WebSocketProtocols,
    ws: WebSocketUpgrade,
    peer: super::Peer,
) -> Response {
    use axum::response::IntoResponse;
    let limits = &state.ws;
    let pending = Slots::take(
        &state.ws_unauthenticated,
        peer.0,
        limits.max_unauthenticated_per_ip,
        limits.max_unauthenticated,
    );
    let Some(pending) = pending else {
        return AppError::RateLimited {
            retry_after_secs: 1,
        }
        .into_response();
    };
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(state.ws.max_message_bytes)
        .max_frame_size(state.ws.max_message_bytes)
        .on_upgrade(move |socket| serve(socket, state, protocol, peer, pending))
}

async fn serve(
    socket: WebSocket,
    state: Shared,
    protocol: WebSocketProtocols,
    peer: super::Peer,
    pending: Slot<std::net::IpAddr>,
) {
    let (mut sink, stream) = socket.split();
    // Idle tracking: the operations in flight and the time of the last message either way.
    let activity: Arc<Mutex<Activity>> = Arc::new(Mutex::new(Activity::new()));
    let seen = activity.clone();
    let failed = activity.clone();
    let over = activity.clone();
    let max_operations = state.ws.max_operations;
    let input = stream
        .take_while(move |m| {
            if let Err(e) = m {
                // The size limits end the stream with a capacity error, before parsing.
                let text = e.to_string();
                if (text.contains("too long") || text.contains("Space limit"))
                    && let Ok(mut a) = failed.lock()
                {
                    a.too_large = true;
                }
            }
            futures_util::future::ready(m.is_ok())
        })
        .filter_map(|m| {
            futures_util::future::ready(match m {
                Ok(Message::Text(t)) => Some(t.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(b)) => Some(b.to_vec()),
                _ => None,
            })
        })
        .inspect(move |bytes| {
            if let Ok(mut a) = seen.lock() {
                a.client_message(bytes);
            }
        })
        // Past the cap on operations in flight the input ends, and the socket closes (4429);
        // so it does at a message before `connection_init` (4401).
        .take_while(move |_| {
            let (n, premature) = over
                .lock()
                .map(|a| (a.operations.len(), a.premature))
                .unwrap_or((0, true));
            futures_util::future::ready(n <= max_operations && !premature)
        });
    let pending: Arc<Mutex<Option<Slot<std::net::IpAddr>>>> = Arc::new(Mutex::new(Some(pending)));
    let authenticated = pending.clone();
    // Set by the init callback: the close code to use instead of the library's (4403 for a bad
    // key, 4429 for too many connections), and the key, re-checked while the socket is open.
    let close_code: Arc<Mutex<Option<u16>>> = Arc::default();
    let key_id: Arc<Mutex<Option<i64>>> = Arc::default();
    let slot: Arc<Mutex<Option<Slot<i64>>>> = Arc::default();
    let limiter = state.clone();
    let gate_state = state.clone();
    let (service, limits, counts) = (
        state.service.clone(),
        state.ws.clone(),
        state.ws_counts.clone(),
    );
    let (code_set, key_set, slot_set) = (close_code.clone(), key_id.clone(), slot.clone());
    let on_init = move |payload: Value| async move {
        let key = key_from_payload(&payload);
        let refuse = |code: u16, e: AppError| {
            if let Ok(mut c) = code_set.lock() {
                *c = Some(code);
            }
            Err(async_graphql::Error::new(format!(
                "{}: {}",
                e.code(),
                e.public_message()
            )))
        };
        let org = match service
            .authenticate(key.as_deref(), || limiter.anonymous_work(peer))
            .await
        {
            Ok(org) => org,
            Err(e) => return refuse(4403, e),
        };
        let Some(taken) = Slots::take(&counts, org.api_key_id, limits.max_per_key, usize::MAX)
        else {
            let e = AppError::RateLimited {
                retry_after_secs: 1,
            };
            return refuse(4429, e);
        };
        if let (Ok(mut k), Ok(mut s)) = (key_set.lock(), slot_set.lock()) {
            *k = Some(org.api_key_id);
            *s = Some(taken);
        }
        if let Ok(mut p) = authenticated.lock() {
            // No longer among the unauthenticated.
            p.take();
        }
        let mut data = Data::default();
        let (gate_state, key) = (gate_state.clone(), org.api_key_id);
        data.insert(crate::graphql::gate::OperationGate(Arc::new(move || {
            gate_state
                .rate_limiter
                .check(&key)
                .map_err(|retry_after_secs| AppError::RateLimited { retry_after_secs })
        })));
        data.insert(RequestContext::new(service.clone(), org));
        Ok(data)
    };
    let init_deadline = tokio::time::sleep(state.ws.init_timeout);
    tokio::pin!(init_deadline);
    let mut recheck = tokio::time::interval(state.ws.recheck);
    let mut idle_check = tokio::time::interval(
        (state.ws.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5)),
    );
    recheck.tick().await;
    let mut out =
        GqlWebSocket::new(state.ws_schema.clone(), input, protocol).on_connection_init(on_init);
    loop {
        tokio::select! {
            msg = out.next() => match msg {
                Some(WsMessage::Text(text)) => {
                    if let Ok(mut a) = activity.lock() {
                        a.server_message(text.as_bytes());
                    }
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let code = close_code.lock().ok().and_then(|c| *c).unwrap_or(code);
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    return;
                }
                None => {
                    let (too_large, operations, premature) = activity
                        .lock()
                        .map(|a| (a.too_large, a.operations.len(), a.premature))
                        .unwrap_or_default();
                    let frame = if too_large {
                        Some(CloseFrame { code: 1009, reason: "message too big".into() })
                    } else if premature {
                        Some(CloseFrame { code: 4401, reason: "Unauthorized: send connection_init first".into() })
                    } else if operations > state.ws.max_operations {
                        Some(CloseFrame { code: 4429, reason: "too many operations in flight".into() })
                    } else {
                        None
                    };
                    let _ = sink.send(Message::Close(frame)).await;
                    return;
                }
            },
            _ = &mut init_deadline, if key_id.lock().map(|k| k.is_none()).unwrap_or(true) => {
                let frame = CloseFrame { code: 4408, reason: "Connection initialisation timeout".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
            _ = idle_check.tick() => {
                let idle = activity.lock().map(|a| a.idle_for()).unwrap_or_default();
                if idle >= state.ws.idle_timeout {
                    let frame = CloseFrame { code: 1000, reason: "idle: no operation and no message".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
            _ = recheck.tick() => {
                // A key revoked while its socket is open loses the socket.
                let id = key_id.lock().ok().and_then(|k| *k);
                if let Some(id) = id
                    && matches!(state.service.api_key_active(id).await, Ok(false))
                {
                    let frame = CloseFrame { code: 4403, reason: "UNAUTHENTICATED: the API key was revoked".into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return;
                }
            }
            _ = state.shutdown.cancelled() => {
                let frame = CloseFrame { code: 1001, reason: "server shutting down".into() };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn keys_come_from_the_usual_places_in_the_payload() {
        let k = |v| super::key_from_payload(&v);
        assert_eq!(
            k(json!({ "Authorization": "Bearer abc" })).as_deref(),
            Some("abc")
        );
        assert_eq!(k(json!({ "authorization": "abc" })).as_deref(), Some("abc"));
        assert_eq!(k(json!({ "token": " abc " })).as_deref(), Some("abc"));
        assert_eq!(
            k(json!({ "X-CAP-API-OAUTH-TOKEN": "abc" })).as_deref(),
            Some("abc")
        );
        assert_eq!(
            k(json!({ "headers": { "Authorization": "Bearer abc" } })).as_deref(),
            Some("abc")
        );
        assert_eq!(k(json!({})), None);
        assert_eq!(k(json!(null)), None);
    }
}
