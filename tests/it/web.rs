//! The embedded web app is served beside the API: app paths (also with dots, such as SLO
//! names) get the app, built assets their content type, unknown API paths a JSON 404.

use crate::server::TestServer;

#[tokio::test]
async fn the_web_app_and_the_api_share_the_listener() {
    let server = TestServer::start().await;
    let get = |path: &str| server.client().get(server.api_url(path)).send();

    for path in ["/", "/slos/checkout.v2", "/traces?service=shop"] {
        let r = get(path).await.expect("GET");
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(ct.starts_with("text/html"), "{path}: {ct}");
        assert!(r.text().await.expect("body").contains("<div id=\"app\">"));
    }
    let index = get("/").await.expect("GET /").text().await.expect("body");
    let script = index
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a script tag");
    let r = get(script).await.expect("GET script");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );

    assert_eq!(get("/assets/missing.js").await.expect("GET").status(), 404);
    let r = server
        .client()
        .post(server.api_url("/api/v1/nope"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .contains("/api/v1/nope")
    );
    let r = get("/api/v1").await.expect("GET /api/v1");
    let body: serde_json::Value = r.json().await.expect("json");
    assert!(body["endpoints"]["sql"].is_string());
}
