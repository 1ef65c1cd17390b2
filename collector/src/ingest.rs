//! The path every export request takes, whatever its transport: convert to Arrow, store,
//! count, and answer with OTLP partial success when some items were rejected.

use std::sync::Arc;

use sightline_store::directory::StoreDirectory;
use std::sync::atomic::AtomicUsize;

use crate::limits::Limits;

use crate::admission::Admission;
pub use crate::admission::Admitted;
use crate::convert::{ConvertContext, Converted};
use crate::error::IngestError;
use crate::metrics::{CollectorMetrics, ItemLabels, RequestLabels};
pub use crate::request::ExportRequest;
use sightline_common::clock::now as now_ns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Http => "http",
        }
    }
}

/// What happened to an export request that was (at least partly) stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: u64,
    pub rejected: u64,
    pub message: Option<String>,
}

impl Outcome {
    pub fn response<R: ExportRequest>(&self) -> R::Response {
        R::response(
            i64::try_from(self.rejected).unwrap_or(i64::MAX),
            self.message.clone().unwrap_or_default(),
        )
    }

    /// The OTLP/JSON response body.
    pub fn json<R: ExportRequest>(&self) -> serde_json::Value {
        if self.rejected == 0 && self.message.is_none() {
            return serde_json::json!({});
        }
        let mut partial = serde_json::Map::new();
        // int64 is a decimal string in the proto3 JSON mapping.
        partial.insert(
            R::REJECTED_FIELD.into(),
            serde_json::Value::String(self.rejected.to_string()),
        );
        partial.insert(
            "errorMessage".into(),
            serde_json::Value::String(self.message.clone().unwrap_or_default()),
        );
        serde_json::json!({ "partialSuccess": partial })
    }
}

/// Converts and stores export requests; shared by the gRPC and HTTP receivers.
#[derive(Debug, Clone)]
pub struct Ingest {
    admission: Arc<Admission>,
    metrics: CollectorMetrics,
    /// API keys: who may send (everyone, when none are configured).
    keys: Option<Arc<sightline_common::auth::Keys>>,
}

/// The blocking part of [`Ingest::receive`] once the body is decompressed.
fn decode_and_convert<R: ExportRequest>(
    bytes: bytes::Bytes,
    format: crate::decode::Format,
    limits: &Limits,
    ctx: &ConvertContext,
    admitted: &mut Admitted,
) -> Result<Converted, IngestError> {
    let budget = limits.request_budget(bytes.len());
    let shape = match format {
        crate::decode::Format::Protobuf => crate::shape::protobuf(R::SIGNAL, &bytes),
        crate::decode::Format::Json => crate::shape::json(&bytes),
    }
    .map_err(|e| IngestError::Malformed(e.to_string()))?;
    let decoded_len = bytes.len();
    let too_costly = |what: &str, need: u64| {
        IngestError::TooCostly(format!(
            "this request would take about {} MiB of memory {what} ({} messages in {} \
             decoded bytes), more than one request of its size may take ({} MiB; \
             limits.max_request_memory_bytes): send smaller batches",
            need >> 20,
            shape.messages,
            decoded_len,
            budget >> 20
        ))
    };
    // What the request holds already (its body, decompressed) counts against its budget.
    let held = admitted.bytes() as u64;
    if held + shape.memory_bytes > budget as u64 {
        return Err(too_costly("to decode", held + shape.memory_bytes));
    }
    admitted.try_grow(shape.memory_bytes as usize)?;
    let request: R = crate::decode::decode(&bytes, format)?;
    drop(bytes);
    // Known only now: what the request counts against its tenant's rate.
    admitted.charge(request.items(), decoded_len)?;
    admitted.release(decoded_len);
    let stored = request.stored_bytes(&limits.items);
    let need = admitted.bytes() as u64 + stored;
    if need > budget as u64 {
        return Err(too_costly("to store", need));
    }
    admitted.try_grow(stored as usize)?;
    Ok(request.convert(ctx)?)
}

