//! `uploadJobUpdated` over a real WebSocket, both protocols: live progress, auth, tenancy.

use std::time::Duration;

use coupon_upload_api::domain::Permission;
use coupon_upload_api::entity::upload_job;
use futures_util::{SinkExt, StreamExt};
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::db_tests;
use crate::helpers::TestApp;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

db_tests!(
    subscribers_follow_an_upload_to_finished,
    legacy_protocol_and_job_subscriptions_work,
    bad_keys_close_with_4403,
    other_orgs_series_are_not_found,
);

pub async fn connect(base: &str, protocol: &str) -> Ws {
    let url = base.replacen("http://", "ws://", 1) + "/graphql";
    let mut req = url.into_client_request().expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
    let (ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("connect");
    assert_eq!(
        res.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(protocol)
    );
    ws
}

pub async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

/// The next JSON message (skipping pings), or the close frame as `{"close": code, "reason": …}`.
pub async fn recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a message within 60 s")
            .expect("stream open")
            .expect("message");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["type"] == "ping" || v["type"] == "ka" {
                    continue;
                }
                return v;
            }
            Message::Close(frame) => {
                return match frame {
                    Some(f) => {
                        json!({ "close": u16::from(f.code), "reason": f.reason.to_string() })
                    }
                    None => json!({ "close": null }),
                };
            }
            _ => continue,
        }
    }
}

pub async fn init(ws: &mut Ws, key: &str) {
    send(ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } })).await;
    assert_eq!(recv(ws).await["type"], "connection_ack");
}

pub const SUB: &str = "subscription($s: ID!, $j: ID) { uploadJobUpdated(couponSeriesId: $s, jobId: $j) {
    jobId uploadStatus processedRowCount actualRowCount totalUploadedCount errorCount errorFileUrl successFileUrl
    updatedOn audienceGroup { id } } }";

fn codes(n: usize) -> Vec<u8> {
    let mut f = String::from("code\n");
    for i in 0..n {
        f.push_str(&format!("LIVE-{n}-{i}\n"));
    }
    f.push_str("BAD CODE\n");
    f.into_bytes()
}

async fn subscribers_follow_an_upload_to_finished(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let mut ws = connect(&app.base, "graphql-transport-ws").await;
    init(&mut ws, &key).await;
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": series } } })).await;
    // A small job first: once its end arrives, the subscription is surely live.
    let warm_up = app.upload_ok(&key, &series, &codes(1), json!({})).await;
    loop {
        let m = recv(&mut ws).await;
        let j = &m["payload"]["data"]["uploadJobUpdated"];
        if j["jobId"] == warm_up.as_str() && j["uploadStatus"] == "FINISHED" {
            break;
        }
    }
    // Large enough to take well over the 250 ms between progress events, in batches of 4.
    let job = app
        .upload_ok(&key, &series, &codes(12_000), json!({}))
        .await;
    let mut events = Vec::new();
    loop {
        let m = recv(&mut ws).await;
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["id"], "1");
        let j = m["payload"]["data"]["uploadJobUpdated"].clone();
        assert_eq!(j["jobId"], job.as_str(), "warm-up {warm_up}: {m}");
        let done = j["uploadStatus"] == "FINISHED";
        events.push(j);
        if done {
            break;
        }
    }
    let statuses: Vec<&str> = events
        .iter()
        .map(|e| e["uploadStatus"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses.first(), Some(&"STARTED"), "{statuses:?}");
    assert_eq!(statuses.get(1), Some(&"PROCESSING"), "{statuses:?}");
    let progress: Vec<i64> = events
        .iter()
        .map(|e| e["processedRowCount"].as_i64().unwrap_or(-1))
        .collect();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {progress:?}"
    );
    assert!(
        events.iter().any(|e| e["uploadStatus"] == "PROCESSING"
            && e["processedRowCount"].as_i64().unwrap_or(0) > 0),
        "progress while processing: {progress:?}"
    );
    let last = events.last().cloned().unwrap_or_default();
    let queried = app.wait_job(&key, &job).await;
    for f in [
        "actualRowCount",
        "totalUploadedCount",
        "errorCount",
        "processedRowCount",
    ] {
        assert_eq!(
            last[f], queried[f],
            "{f}: the last event carries the final counts"
        );
    }
    assert_eq!(last["totalUploadedCount"], 12_000);
    assert!(
        last["errorFileUrl"]
            .as_str()
            .is_some_and(|u| u.contains("/files/")),
        "{last}"
    );
    assert!(last["successFileUrl"].is_string());
}

