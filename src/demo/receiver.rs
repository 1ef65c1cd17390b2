//! The demo's webhook receiver: checks every notification's signature, prints it, and keeps
//! it for the scenario to see.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::SECRET;

/// What the demo receiver got.
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) notifications: Vec<Value>,
}

pub(super) type SharedInbox = Arc<Mutex<Inbox>>;

pub(super) fn inbox(i: &SharedInbox) -> std::sync::MutexGuard<'_, Inbox> {
    i.lock().unwrap_or_else(|e| e.into_inner())
}

/// The demo webhook receiver: checks the signature, prints the notification, keeps it.
async fn receive(
    State(inbox_): State<SharedInbox>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    let signed = headers
        .get("x-sightline-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let expected = sightline_notify::webhook::signature(SECRET.as_bytes(), &body);
    let Ok(n) = serde_json::from_slice::<Value>(&body) else {
        println!("        receiver: got a body that is not JSON");
        return "ok";
    };
    let status = n["status"].as_str().unwrap_or("?").to_uppercase();
    let firing = n["alerts"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|x| x["status"] == "firing").count());
    let labels: Vec<&str> = n["groupLabels"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!(
        "        receiver ← webhook {}{} {}  (signature {})",
        status,
        if status == "FIRING" {
            format!(":{firing}")
        } else {
            String::new()
        },
        labels.join(" "),
        if signed == expected {
            "valid"
        } else {
            "INVALID"
        },
    );
    for a in n["alerts"].as_array().into_iter().flatten() {
        println!(
            "          {} {}: {}",
            a["status"].as_str().unwrap_or(""),
            a["labels"]["tier"].as_str().unwrap_or(""),
            a["annotations"]["description"].as_str().unwrap_or("")
        );
    }
    inbox(&inbox_).notifications.push(n);
    "ok"
}

/// The receiver, listening.
pub(super) struct Receiver {
    pub(super) addr: SocketAddr,
    pub(super) inbox: SharedInbox,
    stop: CancellationToken,
    task: tokio::task::JoinSet<std::io::Result<()>>,
}

impl Receiver {
    pub(super) async fn start(listen: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} for the demo receiver"))?;
        let addr = listener.local_addr()?;
        let inbox: SharedInbox = Default::default();
        let stop = CancellationToken::new();
        let app = axum::Router::new()
            .route("/alerts", axum::routing::post(receive))
            .with_state(inbox.clone());
        let token = stop.clone();
        let mut task = tokio::task::JoinSet::new();
        task.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
        });
        Ok(Self {
            addr,
            inbox,
            stop,
            task,
        })
    }

    pub(super) async fn stop(self) {
        self.stop.cancel();
        self.task.join_all().await;
    }
}