/// How long a refused sender should wait before retrying.
impl Ingest {
    /// Receivers that store each tenant's data in its store of `stores`.
    pub fn new(stores: Arc<dyn StoreDirectory>, metrics: CollectorMetrics, limits: Limits) -> Self {
        Self {
            admission: Arc::new(Admission {
                stores,
                limits,
                inflight: AtomicUsize::new(0),
                quotas: crate::quota::Quotas::new(Default::default(), metrics.over_quota.clone()),
            }),
            metrics,
            keys: None,
        }
    }

    /// Each tenant's ingest rate and share of the memory ceiling (the defaults otherwise).
    /// Set before the receivers take the `Ingest`: its clones keep the limits they had.
    #[must_use]
    pub fn with_tenant_limits(mut self, config: sightline_common::tenant::TenantsConfig) -> Self {
        self.admission = Arc::new(Admission {
            stores: self.admission.stores.clone(),
            limits: self.admission.limits,
            inflight: AtomicUsize::new(0),
            quotas: crate::quota::Quotas::new(config, self.metrics.over_quota.clone()),
        });
        self
    }

    /// Requests must carry a key with the ingest role (once any key is configured).
    #[must_use]
    pub fn with_keys(mut self, keys: Arc<sightline_common::auth::Keys>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Whether a request with these credentials may send, and for which tenant (the
    /// default one when no keys are configured).
    ///
    /// # Errors
    /// Unauthenticated, permission denied, or throttled after too many failures.
    pub fn authorize(
        &self,
        credentials: &sightline_common::auth::Credentials<'_>,
    ) -> Result<String, IngestError> {
        match &self.keys {
            None => Ok(sightline_common::tenant::DEFAULT_TENANT.to_string()),
            Some(keys) => keys
                .authenticate(credentials, Some(sightline_common::auth::Role::Ingest))
                .map(|p| p.tenant)
                .map_err(IngestError::from),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.admission.limits
    }

    /// Memory in use: buffered rows, flush working memory, and requests being
    /// processed.
    pub fn memory_in_use(&self) -> usize {
        self.admission.memory_in_use()
    }

    /// Admits a request of `bytes` so far (more is reserved as it arrives and decodes), or
    /// refuses it as retryable when a ceiling is reached. Refusing early costs the server
    /// almost nothing.
    ///
    /// # Errors
    /// [`IngestError::Unavailable`] when memory or the WAL's disk is short.
    pub fn admit(
        &self,
        signal: Signal,
        transport: Transport,
        tenant: String,
        bytes: usize,
    ) -> Result<Admitted, IngestError> {
        let quota = self.admission.quotas.of(&tenant);
        // A tenant over its rate is refused before anything more of its request is read.
        quota.check_rate(&tenant, std::time::Instant::now())?;
        self.admission.check_stored(&tenant, &quota)?;
        let mut admitted = Admitted {
            admission: self.admission.clone(),
            signal,
            transport,
            tenant,
            quota,
            bytes: 0,
        };
        admitted.try_grow(bytes)?;
        Ok(admitted)
    }

    /// Decompresses, decodes, converts and stores a request whose body is `body`, reserving
    /// what each step costs before it runs: the decompressed body as it expands, the decoded
    /// structs (from the body's shape), then the rows. All of it runs on the blocking pool,
    /// off the async threads.
    ///
    /// # Errors
    /// [`IngestError::TooCostly`] when the request would take more memory than one request
    /// may (not retryable: split it); [`IngestError::Unavailable`] when memory is short;
    /// [`IngestError::TooLarge`] and [`IngestError::Malformed`]; the errors of
    /// [`Ingest::export`].
    pub async fn receive<R: ExportRequest>(
        &self,
        body: bytes::Bytes,
        encoding: crate::decode::Encoding,
        format: crate::decode::Format,
        transport: Transport,
        mut admitted: Admitted,
    ) -> Result<Outcome, IngestError> {
        let limits = *self.limits();
        let ctx = ConvertContext::new(now_ns(), limits.items);
        let decoded = tokio::task::spawn_blocking(move || {
            let bytes = match encoding {
                crate::decode::Encoding::Identity => body,
                _ => {
                    let out = crate::decode::decompress_reserving(
                        &body,
                        encoding,
                        limits.max_decoded_bytes,
                        &mut |n| admitted.try_grow(n),
                    )?;
                    admitted.release(body.len());
                    drop(body);
                    bytes::Bytes::from(out)
                }
            };
            decode_and_convert::<R>(bytes, format, &limits, &ctx, &mut admitted)
                .map(|converted| (converted, admitted))
        })
        .await
        .map_err(|e| IngestError::Internal(format!("decoder task failed: {e}")))?;
        let labels = ItemLabels {
            signal: R::SIGNAL.name(),
            transport: transport.name(),
        };
        let result = match decoded {
            // The reservation is held until the rows are buffered (and counted by the store).
            Ok((converted, admitted)) => self.store_converted(&admitted.tenant, converted).await,
            Err(e) => Err(e),
        };
        // Failures are counted by the receiver, with those that happen before this call.
        if result.is_ok() {
            self.count(&labels, &result);
        }
        result
    }

    pub fn metrics(&self) -> &CollectorMetrics {
        &self.metrics
    }

    /// Counts a request that failed before conversion (undecodable, too large...).
    pub fn count_failure(&self, signal: Signal, transport: Transport, err: &IngestError) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                signal: signal.name(),
                transport: transport.name(),
                outcome: err.reason(),
            })
            .inc();
    }