async fn legacy_protocol_and_job_subscriptions_work(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let job = app.upload_ok(&key, &series, &codes(50), json!({})).await;
    let mut ws = connect(&app.base, "graphql-ws").await;
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": { "token": key } }),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "connection_ack");
    send(&mut ws, json!({ "id": "7", "type": "start", "payload": { "query": SUB, "variables": { "s": series, "j": job } } })).await;
    // The job's current state first, then changes, then `complete` after the final state.
    let mut last = Value::Null;
    loop {
        let m = recv(&mut ws).await;
        match m["type"].as_str() {
            Some("data") => last = m["payload"]["data"]["uploadJobUpdated"].clone(),
            Some("complete") => break,
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(last["uploadStatus"], "FINISHED", "{last}");
    assert_eq!(last["totalUploadedCount"], 50);
    assert_eq!(last["errorCount"], 1);
}

async fn bad_keys_close_with_4403(app: TestApp) {
    for payload in [
        json!({ "Authorization": "Bearer cua_nope" }),
        json!({}),
        json!({ "token": "" }),
    ] {
        let mut ws = connect(&app.base, "graphql-transport-ws").await;
        send(
            &mut ws,
            json!({ "type": "connection_init", "payload": payload }),
        )
        .await;
        let m = recv(&mut ws).await;
        assert_eq!(
            m["close"],
            u16::from(CloseCode::Library(4403)),
            "{payload}: {m}"
        );
        assert!(
            m["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("UNAUTHENTICATED")),
            "{m}"
        );
    }
    // Subscribing without connection_init is refused too.
    let mut ws = connect(&app.base, "graphql-transport-ws").await;
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": "1" } } })).await;
    let m = recv(&mut ws).await;
    assert!(m["close"].is_number(), "{m}");
}

async fn other_orgs_series_are_not_found(app: TestApp) {
    let mine = app.key(1, Permission::Read).await;
    let theirs = app.key(2, Permission::ReadWrite).await;
    let foreign = app.create_series(&theirs, json!({})).await;
    let mut ws = connect(&app.base, "graphql-transport-ws").await;
    init(&mut ws, &mine).await;
    send(&mut ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": foreign } } })).await;
    let m = recv(&mut ws).await;
    // graphql-transport-ws: a resolver error arrives as `next` with `errors`, then `complete`.
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["payload"]["data"], Value::Null);
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{m}"
    );
    assert_eq!(recv(&mut ws).await["type"], "complete");
    // Nor can I subscribe to a job of theirs through a series of mine.
    let writer = mine_writer(&app).await;
    let own = app.create_series(&writer, json!({})).await;
    let their_job = app.upload_ok(&theirs, &foreign, &codes(3), json!({})).await;
    send(&mut ws, json!({ "id": "2", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": own, "j": their_job } } })).await;
    let m = recv(&mut ws).await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["id"], "2", "{m}");
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{m}"
    );
    assert_eq!(m["payload"]["data"], Value::Null, "{m}");
    assert_eq!(recv(&mut ws).await["type"], "complete");

    // A live subscription of mine hears nothing of theirs: not their jobs, and not an event of
    // theirs that carries the very series id I subscribed to (only the org check stops that).
    send(&mut ws, json!({ "id": "3", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": own } } })).await;
    // Until an event of mine arrives, the subscription may not be live yet.
    let warm_up = app.upload_ok(&writer, &own, &codes(1), json!({})).await;
    until_finished(&mut ws, "3", &warm_up).await;
    // Their job runs while my subscription is live, and they do hear it.
    let job = app.upload_ok(&theirs, &foreign, &codes(5), json!({})).await;
    let mut their_ws = connect(&app.base, "graphql-transport-ws").await;
    init(&mut their_ws, &theirs).await;
    send(&mut their_ws, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": foreign, "j": job } } })).await;
    let mut last = Value::Null;
    loop {
        let m = recv(&mut their_ws).await;
        match m["type"].as_str() {
            Some("next") => {
                last = m["payload"]["data"]["uploadJobUpdated"].clone();
                assert_eq!(last["jobId"], job.as_str(), "{m}");
            }
            Some("complete") => break,
            _ => panic!("unexpected {m}"),
        }
    }
    assert_eq!(last["uploadStatus"], "FINISHED", "{last}");
    // Their finished job, published as if it were on my series: org 2's, same series id.
    let their_row = upload_job::Entity::find_by_id(job.parse::<i64>().expect("job id"))
        .one(app.state.service.db())
        .await
        .expect("job row")
        .expect("their job");
    assert_eq!(their_row.org_id, 2);
    let forged = upload_job::Model {
        coupon_series_id: own.parse().expect("series id"),
        ..their_row
    };
    app.state.service.events().publish(&forged).await;
    let mine_next = app.upload_ok(&writer, &own, &codes(2), json!({})).await;
    // Events reach every subscriber in the order they were published: had anything of theirs
    // been let through, it would come before my job's events.
    until_finished(&mut ws, "3", &mine_next).await;
}

/// Reads subscription `id`'s events until job `job` is FINISHED; every event must be of `job`.
async fn until_finished(ws: &mut Ws, id: &str, job: &str) {
    loop {
        let m = recv(ws).await;
        assert_eq!(m["type"], "next", "{m}");
        assert_eq!(m["id"], id, "{m}");
        let j = &m["payload"]["data"]["uploadJobUpdated"];
        assert_eq!(j["jobId"], job, "nothing but my job {job}: {m}");
        if j["uploadStatus"] == "FINISHED" {
            return;
        }
    }
}

async fn mine_writer(app: &TestApp) -> String {
    app.key(1, Permission::ReadWrite).await
}

// WebSocket limits: connections per key, and revoked keys lose their open sockets.
crate::db_tests_with!(
    Options {
        ws: coupon_upload_api::http::ws::WsLimits { max_per_key: 2, recheck: std::time::Duration::from_millis(200), init_timeout: std::time::Duration::from_millis(500), idle_timeout: std::time::Duration::from_secs(60), ..Default::default() },
        ..Default::default()
    };
    sockets_are_limited_per_key_and_closed_on_revocation
);

async fn sockets_are_limited_per_key_and_closed_on_revocation(app: TestApp) {
    let made = app
        .state
        .service
        .create_api_key(1, "ws", Permission::Read)
        .await
        .expect("key");
    let mut a = connect(&app.base, "graphql-transport-ws").await;
    init(&mut a, &made.key).await;
    let mut b = connect(&app.base, "graphql-transport-ws").await;
    init(&mut b, &made.key).await;
    let mut c = connect(&app.base, "graphql-transport-ws").await;
    send(&mut c, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", made.key) } })).await;
    let m = recv(&mut c).await;
    assert_eq!(m["close"], 4429, "{m}");
    // A slot comes back when a socket ends.
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut d = connect(&app.base, "graphql-transport-ws").await;
    init(&mut d, &made.key).await;
    // A socket that never sends connection_init is closed (4408).
    let mut lazy = connect(&app.base, "graphql-transport-ws").await;
    let m = recv(&mut lazy).await;
    assert_eq!(m["close"], 4408, "{m}");
    // Revoked: the open sockets close with 4403.
    app.state
        .service
        .revoke_api_key(made.record.id)
        .await
        .expect("revoke");
    for ws in [&mut a, &mut d] {
        let m = recv(ws).await;
        assert_eq!(m["close"], 4403, "{m}");
        assert!(
            m["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("UNAUTHENTICATED")),
            "{m}"
        );
    }
}

crate::db_tests_with!(
    Options {
        ws: coupon_upload_api::http::ws::WsLimits { idle_timeout: std::time::Duration::from_millis(600), ..Default::default() },
        ..Default::default()
    };
    idle_sockets_close_but_live_subscriptions_stay
);

/// A socket with nothing in flight and nothing said closes (1000); one with a live
/// subscription stays open however quiet.
async fn idle_sockets_close_but_live_subscriptions_stay(app: TestApp) {
    let key = app.key(1, Permission::ReadWrite).await;
    let series = app.create_series(&key, json!({})).await;
    let mut live = connect(&app.base, "graphql-transport-ws").await;
    init(&mut live, &key).await;
    send(&mut live, json!({ "id": "1", "type": "subscribe", "payload": { "query": SUB, "variables": { "s": series } } })).await;
    let mut idle = connect(&app.base, "graphql-transport-ws").await;
    init(&mut idle, &key).await;
    let m = recv(&mut idle).await;
    assert_eq!(m["close"], 1000, "{m}");
    // Well past the idle timeout, the subscriber still gets its events.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let job = app.upload_ok(&key, &series, &codes(2), json!({})).await;
    let m = recv(&mut live).await;
    assert_eq!(
        m["payload"]["data"]["uploadJobUpdated"]["jobId"],
        job.as_str(),
        "{m}"
    );
}
