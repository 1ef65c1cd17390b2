//! The workers: each sends requests back to back over its own gRPC channel or HTTP client
//! until the deadline (a closed loop: one request in flight per worker), and counts what came
//! back. gRPC goes through a codec that sends the pre-encoded bytes as they are.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prost::bytes::{Buf as _, BufMut as _, Bytes};
use sightline_common::error::chain as error_chain;
use tonic::codec::{DecodeBuf, EncodeBuf};
use tonic::transport::Channel;

use crate::pool::{Payload, Signal, decode_rejected};
use crate::{ERROR_BACKOFF, MAX_ERROR_KINDS, REJECT_BACKOFF, REQUEST_TIMEOUT};

#[derive(Clone, Copy)]
pub(crate) struct RawCodec {
    pub(crate) signal: Signal,
}

pub(crate) struct RawEncoder;

pub(crate) struct RejectedDecoder {
    pub(crate) signal: Signal,
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = u64;
    type Encoder = RawEncoder;
    type Decoder = RejectedDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RejectedDecoder {
            signal: self.signal,
        }
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RejectedDecoder {
    type Item = u64;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<u64>, Self::Error> {
        let len = src.remaining();
        let bytes = src.copy_to_bytes(len);
        decode_rejected(self.signal, &bytes)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("bad export response: {e}")))
    }
}

pub(crate) enum Outcome {
    /// 2xx / gRPC OK; `rejected_items` from the partial-success field.
    Ok { rejected_items: u64 },
    /// The server answered with a non-2xx status / gRPC error status (key: "HTTP 429", ...).
    Rejected(String),
    /// No usable answer: connect/transport error, timeout, unreadable body.
    Error(String),
}

pub(crate) enum Client {
    /// With the `authorization` metadata to send, if any.
    Grpc(
        tonic::client::Grpc<Channel>,
        Option<tonic::metadata::AsciiMetadataValue>,
    ),
    Http {
        client: reqwest::Client,
        base_url: String,
        gzip: bool,
    },
}

impl Client {
    async fn send(&mut self, p: &Payload) -> Outcome {
        match self {
            Client::Grpc(grpc, auth) => {
                if let Err(e) = grpc.ready().await {
                    return Outcome::Error(format!("gRPC channel not ready: {}", error_chain(&e)));
                }
                let mut req = tonic::Request::new(p.proto.clone());
                req.set_timeout(REQUEST_TIMEOUT);
                if let Some(a) = auth {
                    req.metadata_mut().insert("authorization", a.clone());
                }
                match grpc
                    .unary(req, p.signal.grpc_path(), RawCodec { signal: p.signal })
                    .await
                {
                    Ok(resp) => Outcome::Ok {
                        rejected_items: resp.into_inner(),
                    },
                    // A status carrying a source error was produced client-side (transport,
                    // timeout); a bare status came from the server.
                    Err(status) => match std::error::Error::source(&status) {
                        Some(_) => Outcome::Error(format!(
                            "gRPC {:?}: {}",
                            status.code(),
                            error_chain(&status)
                        )),
                        None => Outcome::Rejected(format!("gRPC {:?}", status.code())),
                    },
                }
            }
            Client::Http {
                client,
                base_url,
                gzip,
            } => {
                let url = format!("{base_url}{}", p.signal.http_path());
                let mut rb = client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(p.http_body.clone());
                if *gzip {
                    rb = rb.header(reqwest::header::CONTENT_ENCODING, "gzip");
                }
                let resp = match rb.send().await {
                    Ok(r) => r,
                    Err(e) => return Outcome::Error(format!("HTTP: {}", error_chain(&e))),
                };
                let status = resp.status();
                let is_proto = resp
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|ct| ct.starts_with("application/x-protobuf"));
                let body = match resp.bytes().await {
                    Ok(b) => b,
                    Err(e) => {
                        return Outcome::Error(format!("HTTP body: {}", error_chain(&e)));
                    }
                };
                if status.is_success() {
                    let rejected_items = if is_proto && !body.is_empty() {
                        decode_rejected(p.signal, &body).unwrap_or(0)
                    } else {
                        0
                    };
                    Outcome::Ok { rejected_items }
                } else {
                    Outcome::Rejected(format!("HTTP {}", status.as_u16()))
                }
            }
        }
    }
}

