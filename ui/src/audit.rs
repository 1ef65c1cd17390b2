//! Admin actions of the API in the `audit` table: who (the key's tenant and id), from where,
//! what, on what. Written before the action is answered; a write the store refuses is logged
//! and counted, and does not undo the action.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sightline_common::auth::{AuditEvent, ClientIp, Principal};
use sightline_store::audit::AuditLog;

/// Who is making a request, for the audit.
#[derive(Debug)]
pub struct Actor {
    principal: Option<Principal>,
    client: Option<IpAddr>,
    /// The audit of the actor's tenant.
    audit: Option<Arc<AuditLog>>,
}

impl<S: Send + Sync> FromRequestParts<S> for Actor {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Actor {
            principal: parts.extensions.get::<Principal>().cloned(),
            client: parts.extensions.get::<ClientIp>().map(|c| c.0),
            audit: crate::tenant::audit_of(parts).await,
        })
    }
}

impl Actor {
    /// Records that this actor did `action` on `target`.
    pub async fn record(
        &self,
        action: &'static str,
        target: Option<String>,
        detail: Option<String>,
    ) {
        let Some(log) = &self.audit else {
            return;
        };
        let mut event =
            AuditEvent::action(action, self.principal.as_ref(), self.client, "api", target);
        event.detail = detail;
        if let Err(e) = log.write(event).await {
            tracing::error!(error = %e, action, "an admin action was not recorded in the audit");
        }
    }
}