    pub fn count_bytes(&self, signal: Signal, transport: Transport, bytes: usize) {
        self.metrics
            .received_bytes
            .get_or_create(&ItemLabels {
                signal: signal.name(),
                transport: transport.name(),
            })
            .inc_by(bytes as u64);
    }

    /// Converts and stores what can be stored of an already decoded `req` (on the caller's
    /// thread: for tools and tests; the receivers use [`Ingest::receive`]).
    ///
    /// # Errors
    /// [`IngestError`] for what the sender must hear: refused as retryable (memory, disk,
    /// shutting down) or malformed (the request is not stored).
    pub async fn export<R: ExportRequest>(
        &self,
        req: &R,
        transport: Transport,
        tenant: &str,
    ) -> Result<Outcome, IngestError> {
        let labels = ItemLabels {
            signal: R::SIGNAL.name(),
            transport: transport.name(),
        };
        let converted = req.convert(&ConvertContext::new(now_ns(), self.limits().items));
        let result = match converted {
            Ok(c) => self.store_converted(tenant, c).await,
            Err(e) => Err(e.into()),
        };
        self.count(&labels, &result);
        result
    }

    fn count(&self, labels: &ItemLabels, result: &Result<Outcome, IngestError>) {
        match result {
            Ok(outcome) => {
                self.metrics
                    .accepted
                    .get_or_create(labels)
                    .inc_by(outcome.accepted);
                self.metrics
                    .rejected
                    .get_or_create(labels)
                    .inc_by(outcome.rejected);
                self.metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        signal: labels.signal,
                        transport: labels.transport,
                        outcome: if outcome.rejected > 0 {
                            "partial"
                        } else {
                            "ok"
                        },
                    })
                    .inc();
            }
            Err(e) => {
                self.metrics
                    .requests
                    .get_or_create(&RequestLabels {
                        signal: labels.signal,
                        transport: labels.transport,
                        outcome: e.reason(),
                    })
                    .inc();
            }
        }
    }

    async fn store_converted(
        &self,
        tenant: &str,
        converted: Converted,
    ) -> Result<Outcome, IngestError> {
        let outcome = Outcome {
            accepted: converted.accepted,
            rejected: converted.rejected,
            message: converted.rejection,
        };
        if !converted.batches.is_empty() {
            let store = self.admission.stores.store(tenant).await?;
            store.write(converted.batches).await?;
        }
        Ok(outcome)
    }
}
