//! GraphQL over WebSocket on `/graphql`: `graphql-transport-ws` (the `graphql-ws` npm client,
//! GraphiQL) and the legacy `graphql-ws` protocol (subscriptions-transport-ws).
//!
//! The key comes in the `connection_init` payload (`{"Authorization": "Bearer <key>"}`, or the
//! bare key under `"token"`); a bad key closes the socket with 4403 and a reason starting with
//! `UNAUTHENTICATED`. On shutdown every socket is closed cleanly (1001, going away).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::Data;
use async_graphql::http::{
    ALL_WEBSOCKET_PROTOCOLS, WebSocket as GqlWebSocket, WebSocketProtocols, WsMessage,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

use super::AppState;
use crate::graphql::RequestContext;

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

pub fn upgrade(state: AppState, protocol: WebSocketProtocols, ws: WebSocketUpgrade) -> Response {
    ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(socket, state, protocol))
}

async fn serve(socket: WebSocket, state: AppState, protocol: WebSocketProtocols) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|m| futures_util::future::ready(m.is_ok()))
        .filter_map(|m| {
            futures_util::future::ready(match m {
                Ok(Message::Text(t)) => Some(t.as_str().as_bytes().to_vec()),
                Ok(Message::Binary(b)) => Some(b.to_vec()),
                _ => None,
            })
        });
    let refused = Arc::new(AtomicBool::new(false));
    let service = state.service.clone();
    let flag = refused.clone();
    let on_init = move |payload: Value| async move {
        let key = key_from_payload(&payload);
        match service.authenticate(key.as_deref()).await {
            Ok(org) => {
                let mut data = Data::default();
                data.insert(RequestContext::new(service.clone(), org));
                Ok(data)
            }
            Err(e) => {
                flag.store(true, Ordering::Relaxed);
                Err(async_graphql::Error::new(format!(
                    "{}: {}",
                    e.code(),
                    e.public_message()
                )))
            }
        }
    };
    let mut out =
        GqlWebSocket::new(state.schema.clone(), input, protocol).on_connection_init(on_init);
    loop {
        tokio::select! {
            msg = out.next() => match msg {
                Some(WsMessage::Text(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let code = if refused.load(Ordering::Relaxed) { 4403 } else { code };
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    return;
                }
                None => {
                    let _ = sink.send(Message::Close(None)).await;
                    return;
                }
            },
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