#[derive(Default, Clone)]
pub(crate) struct Stats {
    pub(crate) ok: u64,
    pub(crate) rejected: BTreeMap<String, u64>,
    pub(crate) errored: u64,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Items in requests answered OK.
    pub(crate) items_in_ok: u64,
    /// Of those, items reported rejected through partial success.
    pub(crate) items_partial_rejected: u64,
    pub(crate) items_accepted: u64,
    pub(crate) items_by_signal: [u64; 3],
    /// Payload bytes of requests that got an answer (OK or rejected).
    pub(crate) bytes_sent: u64,
    /// Latency of OK requests, microseconds.
    pub(crate) latencies_us: Vec<u64>,
}

pub(crate) fn bump(map: &mut BTreeMap<String, u64>, key: String, n: u64) {
    if map.len() >= MAX_ERROR_KINDS && !map.contains_key(&key) {
        *map.entry("(other)".to_string()).or_default() += n;
    } else {
        *map.entry(key).or_default() += n;
    }
}

impl Stats {
    pub(crate) fn merge(&mut self, o: Stats) {
        self.ok += o.ok;
        for (k, v) in o.rejected {
            *self.rejected.entry(k).or_default() += v;
        }
        self.errored += o.errored;
        for (k, v) in o.errors {
            bump(&mut self.errors, k, v);
        }
        self.items_in_ok += o.items_in_ok;
        self.items_partial_rejected += o.items_partial_rejected;
        self.items_accepted += o.items_accepted;
        for (mine, theirs) in self.items_by_signal.iter_mut().zip(o.items_by_signal) {
            *mine += theirs;
        }
        self.bytes_sent += o.bytes_sent;
        self.latencies_us.extend(o.latencies_us);
    }

    pub(crate) fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

pub(crate) async fn worker(
    mut client: Client,
    pool: Arc<Vec<Payload>>,
    mut idx: usize,
    deadline: Instant,
    pace: Option<f64>,
    stop: Arc<AtomicBool>,
) -> Stats {
    let mut st = Stats::default();
    let is_grpc = matches!(client, Client::Grpc(..));
    // With a pace (items per second), when the next request is due.
    let mut due = Instant::now();
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let p = &pool[idx % pool.len()];
        idx = idx.wrapping_add(1);
        let wire = if is_grpc {
            p.grpc_wire_bytes
        } else {
            p.http_body.len() as u64
        };
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, client.send(p))
            .await
            .unwrap_or_else(|_| Outcome::Error(format!("timeout after {REQUEST_TIMEOUT:?}")));
        let us = t0.elapsed().as_micros() as u64;
        let backoff = match outcome {
            Outcome::Ok { rejected_items } => {
                let rej = rejected_items.min(p.items);
                st.ok += 1;
                st.items_in_ok += p.items;
                st.items_partial_rejected += rej;
                st.items_accepted += p.items - rej;
                st.items_by_signal[p.signal as usize] += p.items - rej;
                st.bytes_sent += wire;
                st.latencies_us.push(us);
                None
            }
            Outcome::Rejected(key) => {
                *st.rejected.entry(key).or_default() += 1;
                st.bytes_sent += wire;
                Some(REJECT_BACKOFF)
            }
            Outcome::Error(msg) => {
                st.errored += 1;
                let key: String = msg.chars().take(200).collect();
                bump(&mut st.errors, key, 1);
                Some(ERROR_BACKOFF)
            }
        };
        if let Some(rate) = pace {
            // Open loop: requests leave on schedule, whatever the answers were; a late one
            // leaves at once (and the schedule is not caught up in a burst).
            due = (due + Duration::from_secs_f64(p.items as f64 / rate)).max(Instant::now());
            tokio::time::sleep_until(due.min(deadline).into()).await;
        } else if let Some(b) = backoff {
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(b.min(left)).await;
        }
    }
    st
}
