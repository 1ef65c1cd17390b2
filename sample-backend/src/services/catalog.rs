//! The catalog: products and their prices.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use super::{Service, fail, traced};

#[derive(Debug, Clone, Serialize)]
pub struct Product {
    pub id: u32,
    pub name: &'static str,
    pub price_cents: u64,
}

pub const PRODUCTS: [Product; 6] = [
    Product {
        id: 1,
        name: "espresso beans",
        price_cents: 1490,
    },
    Product {
        id: 2,
        name: "pour-over kettle",
        price_cents: 4900,
    },
    Product {
        id: 3,
        name: "ceramic dripper",
        price_cents: 2400,
    },
    Product {
        id: 4,
        name: "paper filters",
        price_cents: 590,
    },
    Product {
        id: 5,
        name: "hand grinder",
        price_cents: 8900,
    },
    Product {
        id: 6,
        name: "travel mug",
        price_cents: 1900,
    },
];

/// Whether `id` is a product (the frontend checks carts against it without a call).
pub fn exists(id: u32) -> bool {
    PRODUCTS.iter().any(|p| p.id == id)
}

/// `GET /products`, `GET /products/{id}`.
pub fn router(svc: Arc<Service>) -> axum::Router {
    let ins = svc.ins.clone();
    traced(
        axum::Router::new()
            .route("/products", get(list))
            .route("/products/{id}", get(product))
            .with_state(svc),
        ins,
    )
}

async fn list(State(svc): State<Arc<Service>>) -> Response {
    if let Err(e) = svc.faults.apply("catalog").await {
        tracing::error!(error = %e, "catalog query failed");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CatalogError", e);
    }
    svc.work("catalog.query", 3).await;
    Json(serde_json::json!({ "products": PRODUCTS })).into_response()
}

async fn product(State(svc): State<Arc<Service>>, Path(id): Path<u32>) -> Response {
    if let Err(e) = svc.faults.apply("catalog").await {
        tracing::error!(error = %e, product = id, "catalog lookup failed");
        return fail(StatusCode::INTERNAL_SERVER_ERROR, "CatalogError", e);
    }
    svc.work("catalog.lookup", 2).await;
    match PRODUCTS.iter().find(|p| p.id == id) {
        Some(p) => Json(p).into_response(),
        None => fail(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no product {id}"),
        ),
    }
}
