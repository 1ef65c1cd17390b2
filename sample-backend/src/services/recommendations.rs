//! Recommendations: one product for a user, looked up in the catalog so it is never one that
//! does not exist.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Service, fail, traced};
use crate::instrument::Client;

#[derive(Debug)]
pub struct Recommendations {
    pub svc: Service,
    pub catalog: Client,
}

/// `GET /recommendations/{user}`.
pub fn router(r: Arc<Recommendations>) -> axum::Router {
    let ins = r.svc.ins.clone();
    traced(
        axum::Router::new()
            .route("/recommendations/{user}", get(recommend))
            .with_state(r),
        ins,
    )
}

async fn recommend(State(r): State<Arc<Recommendations>>, Path(user): Path<String>) -> Response {
    if let Err(e) = r.svc.faults.apply("recommendations").await {
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "RecommenderError", e);
    }
    r.svc.work("recommendations.rank", 5).await;
    let pick = (user.len() % super::catalog::PRODUCTS.len()) as u32 + 1;
    match r
        .catalog
        .call(
            reqwest::Method::GET,
            &format!("/products/{pick}"),
            None,
            Duration::from_millis(150),
        )
        .await
    {
        Ok(p) => Json(serde_json::json!({ "products": [p["id"]] })).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, product = pick, "the catalog did not confirm the pick");
            fail(
                StatusCode::BAD_GATEWAY,
                "CatalogUnavailable",
                format!("catalog: {e}"),
            )
        }
    }
}
