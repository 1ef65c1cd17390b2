//! The built-in load driver: shoppers browsing, filling carts and checking out at a steady
//! rate (Poisson arrivals), as plain HTTP clients (they start the traces).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// At most this many requests in flight; past it, arrivals wait (the rate then drops).
const MAX_IN_FLIGHT: usize = 64;

/// What one arrival does, with its share of arrivals.
#[derive(Debug, Clone, Copy)]
enum Action {
    Browse,
    ViewProduct,
    AddToCart,
    ViewCart,
    Checkout,
}

const MIX: [(Action, f64); 5] = [
    (Action::Browse, 0.35),
    (Action::ViewProduct, 0.25),
    (Action::AddToCart, 0.15),
    (Action::ViewCart, 0.10),
    (Action::Checkout, 0.15),
];

fn pick() -> Action {
    let mut x = rand::random::<f64>();
    for (a, share) in MIX {
        if x < share {
            return a;
        }
        x -= share;
    }
    Action::Browse
}

async fn act(http: &reqwest::Client, base: &str, action: Action) {
    let user = format!("user-{}", rand::random_range(0..200));
    let product = rand::random_range(1..=6);
    let add = |user: &str| {
        http.post(format!("{base}/api/cart/{user}/items"))
            .json(&serde_json::json!({ "product_id": product, "quantity": rand::random_range(1..=3) }))
            .send()
    };
    // Outcomes show in the shop's telemetry; the driver only keeps going.
    let _ = match action {
        Action::Browse => http.get(format!("{base}/api/catalog")).send().await,
        Action::ViewProduct => {
            http.get(format!("{base}/api/catalog/{product}"))
                .send()
                .await
        }
        Action::AddToCart => add(&user).await,
        Action::ViewCart => http.get(format!("{base}/api/cart/{user}")).send().await,
        Action::Checkout => {
            let _ = add(&user).await;
            http.post(format!("{base}/api/checkout"))
                .json(&serde_json::json!({ "user": user }))
                .send()
                .await
        }
    };
}

/// Sends `rate` arrivals per second to the shop at `base` until `stop`.
pub async fn drive(base: String, rate: f64, stop: impl std::future::Future<Output = ()>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent("shop-load-driver/1.0")
        .build()
        .unwrap_or_default();
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tokio::pin!(stop);
    let mut requests = tokio::task::JoinSet::new();
    tracing::info!(rate, "load driver started");
    loop {
        // Exponential inter-arrival times: a Poisson process of `rate` per second.
        let gap = -(1.0 - rand::random::<f64>()).ln() / rate;
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_secs_f64(gap.min(10.0))) => {}
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let http = http.clone();
        let base = base.clone();
        requests.spawn(async move {
            act(&http, &base, pick()).await;
            drop(permit);
        });
        // Forget the requests that are done.
        while requests.try_join_next().is_some() {}
    }
    // The requests still running end with the driver.
    requests.shutdown().await;
}
