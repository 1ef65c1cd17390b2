//! The made-up services the load tool impersonates: their routes, databases, calls to each
//! other and error messages, so that generated telemetry looks like a real system's.

#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub(crate) method: &'static str,
    pub(crate) route: &'static str,
    pub(crate) base_ms: f64,
}

#[derive(Clone, Copy)]
pub(crate) struct DbQuery {
    pub(crate) op: &'static str,
    pub(crate) collection: &'static str,
    pub(crate) text: &'static str,
}

pub(crate) struct Db {
    pub(crate) system: &'static str,
    pub(crate) host: &'static str,
    pub(crate) port: u16,
    pub(crate) queries: &'static [DbQuery],
}

pub(crate) struct ServiceDef {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    pub(crate) language: &'static str,
    pub(crate) scope_name: &'static str,
    pub(crate) scope_version: &'static str,
    pub(crate) port: u16,
    pub(crate) routes: &'static [Route],
    pub(crate) internal_ops: &'static [&'static str],
    /// Indices into SERVICES this service calls over HTTP.
    pub(crate) calls: &'static [usize],
    pub(crate) db: Option<Db>,
}

pub(crate) const fn r(method: &'static str, route: &'static str, base_ms: f64) -> Route {
    Route {
        method,
        route,
        base_ms,
    }
}

pub(crate) const fn q(op: &'static str, collection: &'static str, text: &'static str) -> DbQuery {
    DbQuery {
        op,
        collection,
        text,
    }
}

pub(crate) const SERVICES: &[ServiceDef] = &[
    ServiceDef {
        name: "frontend",
        version: "2.14.1",
        language: "nodejs",
        scope_name: "@opentelemetry/instrumentation-http",
        scope_version: "0.57.1",
        port: 8080,
        routes: &[
            r("GET", "/", 25.0),
            r("GET", "/api/products/{id}", 18.0),
            r("POST", "/api/cart", 22.0),
            r("POST", "/api/checkout", 120.0),
            r("GET", "/api/recommendations", 40.0),
        ],
        internal_ops: &["session.load", "template.render", "currency.convert"],
        calls: &[1, 2, 4],
        db: None,
    },
    ServiceDef {
        name: "cart",
        version: "1.8.0",
        language: "go",
        scope_name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
        scope_version: "0.60.0",
        port: 7070,
        routes: &[
            r("GET", "/cart/{user_id}", 6.0),
            r("POST", "/cart/{user_id}/items", 9.0),
            r("DELETE", "/cart/{user_id}", 7.0),
        ],
        internal_ops: &["cart.load", "cart.merge", "cart.validate"],
        calls: &[4],
        db: Some(Db {
            system: "redis",
            host: "redis-cart",
            port: 6379,
            queries: &[
                q("HGETALL", "cart", "HGETALL cart:?"),
                q("HSET", "cart", "HSET cart:? item ? qty ?"),
            ],
        }),
    },
    ServiceDef {
        name: "checkout",
        version: "3.2.0",
        language: "java",
        scope_name: "io.opentelemetry.tomcat-10.0",
        scope_version: "2.12.0-alpha",
        port: 5050,
        routes: &[
            r("POST", "/checkout", 80.0),
            r("GET", "/orders/{order_id}", 12.0),
        ],
        internal_ops: &["order.prepare", "tax.compute", "email.enqueue"],
        calls: &[1, 3, 4, 5],
        db: Some(Db {
            system: "postgresql",
            host: "orders-db",
            port: 5432,
            queries: &[
                q(
                    "INSERT",
                    "orders",
                    "INSERT INTO orders (id, user_id, total) VALUES ($1, $2, $3)",
                ),
                q("SELECT", "orders", "SELECT * FROM orders WHERE id = $1"),
            ],
        }),
    },
    ServiceDef {
        name: "payment",
        version: "0.9.4",
        language: "python",
        scope_name: "opentelemetry.instrumentation.flask",
        scope_version: "0.51b0",
        port: 50051,
        routes: &[r("POST", "/charge", 45.0), r("POST", "/refund", 30.0)],
        internal_ops: &["card.validate", "fraud.score", "charge.authorize"],
        calls: &[],
        db: None,
    },
    ServiceDef {
        name: "product-catalog",
        version: "1.3.7",
        language: "rust",
        scope_name: "tracing-opentelemetry",
        scope_version: "0.30.0",
        port: 3550,
        routes: &[
            r("GET", "/products", 8.0),
            r("GET", "/products/{id}", 4.0),
            r("GET", "/products/search", 15.0),
        ],
        internal_ops: &["catalog.filter", "json.serialize"],
        calls: &[],
        db: Some(Db {
            system: "postgresql",
            host: "catalog-db",
            port: 5432,
            queries: &[
                q(
                    "SELECT",
                    "products",
                    "SELECT id, name, price FROM products WHERE id = $1",
                ),
                q(
                    "SELECT",
                    "products",
                    "SELECT id, name FROM products WHERE name ILIKE $1 LIMIT 20",
                ),
            ],
        }),
    },
    ServiceDef {
        name: "shipping",
        version: "1.1.2",
        language: "go",
        scope_name: "go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp",
        scope_version: "0.60.0",
        port: 50052,
        routes: &[r("POST", "/quote", 10.0), r("POST", "/ship", 35.0)],
        internal_ops: &["quote.compute", "label.create"],
        calls: &[],
        db: None,
    },
];

pub(crate) const HOST_SUFFIXES: &[&str] = &["7f9c2-xk2lp", "7f9c2-q8mzr", "5d4b8-w2n7v"];

pub(crate) const ERROR_MESSAGES: &[(&str, &str)] = &[
    ("TimeoutError", "upstream request timed out after 5000ms"),
    ("ConnectionResetError", "connection reset by peer"),
    ("PaymentDeclined", "card declined: insufficient funds"),
    ("PoolExhausted", "database connection pool exhausted"),
    (
        "NullPointerException",
        "Cannot invoke \"Order.getTotal()\" because \"order\" is null",
    ),
];

/// Bucket bounds (seconds) of the HTTP duration histograms.
pub(crate) const DURATION_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
