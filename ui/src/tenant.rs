//! Whose data a request sees: every handler works on the [`TenantApi`] of the tenant its key
//! belongs to (the default tenant without keys), found in the [`TenantDirectory`] the router
//! was given. Nothing in a handler can reach another tenant's store, engine, SLOs or silences.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sightline_common::auth::Principal;
use sightline_common::tenant::DEFAULT_TENANT;
use sightline_store::Store;
use sightline_store::audit::AuditLog;
use sightline_store::query::QueryEngine;

use crate::error::ApiError;

/// One tenant's parts, as the API uses them.
#[derive(Debug, Clone)]
pub struct TenantApi {
    pub name: String,
    pub store: Arc<Store>,
    pub engine: Arc<QueryEngine>,
    /// The tenant's SLO engine (absent in tools that run without one).
    pub slos: Option<sightline_slo::Engine>,
    /// The tenant's alert delivery (silences, maintenance windows, the outbox), when running.
    pub notify: Option<sightline_notify::Notifier>,
    /// Where the tenant's admin actions are recorded, when running with a store.
    pub audit: Option<Arc<AuditLog>>,
}

/// A boxed future of a directory's answer.
pub type TenantFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<TenantApi>, String>> + Send + 'a>>;

/// Where the API finds a tenant's parts (opened on first use by the server).
pub trait TenantDirectory: Send + Sync + std::fmt::Debug {
    fn tenant<'a>(&'a self, name: &'a str) -> TenantFuture<'a>;
}

/// One tenant's parts are a directory of that tenant alone (tools and tests).
impl TenantDirectory for Arc<TenantApi> {
    fn tenant<'a>(&'a self, name: &'a str) -> TenantFuture<'a> {
        Box::pin(async move {
            if name == self.name {
                Ok(self.clone())
            } else {
                Err(format!("tenant {name:?} is not served here"))
            }
        })
    }
}

/// The directory, put in every request's extensions by the router.
#[derive(Debug, Clone)]
pub struct Tenants(pub Arc<dyn TenantDirectory>);

/// The requesting key's tenant's parts.
#[derive(Debug, Clone)]
pub struct Tenant(pub Arc<TenantApi>);

impl std::ops::Deref for Tenant {
    type Target = TenantApi;
    fn deref(&self) -> &TenantApi {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(t) = parts.extensions.get::<Tenant>() {
            return Ok(t.clone());
        }
        let name = parts
            .extensions
            .get::<Principal>()
            .map_or(DEFAULT_TENANT, |p| p.tenant.as_str())
            .to_string();
        let Some(Tenants(directory)) = parts.extensions.get::<Tenants>().cloned() else {
            return Err(ApiError::Internal("no tenant directory".into()));
        };
        let api = directory
            .tenant(&name)
            .await
            .map_err(ApiError::Unavailable)?;
        let tenant = Tenant(api);
        parts.extensions.insert(tenant.clone());
        Ok(tenant)
    }
}

/// The tenant's audit, for [`crate::audit::Actor`].
pub(crate) async fn audit_of(parts: &mut Parts) -> Option<Arc<AuditLog>> {
    let t: Result<Tenant, ApiError> = Tenant::from_request_parts(parts, &()).await;
    t.ok().and_then(|t| t.audit.clone())
}
