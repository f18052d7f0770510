//! X4: the HTTP API in process (`tower::ServiceExt::oneshot`) over a real
//! store in a temporary data directory: every route, bad input per route,
//! problem+json errors, ETag/If-Match, correlation ids, and the OpenAPI
//! document against the real routes.

mod support;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use kontextual_app::{Services, StoreOpenMode};
use kontextual_model::{Actor, Namespace};
use kontextual_server::{AppState, ServeConfig, router};
use serde_json::{Value, json};
use support::TestStore;
use tower::ServiceExt;

struct Api {
    store: TestStore,
    svc: Arc<Services>,
    app: axum::Router,
    doc: utoipa::openapi::OpenApi,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn problem(&self, status: StatusCode, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let p = self.json();
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["status"], status.as_u16());
        assert!(p["type"].as_str().unwrap().ends_with(code));
        p
    }
}

impl Api {
    fn new() -> Api {
        Api::with_limits(kontextual_server::limits::LimitConfig {
            per_key_per_second: 1000,
            per_key_burst: 1000,
            failed_auth_per_minute: 10,
        })
    }

    fn with_limits(limits: kontextual_server::limits::LimitConfig) -> Api {
        let store = TestStore::new();
        let svc = Arc::new(store.open(StoreOpenMode::Create));
        let state = AppState::new(
            svc.clone(),
            Actor::local_admin(),
            Namespace::default(),
            limits,
        );
        let cfg = ServeConfig {
            max_body_bytes: 64 * 1024,
            ..Default::default()
        };
        let (app, doc) = router(state, &cfg);
        Api {
            store,
            svc,
            app,
            doc,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> Reply {
        self.send(
            Request::builder()
                .method(method)
                .uri(uri)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    async fn put(&self, r: &str, content: &str, headers: &[(&str, &str)]) -> Reply {
        let mut b = Request::put(format!("/v1/artifacts?ref={r}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::from(content.to_owned())).unwrap())
            .await
    }

    /// A collection `handbook` with `guide.md` and `notes.md`.
    async fn seeded() -> (Api, String) {
        let api = Api::new();
        let r = api
            .json(Method::POST, "/v1/collections", json!({"name": "handbook"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        let r = api
            .put(
                "handbook/guide.md",
                "# Guide\n\n## Install\n\n### Linux\n\napt install kontextual\n\n## Retry policy\n\nThree attempts.\n",
                &[],
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        let id = r.json()["artifact"]["id"].as_str().unwrap().to_owned();
        api.put("handbook/notes.md", "# Notes\n\nborrow checker\n", &[])
            .await;
        (api, id)
    }
}

/// X4: every route answers; reads, writes and errors have the right shape.
#[tokio::test]
async fn x4_routes_answer_with_json_and_etags() {
    let (api, id) = Api::seeded().await;
    assert_eq!(api.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(api.get("/readyz").await.status, StatusCode::OK);
    let c = api.get("/v1/collections").await.json();
    assert_eq!(c["items"][0]["name"], "handbook");
    assert_eq!(
        api.get("/v1/collections/handbook").await.json()["artifact_count"],
        2
    );
    let a = api.get(&format!("/v1/artifacts/{id}")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.headers[header::ETAG], "\"1\"");
    let by_ref = api.get("/v1/artifacts/by-ref?ref=handbook/guide.md").await;
    assert_eq!(by_ref.json()["id"], id.as_str());
    let content = api.get(&format!("/v1/artifacts/{id}/content")).await;
    assert!(
        content.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    assert!(String::from_utf8_lossy(&content.body).starts_with("# Guide"));
    let list = api
        .get("/v1/artifacts?collection=handbook&limit=1")
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["next"].is_string());
    let revs = api
        .get(&format!("/v1/artifacts/{id}/revisions"))
        .await
        .json();
    assert_eq!(revs["items"][0]["change"], "created");
    assert_eq!(
        api.get(&format!("/v1/artifacts/{id}/revisions/1"))
            .await
            .json()["revision"],
        1
    );
    let secs = api
        .get(&format!("/v1/artifacts/{id}/sections"))
        .await
        .json();
    assert_eq!(secs[2]["selector"], "install/linux");
    let sec = api
        .get(&format!("/v1/artifacts/{id}/sections/install%2Flinux"))
        .await
        .json();
    assert_eq!(sec["heading"], "Linux");
    let hits = api.get("/v1/search?q=borrow+checker").await.json();
    assert_eq!(hits["hits"][0]["ref"], "handbook/notes.md");
    assert_eq!(hits["index"]["lag"], 0);
    let rel = api
        .json(
            Method::POST,
            "/v1/relations",
            json!({"source": "handbook/notes.md", "type": "references", "target": "handbook/guide.md"}),
        )
        .await;
    assert_eq!(rel.status, StatusCode::CREATED);
    let rel_id = rel.json()["id"].as_str().unwrap().to_owned();
    let related = api
        .get(&format!("/v1/artifacts/{id}/related?expand=references"))
        .await
        .json();
    assert_eq!(related[0]["ref"], "handbook/notes.md");
    assert_eq!(
        api.get("/v1/relations?artifact=handbook/guide.md")
            .await
            .json()["items"][0]["id"],
        rel_id.as_str()
    );
    let pkg = api
        .json(
            Method::POST,
            "/v1/context-packages",
            json!({"name": "brief", "queries": ["retry"], "budget": 500}),
        )
        .await;
    assert_eq!(
        pkg.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&pkg.body)
    );
    let again = api
        .json(
            Method::POST,
            "/v1/context-packages",
            json!({"name": "brief", "queries": ["retry"], "budget": 500}),
        )
        .await;
    assert_eq!(
        again.status,
        StatusCode::OK,
        "same manifest: nothing stored"
    );
    assert_eq!(
        api.get("/v1/context-packages/brief").await.json()["version"],
        1
    );
    assert_eq!(
        api.get("/v1/context-packages").await.json()["items"][0]["name"],
        "brief"
    );
    let md = api.get("/v1/context-packages/brief/markdown").await;
    assert!(String::from_utf8_lossy(&md.body).starts_with("# Context: brief"));
    assert_eq!(
        api.get("/v1/context-packages/brief/verify").await.json()["verified"],
        true
    );
    let runs = api.get("/v1/runs").await.json();
    assert!(runs["items"].as_array().unwrap().is_empty());
    let audit = api.get("/v1/audit?action=artifact").await.json();
    assert!(audit.as_array().unwrap().len() >= 2);
    assert_eq!(api.get("/v1/audit/verify").await.json()["valid"], true);
    assert_eq!(api.get("/v1/index").await.json()["health"], "ok");
    let del = api
        .send(
            Request::delete(format!("/v1/relations/{rel_id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(del.status, StatusCode::OK);
    let diff_first = api.get(&format!("/v1/artifacts/{id}/diff")).await;
    diff_first.problem(StatusCode::BAD_REQUEST, "invalid_input");
}

/// X4: updates and deletes honour If-Match; a stale ETag is 412 and changes nothing.
#[tokio::test]
async fn x4_if_match_maps_to_optimistic_concurrency() {
    let (api, id) = Api::seeded().await;
    let stale = api
        .put(
            "handbook/guide.md",
            "# Guide v2\n",
            &[("if-match", "\"7\"")],
        )
        .await;
    stale.problem(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let ok = api
        .put(
            "handbook/guide.md",
            "# Guide v2\n",
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.headers[header::ETAG], "\"2\"");
    let create_only = api
        .put("handbook/guide.md", "# again\n", &[("if-none-match", "*")])
        .await;
    create_only.problem(StatusCode::CONFLICT, "conflict");
    let del_stale = api
        .send(
            Request::delete(format!("/v1/artifacts/{id}"))
                .header("if-match", "\"1\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    del_stale.problem(StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let del = api
        .send(
            Request::delete(format!("/v1/artifacts/{id}"))
                .header("if-match", "\"2\"")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(del.json()["state"], "deleted");
    let bad = api
        .put("handbook/guide.md", "x", &[("if-match", "yesterday")])
        .await;
    bad.problem(StatusCode::BAD_REQUEST, "invalid_input");
}

/// X4: bad input per route is a 4xx problem, and stores nothing.
#[tokio::test]
async fn x4_bad_input_is_a_problem_and_stores_nothing() {
    let (api, _) = Api::seeded().await;
    let before = api.get("/v1/audit").await.json().as_array().unwrap().len();
    // malformed JSON, wrong types, unknown (server-owned) fields
    let r = api
        .send(
            Request::post("/v1/collections")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"name\": "))
                .unwrap(),
        )
        .await;
    r.problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.json(Method::POST, "/v1/collections", json!({"name": 7}))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let r = api
        .json(
            Method::POST,
            "/v1/collections",
            json!({"name": "x", "id": "01a1fd4b-a0ba-726f-800c-8ac13813d520"}),
        )
        .await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert!(
        p["detail"].as_str().unwrap().contains("unknown field"),
        "{p}"
    );
    api.json(
        Method::POST,
        "/v1/relations",
        json!({"source": "handbook/notes.md", "type": "references", "target": "handbook/guide.md", "revision": 9}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    api.json(
        Method::POST,
        "/v1/context-packages",
        json!({"name": "p", "budget": 10, "digest": "sha256:00"}),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    // wrong content type
    api.send(
        Request::post("/v1/collections")
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await
    .problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // invalid ids and references
    api.get("/v1/artifacts/not-an-id")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/runs/42")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/artifacts/by-ref?ref=%2Fetc%2Fpasswd")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.put("handbook/../x.md", "x", &[])
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.put("handbook/x.md&metadata=[1]", "x", &[])
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    // unknown query parameters, page sizes, search syntax
    api.get("/v1/artifacts?colection=handbook")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/search?q=x&colection=handbook")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/search?q=x&limit=1000")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/collections?limit=5000")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    let p = api
        .get("/v1/search?q=%22unclosed&syntax=true")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        p["detail"].as_str().unwrap().contains("never closed"),
        "{p}"
    );
    // plain text (the default) searches any string as words; only an
    // empty query is refused
    for q in [
        "%22unclosed",
        "what+is+%22ownership%3F+(a)+AND+-b",
        "c%2B%2B+vs+c%23+--+which%3F",
    ] {
        let v = api.get(&format!("/v1/search?q={q}")).await.json();
        assert!(v["hits"].is_array(), "{q}: {v}");
    }
    let p = api
        .get("/v1/search?q=+")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(p["detail"].as_str().unwrap().contains("empty"), "{p}");
    api.get("/v1/search?q=x&syntax=maybe")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/search")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    // oversized body (the test server allows 64 KiB)
    api.put("handbook/big.md", &"x".repeat(100 * 1024), &[])
        .await
        .problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // not found, wrong method
    api.get("/v1/collections/nope")
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.get("/v1/nowhere")
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.send(
        Request::patch("/v1/search?q=x")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .problem(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let after = api.get("/v1/audit").await.json().as_array().unwrap().len();
    assert_eq!(before, after, "no bad request wrote anything");
    assert!(
        api.get("/v1/artifacts/by-ref?ref=handbook/big.md")
            .await
            .status
            == StatusCode::NOT_FOUND
    );
}

/// X3/X4: a W3C traceparent becomes the correlation id: echoed in the
/// response and recorded in the audit record of the write it caused.
#[tokio::test]
async fn x3_traceparent_is_the_correlation_id_of_audit_records() {
    let api = Api::new();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = api
        .send(
            Request::post("/v1/collections")
                .header(header::CONTENT_TYPE, "application/json")
                .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
                .body(Body::from(json!({"name": "traced"}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.headers["x-correlation-id"], trace);
    let audit = api.get("/v1/audit?action=collection.create").await.json();
    assert_eq!(audit[0]["correlation_id"], trace);
    // and the audit log can be queried by it
    let by_id = api
        .get(&format!("/v1/audit?correlation_id={trace}"))
        .await
        .json();
    assert_eq!(by_id.as_array().unwrap().len(), 1);
    assert_eq!(by_id[0]["action"], "collection.create");
    // without one, a fresh id is generated and returned
    let r = api.get("/healthz").await;
    assert_eq!(r.headers["x-correlation-id"].len(), 32);
    // a problem carries it too
    let p = api.get("/v1/collections/nope").await.json();
    assert_eq!(p["correlation_id"].as_str().unwrap().len(), 32);
}

/// X4: the OpenAPI document is 3.1 and matches the real routes: every
/// documented operation is served (not the fallback), and the routes the
/// API exists for are all documented.
#[tokio::test]
async fn x4_openapi_matches_the_routes() {
    let (api, id) = Api::seeded().await;
    let served: Value = api.get("/openapi.json").await.json();
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
    let doc = serde_json::to_value(&api.doc).unwrap();
    assert_eq!(served, doc);
    let paths = doc["paths"].as_object().unwrap();
    let mut ops = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops.sort();
    let expected = [
        ("DELETE", "/v1/artifacts/{id}"),
        ("DELETE", "/v1/grants"),
        ("DELETE", "/v1/holds/{artifact}"),
        ("DELETE", "/v1/keys/{id}"),
        ("DELETE", "/v1/quarantines/{artifact}"),
        ("DELETE", "/v1/relations/{id}"),
        ("DELETE", "/v1/webhooks/{id}"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("GET", "/v1/access"),
        ("GET", "/v1/artifacts"),
        ("GET", "/v1/artifacts/by-ref"),
        ("GET", "/v1/artifacts/{id}"),
        ("GET", "/v1/artifacts/{id}/content"),
        ("GET", "/v1/artifacts/{id}/diff"),
        ("GET", "/v1/artifacts/{id}/related"),
        ("GET", "/v1/artifacts/{id}/revisions"),
        ("GET", "/v1/artifacts/{id}/revisions/{revision}"),
        ("GET", "/v1/artifacts/{id}/sections"),
        ("GET", "/v1/artifacts/{id}/sections/{selector}"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/clearances"),
        ("GET", "/v1/collections"),
        ("GET", "/v1/collections/{name}"),
        ("GET", "/v1/context-packages"),
        ("GET", "/v1/context-packages/{name}"),
        ("GET", "/v1/context-packages/{name}/markdown"),
        ("GET", "/v1/context-packages/{name}/verify"),
        ("GET", "/v1/event-types"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/stream"),
        ("GET", "/v1/events/{seq}"),
        ("GET", "/v1/grants"),
        ("GET", "/v1/holds"),
        ("GET", "/v1/index"),
        ("GET", "/v1/jobs"),
        ("GET", "/v1/jobs/{id}"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/quarantines"),
        ("GET", "/v1/relations"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/{id}"),
        ("GET", "/v1/search"),
        ("GET", "/v1/webhook-deliveries/{id}"),
        ("GET", "/v1/webhooks"),
        ("GET", "/v1/webhooks/{id}"),
        ("GET", "/v1/webhooks/{id}/deliveries"),
        ("PATCH", "/v1/webhooks/{id}"),
        ("POST", "/v1/collections"),
        ("POST", "/v1/context-packages"),
        ("POST", "/v1/export"),
        ("POST", "/v1/grants"),
        ("POST", "/v1/holds"),
        ("POST", "/v1/jobs"),
        ("POST", "/v1/jobs/{id}/{action}"),
        ("POST", "/v1/keys"),
        ("POST", "/v1/quarantines"),
        ("POST", "/v1/reindex"),
        ("POST", "/v1/relations"),
        ("POST", "/v1/repair"),
        ("POST", "/v1/runs/{id}/rerun"),
        ("POST", "/v1/webhook-deliveries/{id}/resend"),
        ("POST", "/v1/webhooks"),
        ("POST", "/v1/webhooks/{id}/disable"),
        ("POST", "/v1/webhooks/{id}/enable"),
        ("POST", "/v1/webhooks/{id}/recover"),
        ("POST", "/v1/webhooks/{id}/rotate-secret"),
        ("PUT", "/v1/artifacts"),
        ("PUT", "/v1/clearances"),
    ];
    let got: Vec<(&str, &str)> = ops.iter().map(|(m, p)| (m.as_str(), p.as_str())).collect();
    assert_eq!(got, expected);
    // every documented operation reaches a handler: never the router's
    // "no such route" or a 405
    for (method, path) in &ops {
        let uri = path
            .replace("{id}", &id)
            .replace("{revision}", "1")
            .replace("{selector}", "install")
            .replace("{name}", "handbook")
            .replace("{action}", "retry")
            .replace("{artifact}", &id);
        if path == "/v1/events/stream" {
            // a stream never ends: its head is the answer
            let res = api
                .app
                .clone()
                .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK, "{method} {uri}");
            continue;
        }
        let r = api
            .send(
                Request::builder()
                    .method(method.as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        if r.status == StatusCode::NOT_FOUND {
            let p = r.json();
            assert!(
                !p["detail"].as_str().unwrap_or("").contains("no such route"),
                "{method} {uri} is documented but not routed"
            );
        }
    }
}

/// X4: a complete contract. Every operation documents a non-empty schema
/// for each 2xx answer; every route that takes a key says so (the bearer
/// scheme), the open probes do not; every operation documents the
/// problem+json answers it can give, with the Problem schema; every
/// `{artifact}` takes the same forms; ids are UUIDs.
#[tokio::test]
async fn x4_openapi_is_a_complete_contract() {
    let api = Api::new();
    let doc: Value = api.get("/openapi.json").await.json();
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer");
    let resolve = |v: &Value| -> Value {
        match v["$ref"].as_str() {
            Some(r) => {
                let mut at = &doc;
                for part in r.trim_start_matches("#/").split('/') {
                    at = &at[part];
                }
                at.clone()
            }
            None => v.clone(),
        }
    };
    let open = ["/healthz", "/readyz"];
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            checked += 1;
            let what = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            let ok: Vec<_> = responses.keys().filter(|s| s.starts_with('2')).collect();
            assert!(!ok.is_empty(), "{what}: no 2xx answer");
            for status in ok {
                let answer = resolve(&responses[status]);
                let content = answer["content"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{what} {status}: no content"));
                for (media, c) in content {
                    let schema = &c["schema"];
                    assert!(
                        schema.as_object().is_some_and(|o| !o.is_empty()),
                        "{what} {status} {media}: empty schema"
                    );
                }
            }
            let security = &op["security"];
            if open.contains(&path.as_str()) {
                assert!(security.is_null(), "{what}: a probe takes no key");
                continue;
            }
            assert_eq!(
                security,
                &json!([{"bearer": []}]),
                "{what}: no bearer security"
            );
            let mut errors = vec!["400", "401", "403", "404", "408", "429", "500", "503"];
            if method != "get" {
                // a full disk refuses any write (issue 17)
                errors.push("507");
            }
            let body = op["requestBody"]["content"].as_object();
            if let Some(types) = body {
                errors.push("413");
                if types.contains_key("application/json") {
                    errors.extend(["415", "422"]);
                }
            }
            // a reused Idempotency-Key is 422, with a body or without
            let idempotent = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "Idempotency-Key");
            if idempotent && !errors.contains(&"422") {
                errors.push("422");
            }
            for status in errors {
                let answer = resolve(
                    &responses
                        .get(status)
                        .unwrap_or_else(|| panic!("{what}: {status} undocumented"))
                        .clone(),
                );
                let problem = &answer["content"]["application/problem+json"]["schema"];
                assert_eq!(
                    resolve(problem)["properties"]["code"]["type"],
                    "string",
                    "{what} {status}: not a problem+json answer"
                );
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                if p["in"] == "path" && name == "artifact" {
                    assert!(
                        p["schema"]["pattern"]
                            .as_str()
                            .is_some_and(|r| r.contains('/')),
                        "{what}: {{artifact}} takes an id or COLLECTION/NAME"
                    );
                }
                if p["in"] == "path" && name == "id" && !path.starts_with("/v1/keys") {
                    assert_eq!(p["schema"]["format"], "uuid", "{what}: {{id}} is a UUID");
                }
                if name == "limit" {
                    assert!(
                        p["schema"]["maximum"].is_number(),
                        "{what}: limit has no bound"
                    );
                }
            }
        }
    }
    assert_eq!(checked, 71);
}

/// X4: DELETE /v1/holds/{artifact} takes COLLECTION/NAME like every other
/// `{artifact}`; refusals of the router and of extractors carry the
/// request's correlation id.
#[tokio::test]
async fn x4_artifact_forms_and_correlated_refusals() {
    let (api, _) = Api::seeded().await;
    let r = api
        .json(
            Method::POST,
            "/v1/holds",
            json!({"artifact": "handbook/guide.md", "reason": "case 7"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = api
        .send(
            Request::delete("/v1/holds/handbook%2Fguide.md")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["name"], "guide.md");
    for (method, uri, body) in [
        (Method::GET, "/v1/nowhere", None),
        (Method::PATCH, "/v1/collections", None),
        (Method::GET, "/v1/collections?limit=0", None),
        (Method::GET, "/v1/artifacts/not-an-id", None),
        (Method::POST, "/v1/collections", Some("{\"name\":")),
    ] {
        let mut b = Request::builder().method(method.clone()).uri(uri).header(
            kontextual_server::CORRELATION_HEADER,
            "4bf92f3577b34da6a3ce929d0e0e4736",
        );
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        let r = api
            .send(b.body(body.map_or_else(Body::empty, Body::from)).unwrap())
            .await;
        assert!(r.status.is_client_error(), "{method} {uri}: {}", r.status);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            r.json()["correlation_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "{method} {uri}"
        );
    }
}

/// X4 (found by schemathesis): a search or context bound far outside the
/// index's time range (years 1678–2262) means "since/until forever"; it
/// answered 500 (an overflow in the index) before.
#[tokio::test]
async fn x4_far_times_are_forever_not_a_crash() {
    let (api, _) = Api::seeded().await;
    let r = api
        .get("/v1/search?q=guide&since=0115-03-01T22:12:54Z&until=9000-01-01T00:00:00Z")
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.json()["total"].as_u64().unwrap() >= 1);
    let r = api
        .json(
            Method::POST,
            "/v1/context-packages",
            json!({"name": "far", "queries": ["guide"], "budget": 500, "since": "0001-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

/// X4: a request not answered within the request timeout is a 408
/// problem+json with the request's correlation id (it was an empty 408).
#[tokio::test]
async fn x4_timeouts_are_problems_with_a_correlation_id() {
    let store = TestStore::new();
    let svc = store.open(StoreOpenMode::Create);
    let state = AppState::new(
        Arc::new(svc),
        Actor::local_admin(),
        Namespace::default(),
        kontextual_server::limits::LimitConfig::default(),
    );
    let cfg = ServeConfig {
        request_timeout: std::time::Duration::from_millis(100),
        ..Default::default()
    };
    let (app, _) = router(state, &cfg);
    // a body that never arrives: the upload waits until the timeout
    let never = futures_util::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let res = app
        .oneshot(
            Request::put("/v1/artifacts?ref=handbook/slow.md")
                .header(
                    kontextual_server::CORRELATION_HEADER,
                    "4bf92f3577b34da6a3ce929d0e0e4736",
                )
                .body(Body::from_stream(never))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(
        res.headers()[kontextual_server::CORRELATION_HEADER],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let p: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(p["code"], "request_timeout");
    assert_eq!(p["correlation_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

impl Api {
    async fn with_key(&self, method: Method, uri: &str, token: &str, body: Option<Value>) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            b = b.header(header::CONTENT_TYPE, "application/json");
        }
        self.send(
            b.body(body.map_or_else(Body::empty, |v| Body::from(v.to_string())))
                .unwrap(),
        )
        .await
    }
}

/// X1/X2: once a key exists every request needs one; scopes bound what a
/// key may do; revoked, expired, malformed or wrong tokens are refused; the
/// token is shown once and never stored or audited.
#[tokio::test]
async fn x1_api_keys_authenticate_and_scope_requests() {
    let (api, id) = Api::seeded().await;
    let g = api
        .json(
            Method::POST,
            "/v1/grants",
            json!({"actor": "agent:reader", "permission": "write", "collection": "handbook"}),
        )
        .await;
    assert_eq!(
        g.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&g.body)
    );
    let made = api
        .json(
            Method::POST,
            "/v1/keys",
            json!({"name": "reader", "actor": "agent:reader", "scopes": ["read"]}),
        )
        .await;
    assert_eq!(
        made.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&made.body)
    );
    let made = made.json();
    let reader = made["token"].as_str().unwrap().to_owned();
    assert!(reader.starts_with("kx_"));
    assert!(made["key"].get("secret_hash").is_none());
    // from now on, no key, no access
    let r = api.get("/v1/search?q=borrow").await;
    r.problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
    // the reader reads, but may not write or administer
    let r = api
        .with_key(Method::GET, "/v1/search?q=borrow", &reader, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    api.with_key(
        Method::POST,
        "/v1/collections",
        &reader,
        Some(json!({"name": "nope"})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "permission_denied");
    api.with_key(Method::GET, "/v1/keys", &reader, None)
        .await
        .problem(StatusCode::FORBIDDEN, "permission_denied");
    // a wrong secret, a malformed token, another scheme
    let wrong = format!(
        "{}{}",
        &reader[..reader.len() - 1],
        if reader.ends_with('0') { '1' } else { '0' }
    );
    let p = api
        .with_key(Method::GET, "/v1/search?q=x", &wrong, None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(p["detail"], "the API key is not valid");
    api.with_key(Method::GET, "/v1/search?q=x", "not-a-key", None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    api.send(
        Request::get("/v1/search?q=x")
            .header(header::AUTHORIZATION, "Basic abc")
            .body(Body::empty())
            .unwrap(),
    )
    .await
    .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    // writes made with a key are attributed to its actor; the admin key is
    // made the way the CLI makes it (the local admin, through the services)
    let admin_tok = support::blocking(|| {
        let svc = api.store.open(StoreOpenMode::ReadWrite);
        let local = kontextual_app::Caller::new(Actor::local_admin(), Namespace::default());
        svc.grant(
            &local,
            "service:ops".parse().unwrap(),
            kontextual_model::GrantPermission::Admin,
            kontextual_app::GrantOn::Namespace,
        )
        .unwrap();
        svc.key_create(
            &local,
            "ops",
            "service:ops".parse().unwrap(),
            vec![kontextual_model::Scope::Admin],
            None,
        )
        .unwrap()
        .token
    });
    let w = api
        .with_key(
            Method::POST,
            "/v1/collections",
            &admin_tok,
            Some(json!({"name": "ops"})),
        )
        .await;
    assert_eq!(w.status, StatusCode::CREATED);
    let audit = api
        .with_key(
            Method::GET,
            "/v1/audit?action=collection.create",
            &admin_tok,
            None,
        )
        .await
        .json();
    assert_eq!(
        audit.as_array().unwrap().last().unwrap()["actor"],
        "service:ops"
    );
    let all = api
        .with_key(Method::GET, "/v1/audit", &admin_tok, None)
        .await;
    let text = String::from_utf8_lossy(&all.body);
    let secret = reader.rsplit('_').next().unwrap();
    assert!(!text.contains(secret), "a secret reached the audit log");
    // listing shows keys without secrets; revoking locks the reader out
    let keys = api
        .with_key(Method::GET, "/v1/keys", &admin_tok, None)
        .await
        .json();
    assert_eq!(keys["items"].as_array().unwrap().len(), 2);
    assert!(!keys.to_string().contains(secret));
    let reader_id = made["key"]["id"].as_str().unwrap();
    let r = api
        .with_key(
            Method::DELETE,
            &format!("/v1/keys/{reader_id}"),
            &admin_tok,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["revoked_at"].is_string());
    let p = api
        .with_key(Method::GET, &format!("/v1/artifacts/{id}"), &reader, None)
        .await
        .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
}

/// X4: Idempotency-Key on creating POSTs: a retry replays the first answer
/// (and writes nothing), another request with the same key is 422. (That
/// keys are scoped per caller is a store conformance case.)
#[tokio::test]
async fn x4_idempotency_keys_replay_the_first_answer() {
    let api = Api::new();
    let post = |key: &'static str, name: &'static str| {
        Request::post("/v1/collections")
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(Body::from(json!({"name": name}).to_string()))
            .unwrap()
    };
    let first = api.send(post("k-1", "handbook")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert!(first.headers.get("idempotency-replayed").is_none());
    let again = api.send(post("k-1", "handbook")).await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.headers["idempotency-replayed"], "true");
    assert_eq!(again.body, first.body);
    api.send(post("k-1", "other"))
        .await
        .problem(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused");
    // a failed request's answer is kept too (it was a complete answer)
    let dup = api.send(post("k-2", "handbook")).await;
    dup.problem(StatusCode::CONFLICT, "conflict");
    let dup2 = api.send(post("k-2", "handbook")).await;
    assert_eq!(dup2.headers["idempotency-replayed"], "true");
    assert_eq!(dup2.body, dup.body);
    let creates = api.get("/v1/audit?action=collection.create").await.json();
    assert_eq!(
        creates.as_array().unwrap().len(),
        1,
        "one creation, whatever the retries"
    );
    api.send(
        Request::post("/v1/collections")
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", "")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "invalid_input");
}

/// X2 (OWASP API1 BOLA, API5 BFLA): routes × actors. A collection reader
/// sees only its collection (search never returns or counts the rest; an
/// unreadable object is 404, not 403), a collection writer writes only
/// there, only a namespace admin reaches admin routes, and a key with no
/// grant sees nothing at all.
#[tokio::test]
async fn x2_grants_bound_every_route_for_every_actor() {
    let (api, guide_id) = Api::seeded().await;
    api.json(Method::POST, "/v1/collections", json!({"name": "ops"}))
        .await;
    let r = api
        .put(
            "ops/secret.md",
            "# Secret\n\nborrow the launch codes\n",
            &[],
        )
        .await;
    let secret_id = r.json()["artifact"]["id"].as_str().unwrap().to_owned();
    // a confidential note in the reader's own collection
    let r = api
        .put(
            "handbook/merger.md&classification=confidential",
            "# Merger\n\nborrow money for the merger\n",
            &[],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let merger_id = r.json()["artifact"]["id"].as_str().unwrap().to_owned();
    let grant = |actor: &str, permission: &str, collection: Option<&str>| {
        let mut body = json!({"actor": actor, "permission": permission});
        if let Some(c) = collection {
            body["collection"] = json!(c);
        }
        body
    };
    let r = api
        .json(
            Method::POST,
            "/v1/grants",
            json!({"actor": "agent:one", "permission": "read", "artifact": "handbook/notes.md"}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    for body in [
        grant("agent:reader", "read", Some("handbook")),
        grant("agent:writer", "write", Some("ops")),
        grant("user:boss", "admin", None),
    ] {
        let r = api.json(Method::POST, "/v1/grants", body).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    // the first key is made while the server is still open; the boss makes the rest
    let mut tokens: std::collections::HashMap<&str, String> = std::collections::HashMap::new();
    for (name, actor, scopes) in [
        ("boss", "user:boss", json!(["admin"])),
        ("reader", "agent:reader", json!(["read", "write"])),
        ("writer", "agent:writer", json!(["write"])),
        ("nobody", "agent:nobody", json!(["read", "write", "admin"])),
        ("one", "agent:one", json!(["read"])),
    ] {
        let body = json!({"name": name, "actor": actor, "scopes": scopes});
        let r = match tokens.get("boss") {
            None => api.json(Method::POST, "/v1/keys", body).await,
            Some(boss) => {
                api.with_key(Method::POST, "/v1/keys", boss.as_str(), Some(body))
                    .await
            }
        };
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        tokens.insert(name, r.json()["token"].as_str().unwrap().to_owned());
    }
    let t = |n: &str| tokens[n].clone();
    let get = |who: &str, uri: &str| {
        let (api, token, uri) = (&api, t(who), uri.to_owned());
        async move { api.with_key(Method::GET, &uri, &token, None).await }
    };
    // reads: own collection yes, other collection "not found"
    assert_eq!(
        get("reader", &format!("/v1/artifacts/{guide_id}"))
            .await
            .status,
        StatusCode::OK
    );
    get("reader", &format!("/v1/artifacts/{secret_id}"))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    get("reader", &format!("/v1/artifacts/{secret_id}/content"))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    get("reader", "/v1/artifacts/by-ref?ref=ops/secret.md")
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    get("reader", "/v1/collections/ops")
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    get("reader", "/v1/search?q=borrow&collection=ops")
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    // search: only what it may read, and only that counted; the
    // confidential note is above the reader's default clearance (internal)
    let s = get("reader", "/v1/search?q=borrow").await.json();
    assert_eq!(s["total"], 1, "{s}");
    assert_eq!(s["hits"][0]["ref"], "handbook/notes.md");
    get("reader", &format!("/v1/artifacts/{merger_id}"))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    let s = get("boss", "/v1/search?q=borrow").await.json();
    assert_eq!(s["total"], 2, "boss is cleared for internal only: {s}");
    let s = get("nobody", "/v1/search?q=borrow").await.json();
    assert_eq!(s["total"], 0);
    // a grant on one artifact: that artifact and nothing else
    let s = get("one", "/v1/search?q=borrow").await.json();
    assert_eq!(s["total"], 1, "{s}");
    assert_eq!(s["hits"][0]["ref"], "handbook/notes.md");
    get("one", &format!("/v1/artifacts/{guide_id}"))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    let cols = get("reader", "/v1/collections").await.json();
    assert_eq!(cols["items"].as_array().unwrap().len(), 1);
    assert!(
        get("nobody", "/v1/collections").await.json()["items"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    get("nobody", &format!("/v1/artifacts/{guide_id}"))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    // writes: the reader's grant is read only; the writer writes ops only
    api.with_key(
        Method::PUT,
        "/v1/artifacts?ref=handbook/x.md",
        &t("reader"),
        None,
    )
    .await
    .problem(StatusCode::FORBIDDEN, "permission_denied");
    let w = api
        .send(
            Request::put("/v1/artifacts?ref=ops/new.md")
                .header(header::AUTHORIZATION, format!("Bearer {}", t("writer")))
                .body(Body::from("# New\n"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        w.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&w.body)
    );
    api.send(
        Request::put("/v1/artifacts?ref=handbook/new.md")
            .header(header::AUTHORIZATION, format!("Bearer {}", t("writer")))
            .body(Body::from("# New\n"))
            .unwrap(),
    )
    .await
    .problem(StatusCode::NOT_FOUND, "not_found");
    api.with_key(
        Method::DELETE,
        &format!("/v1/artifacts/{guide_id}"),
        &t("writer"),
        None,
    )
    .await
    .problem(StatusCode::NOT_FOUND, "not_found");
    // relations across collections need both ends visible
    api.with_key(
        Method::POST,
        "/v1/relations",
        &t("writer"),
        Some(json!({"source": "ops/new.md", "type": "references", "target": "handbook/guide.md"})),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "invalid_input");
    // admin routes: only the namespace admin
    for who in ["reader", "writer", "nobody"] {
        for uri in [
            "/v1/audit",
            "/v1/keys",
            "/v1/grants",
            "/v1/index",
            "/v1/audit/verify",
            "/v1/jobs",
            "/v1/quarantines",
            "/metrics",
        ] {
            get(who, uri)
                .await
                .problem(StatusCode::FORBIDDEN, "permission_denied");
        }
        // O2: recovery actions need the admin scope and a namespace grant; an
        // ingest by path reads the server's files, so it needs admin too
        for (uri, body) in [
            (
                "/v1/jobs",
                json!({"kind": "ingest", "payload": {"paths": ["/etc"], "collection": "ops"}}),
            ),
            ("/v1/reindex", json!({})),
            ("/v1/repair", json!(null)),
            ("/v1/jobs", json!({"kind": "noop"})),
            (
                "/v1/quarantines",
                json!({"artifact": "handbook/guide.md", "reason": "x"}),
            ),
        ] {
            let r = api
                .with_key(
                    Method::POST,
                    uri,
                    &t(who),
                    (!body.is_null()).then_some(body),
                )
                .await;
            assert!(
                matches!(r.status, StatusCode::FORBIDDEN | StatusCode::NOT_FOUND),
                "{who} {uri}: {}",
                r.status
            );
        }
        api.with_key(
            Method::POST,
            "/v1/collections",
            &t(who),
            Some(json!({"name": "grab"})),
        )
        .await
        .problem(StatusCode::FORBIDDEN, "permission_denied");
    }
    for uri in [
        "/v1/audit",
        "/v1/keys",
        "/v1/grants",
        "/v1/index",
        "/v1/clearances",
        "/v1/jobs",
        "/v1/quarantines",
        "/metrics",
    ] {
        assert_eq!(get("boss", uri).await.status, StatusCode::OK, "{uri}");
    }
    // clearing the reader for confidential shows it the note at once
    let c = api
        .with_key(
            Method::PUT,
            "/v1/clearances",
            &t("boss"),
            Some(json!({"actor": "agent:reader", "level": "confidential"})),
        )
        .await;
    assert_eq!(
        c.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&c.body)
    );
    assert_eq!(
        get("reader", &format!("/v1/artifacts/{merger_id}"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        get("reader", "/v1/search?q=borrow").await.json()["total"],
        2
    );
    // every denial is in the audit log, with its actor
    let denials = get("boss", "/v1/audit?action=policy.deny").await.json();
    let actors: std::collections::BTreeSet<String> = denials
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["actor"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actors.contains("agent:reader")
            && actors.contains("agent:writer")
            && actors.contains("agent:nobody"),
        "{actors:?}"
    );
}

/// K4/X2: a legal hold blocks delete and purge over HTTP (409) until released.
#[tokio::test]
async fn x2_legal_holds_block_deletion() {
    let (api, id) = Api::seeded().await;
    let h = api
        .json(
            Method::POST,
            "/v1/holds",
            json!({"artifact": "handbook/guide.md", "reason": "audit 2026"}),
        )
        .await;
    assert_eq!(
        h.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&h.body)
    );
    assert_eq!(api.get("/v1/holds").await.json()[0]["reason"], "audit 2026");
    let del = |api: &Api| {
        let id = id.clone();
        let api = api.app.clone();
        async move {
            api.oneshot(
                Request::delete(format!("/v1/artifacts/{id}"))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let r = del(&api).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("legal hold"));
    let rel = api
        .send(
            Request::delete(format!("/v1/holds/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(rel.status, StatusCode::OK);
    assert_eq!(del(&api).await.status(), StatusCode::OK);
}

/// X4 abuse limits: a key over its rate gets 429 with Retry-After (other
/// keys unaffected); an address that keeps failing authentication is
/// refused for a while — but a valid key from the same address still gets
/// through (regression: the lockout once locked out every client behind it).
#[tokio::test]
async fn x4_rate_limits_answer_429_with_retry_after() {
    let api = Api::with_limits(kontextual_server::limits::LimitConfig {
        per_key_per_second: 1,
        per_key_burst: 3,
        failed_auth_per_minute: 3,
    });
    api.json(
        Method::POST,
        "/v1/grants",
        json!({"actor": "agent:a", "permission": "read"}),
    )
    .await;
    let a = api
        .json(
            Method::POST,
            "/v1/keys",
            json!({"name": "a", "actor": "agent:a", "scopes": ["read"]}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(api.with_key(Method::GET, "/v1/collections", &a, None).await);
    }
    assert!(statuses[..3].iter().all(|r| r.status == StatusCode::OK));
    let limited = &statuses[4];
    limited.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let wait: u64 = limited.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // failed authentications: three, then the address is refused
    for _ in 0..3 {
        api.with_key(Method::GET, "/v1/collections", "kx_nope", None)
            .await
            .problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let r = api
        .with_key(Method::GET, "/v1/collections", "kx_nope", None)
        .await;
    r.problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.get(header::RETRY_AFTER).is_some());
    // another valid key from the locked-out address still gets through
    let b = support::blocking(|| {
        api.svc.key_create(
            &kontextual_app::Caller::new(Actor::local_admin(), Namespace::default()),
            "b",
            "agent:a".parse().unwrap(),
            vec![kontextual_model::Scope::Read],
            None,
        )
    });
    let b = b.unwrap().token;
    let r = api.with_key(Method::GET, "/v1/collections", &b, None).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    api.with_key(Method::GET, "/v1/collections", "kx_nope", None)
        .await
        .problem(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

/// O1/O2: jobs over HTTP — enqueue, inspect, cancel, retry; each action is
/// audited with the request's correlation id; a repeated action changes
/// nothing; bad input is a problem.
#[tokio::test]
async fn o2_jobs_are_managed_over_http_and_audited() {
    let (api, _) = Api::seeded().await;
    let r = api
        .json(
            Method::POST,
            "/v1/jobs",
            json!({"kind": "noop", "payload": {"fail": "boom"}, "max_attempts": 2}),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let id = r.json()["job"]["id"].as_str().unwrap().to_owned();
    let shown = api.get(&format!("/v1/jobs/{id}")).await.json();
    assert_eq!(shown["state"], "queued");
    assert_eq!(shown["attempts"].as_array().unwrap().len(), 0);
    let cancel = api
        .send(
            Request::post(format!("/v1/jobs/{id}/cancel"))
                .header(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK);
    assert_eq!(cancel.json()["job"]["state"], "cancelled");
    assert_eq!(cancel.json()["changed"], true);
    let again = api
        .json(Method::POST, &format!("/v1/jobs/{id}/cancel"), json!(null))
        .await;
    assert_eq!(again.json()["changed"], false, "cancel is idempotent");
    let audit = api
        .get("/v1/audit?correlation_id=4bf92f3577b34da6a3ce929d0e0e4736")
        .await
        .json();
    assert_eq!(audit[0]["action"], "job.cancel", "{audit}");
    let retried = api
        .json(Method::POST, &format!("/v1/jobs/{id}/retry"), json!(null))
        .await
        .json();
    assert_eq!(retried["job"]["state"], "queued");
    api.json(Method::POST, &format!("/v1/jobs/{id}/explode"), json!(null))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");
    api.json(Method::POST, "/v1/jobs", json!({"kind": "mine-bitcoin"}))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.json(
        Method::POST,
        "/v1/jobs",
        json!({"kind": "ingest", "payload": {"paths": ["/x"], "collection": "handbook", "evil": 1}}),
    )
    .await
    .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/jobs/not-a-job")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    let listed = api.get("/v1/jobs?state=queued").await.json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    // a re-index is unique per scope while it waits
    let a = api
        .json(
            Method::POST,
            "/v1/reindex",
            json!({"collection": "handbook"}),
        )
        .await;
    let b = api
        .json(
            Method::POST,
            "/v1/reindex",
            json!({"collection": "handbook"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    assert_eq!(b.status, StatusCode::OK);
    assert_eq!(a.json()["job"]["id"], b.json()["job"]["id"]);
}

/// O1: `/metrics` is Prometheus text: every sample line parses, the job,
/// store, index and audit gauges are there, and API latency is recorded by
/// route template (never by raw path).
#[tokio::test]
async fn o1_metrics_scrape_is_valid_prometheus_text() {
    let (api, id) = Api::seeded().await;
    api.get(&format!("/v1/artifacts/{id}")).await;
    api.get("/v1/search?q=install").await;
    api.json(Method::POST, "/v1/jobs", json!({"kind": "noop"}))
        .await;
    let r = api.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix('#') {
            let mut parts = rest.split_whitespace();
            let kind = parts.next().unwrap();
            assert!(kind == "HELP" || kind == "TYPE", "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "{line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
        names.insert(name.to_owned());
    }
    for want in [
        "kontextual_jobs",
        "kontextual_job_queue_age_seconds",
        "kontextual_store_size_bytes",
        "kontextual_store_artifacts",
        "kontextual_index_artifacts",
        "kontextual_index_lag_events",
        "kontextual_audit_chain_length",
        "kontextual_http_request_duration_seconds_bucket",
        "kontextual_query_duration_seconds_bucket",
    ] {
        assert!(names.contains(want), "{want} missing from:\n{text}");
    }
    assert!(
        text.contains(r#"kontextual_jobs{kind="noop",state="queued"} 1"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/v1/artifacts/{id}""#), "{text}");
    assert!(!text.contains(&id), "raw ids never become labels");
}

/// O2/X2: a job enqueued with an API key runs only while that key and the
/// actor's grants still allow its work — a grant revoked after enqueueing
/// stops it (dead, refused by the policy), before it reads any server file.
#[tokio::test]
async fn o2_queued_jobs_are_authorized_again_when_they_run() {
    let (api, _) = Api::seeded().await;
    let r = api
        .json(
            Method::POST,
            "/v1/grants",
            json!({"actor": "user:ops", "permission": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let key = api
        .json(
            Method::POST,
            "/v1/keys",
            json!({"name": "ops", "actor": "user:ops", "scopes": ["admin"]}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret.md"), "# Secret\n").unwrap();
    let r = api
        .with_key(
            Method::POST,
            "/v1/jobs",
            &key,
            Some(json!({"kind": "ingest", "payload": {
                "paths": [dir.path().display().to_string()], "collection": "loot"}})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let id = r.json()["job"]["id"].as_str().unwrap().to_owned();
    let admin = kontextual_app::Caller::new(Actor::local_admin(), Namespace::default());
    support::blocking(|| {
        api.svc.revoke_grant(
            &admin,
            "user:ops".parse().unwrap(),
            kontextual_model::GrantPermission::Admin,
            kontextual_app::GrantOn::Namespace,
        )
    })
    .unwrap();
    let svc = api.svc.clone();
    let summary = tokio::task::spawn_blocking(move || {
        svc.run_workers(
            &kontextual_app::WorkerConfig {
                threads: 1,
                drain: true,
                ..Default::default()
            },
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        )
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(summary.failed, 1, "{summary:?}");
    let job = support::blocking(|| api.svc.job_show(&admin, id.parse().unwrap()))
        .unwrap()
        .job;
    assert_eq!(job.state, kontextual_model::JobState::Dead);
    // refused as the policy refuses it: a collection the actor may not
    // touch is "not found" to it
    let err = job.last_error.as_deref().unwrap();
    assert!(
        err.contains("permission denied") || err.contains("not found"),
        "{job:?}"
    );
    assert!(
        support::blocking(|| api.svc.collection_show(&admin, "loot")).is_err(),
        "nothing was ingested"
    );
}

/// O3: an export over HTTP is streamed as a .tar.zst for callers with the
/// export scope, holds only what the caller may read, and says that a
/// policy filter applied; a key without the export scope is refused.
#[tokio::test]
async fn o3_export_streams_only_what_the_caller_may_read() {
    let (api, _) = Api::seeded().await;
    api.json(Method::POST, "/v1/collections", json!({"name": "ops"}))
        .await;
    api.put("ops/secret.md", "# Secret\n\nlaunch codes\n", &[])
        .await;
    // the local administrator (no key yet) exports everything
    let all = api
        .json(Method::POST, "/v1/export", json!({"all": true}))
        .await;
    assert_eq!(
        all.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&all.body)
    );
    assert_eq!(all.headers[header::CONTENT_TYPE], "application/zstd");
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let staged = kontextual_package::open(&p, Some(dir.path()), Default::default()).unwrap();
        kontextual_package::validate_dir(&staged.dir).0
    };
    let v = open("all.tar.zst", &all.body);
    assert!(v.valid, "{:?}", v.problems);
    assert_eq!(v.counts["artifacts"], 3);
    let policy = v.export.unwrap().policy;
    assert!(!policy.filter_applied && !policy.runs_redacted);

    for body in [
        json!({"actor": "agent:exporter", "permission": "read", "collection": "handbook"}),
        json!({"actor": "agent:reader", "permission": "read", "collection": "handbook"}),
    ] {
        assert_eq!(
            api.json(Method::POST, "/v1/grants", body).await.status,
            StatusCode::CREATED
        );
    }
    let admin = kontextual_app::Caller::new(Actor::local_admin(), Namespace::default());
    let mut tokens = Vec::new();
    for (name, actor, scopes) in [
        (
            "exporter",
            "agent:exporter",
            vec![
                kontextual_model::Scope::Read,
                kontextual_model::Scope::Export,
            ],
        ),
        (
            "reader",
            "agent:reader",
            vec![kontextual_model::Scope::Read],
        ),
    ] {
        let k = support::blocking(|| {
            api.svc
                .key_create(&admin, name, actor.parse().unwrap(), scopes, None)
        })
        .unwrap();
        tokens.push(k.token);
    }
    let r = api
        .with_key(
            Method::POST,
            "/v1/export",
            &tokens[0],
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let v = open("mine.tar.zst", &r.body);
    assert!(v.valid, "{:?}", v.problems);
    assert_eq!(v.counts["artifacts"], 2, "only the handbook");
    let info = v.export.unwrap();
    assert!(info.policy.filter_applied);
    // runs name every file they touched: a filtered caller gets them without input or manifest
    assert!(info.policy.runs_redacted);
    assert_eq!(info.actor, "agent:exporter");
    // a scope the caller cannot see is not found, not an empty export
    api.with_key(
        Method::POST,
        "/v1/export",
        &tokens[0],
        Some(json!({"collections": ["ops"]})),
    )
    .await
    .problem(StatusCode::NOT_FOUND, "not_found");
    // no export scope: refused before anything streams
    api.with_key(
        Method::POST,
        "/v1/export",
        &tokens[1],
        Some(json!({"all": true})),
    )
    .await
    .problem(StatusCode::FORBIDDEN, "permission_denied");
    // a query the index refuses (a blank one) is refused before anything
    // streams; any other text is plain words, so "(((" is no error
    let r = api
        .with_key(
            Method::POST,
            "/v1/export",
            &tokens[0],
            Some(json!({"query": "   "})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // bad scope: a clear 400
    api.with_key(
        Method::POST,
        "/v1/export",
        &tokens[0],
        Some(json!({"everything": true})),
    )
    .await
    .problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    api.with_key(Method::POST, "/v1/export", &tokens[0], Some(json!({})))
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
}

/// Makes the keys of a policy test: grants first, then one key per actor
/// (the first while the server is open, the rest by the boss).
async fn keys_for(
    api: &Api,
    grants: &[Value],
    keys: &[(&'static str, &str, Value)],
) -> std::collections::HashMap<&'static str, String> {
    for body in grants {
        let r = api.json(Method::POST, "/v1/grants", body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let mut tokens = std::collections::HashMap::new();
    for (name, actor, scopes) in keys {
        let body = json!({"name": name, "actor": actor, "scopes": scopes});
        let r = match tokens.get("boss") {
            None => api.json(Method::POST, "/v1/keys", body).await,
            Some(boss) => {
                let boss: &String = boss;
                api.with_key(Method::POST, "/v1/keys", boss, Some(body))
                    .await
            }
        };
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        tokens.insert(*name, r.json()["token"].as_str().unwrap().to_owned());
    }
    tokens
}

/// X2 (regression): a reference the caller may not read answers exactly like
/// one that does not exist — for a relation's source and target, by name and
/// by id — so relations cannot probe for artifacts.
#[tokio::test]
async fn x2_relations_are_no_existence_oracle() {
    let (api, guide_id) = Api::seeded().await;
    api.json(Method::POST, "/v1/collections", json!({"name": "ops"}))
        .await;
    api.put("ops/new.md", "# New\n", &[]).await;
    let tokens = keys_for(
        &api,
        &[
            json!({"actor": "agent:writer", "permission": "write", "collection": "ops"}),
            json!({"actor": "user:boss", "permission": "admin"}),
        ],
        &[
            ("boss", "user:boss", json!(["admin"])),
            ("writer", "agent:writer", json!(["write"])),
        ],
    )
    .await;
    let relate = |source: String, target: String| {
        let (api, token) = (&api, tokens["writer"].clone());
        async move {
            let r = api
                .with_key(
                    Method::POST,
                    "/v1/relations",
                    &token,
                    Some(json!({"source": source, "type": "probe", "target": target})),
                )
                .await;
            (r.status, r.json())
        }
    };
    let missing_id = "01900000-0000-7000-8000-000000000000";
    for (hidden, missing) in [
        ("handbook/guide.md", "handbook/nope.md"),
        (guide_id.as_str(), missing_id),
    ] {
        // as a target
        let (s1, p1) = relate("ops/new.md".into(), hidden.into()).await;
        let (s2, p2) = relate("ops/new.md".into(), missing.into()).await;
        assert_eq!(s1, s2, "{p1} vs {p2}");
        assert_eq!(p1["code"], p2["code"]);
        assert_eq!(
            p1["detail"].as_str().unwrap().replace(hidden, "X"),
            p2["detail"].as_str().unwrap().replace(missing, "X"),
        );
        // as a source
        let (s1, p1) = relate(hidden.into(), "ops/new.md".into()).await;
        let (s2, p2) = relate(missing.into(), "ops/new.md".into()).await;
        assert_eq!(s1, s2, "{p1} vs {p2}");
        assert_eq!(p1["code"], p2["code"]);
        assert_eq!(
            p1["detail"].as_str().unwrap().replace(hidden, "X"),
            p2["detail"].as_str().unwrap().replace(missing, "X"),
        );
    }
}

/// X2 (regression): listings, digest filters and counts apply the same read
/// rule as a single read — grants, clearance and quarantine.
#[tokio::test]
async fn x2_listings_and_counts_follow_clearance_and_quarantine() {
    let (api, _) = Api::seeded().await;
    let r = api
        .put(
            "handbook/merger.md&classification=confidential",
            "# Merger\n\nthe merger plan\n",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let merger_digest = r.json()["artifact"]["digest"].as_str().unwrap().to_owned();
    api.put("handbook/held.md", "# Held\n\nsuspicious\n", &[])
        .await;
    let r = api
        .json(
            Method::POST,
            "/v1/quarantines",
            json!({"artifact": "handbook/held.md", "reason": "scan hit"}),
        )
        .await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let tokens = keys_for(
        &api,
        &[
            json!({"actor": "user:boss", "permission": "admin"}),
            json!({"actor": "agent:reader", "permission": "read", "collection": "handbook"}),
            json!({"actor": "agent:all", "permission": "read"}),
        ],
        &[
            ("boss", "user:boss", json!(["admin"])),
            ("reader", "agent:reader", json!(["read"])),
            ("all", "agent:all", json!(["read"])),
        ],
    )
    .await;
    let get = |who: &'static str, uri: &'static str| {
        let (api, token) = (&api, tokens[who].clone());
        async move {
            let r = api.with_key(Method::GET, uri, &token, None).await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            r.json()
        }
    };
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // internal clearance (the default): the confidential note is not listed,
    // by collection, unfiltered or by its digest, nor counted; the
    // quarantined one is out for readers, in for the administrator
    let by_collection = get("reader", "/v1/artifacts?collection=handbook").await;
    assert_eq!(names(&by_collection), ["guide.md", "notes.md"]);
    let all = get("all", "/v1/artifacts").await;
    assert_eq!(names(&all), ["guide.md", "notes.md"]);
    let uri: &'static str =
        Box::leak(format!("/v1/artifacts?digest={merger_digest}").into_boxed_str());
    assert_eq!(names(&get("all", uri).await), Vec::<String>::new());
    let c = get("reader", "/v1/collections/handbook").await;
    assert_eq!(c["artifact_count"], 2, "{c}");
    let list = get("reader", "/v1/collections").await;
    assert_eq!(list["items"][0]["artifact_count"], 2, "{list}");
    let boss = get("boss", "/v1/artifacts?collection=handbook").await;
    assert_eq!(names(&boss), ["guide.md", "held.md", "notes.md"]);
    // and a single read agrees with the listing
    let r = api
        .with_key(
            Method::GET,
            "/v1/artifacts/by-ref?ref=handbook/held.md",
            &tokens["reader"],
            None,
        )
        .await;
    r.problem(StatusCode::NOT_FOUND, "not_found");
}

/// X1 (regression): a key created with an Idempotency-Key is answered once
/// with its token; the replay answers without it (`secrets_withheld`), and
/// the token's secret is in none of the data directory's files (database,
/// WAL, index).
#[tokio::test]
async fn x1_idempotent_key_creation_never_stores_the_token() {
    let api = Api::new();
    let tokens = keys_for(
        &api,
        &[json!({"actor": "user:boss", "permission": "admin"})],
        &[("boss", "user:boss", json!(["admin"]))],
    )
    .await;
    let send = || {
        api.send(
            Request::post("/v1/keys")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, format!("Bearer {}", tokens["boss"]))
                .header("idempotency-key", "make-ci-key")
                .body(Body::from(
                    json!({"name": "ci", "actor": "agent:ci", "scopes": ["read"]}).to_string(),
                ))
                .unwrap(),
        )
    };
    let first = send().await;
    assert_eq!(
        first.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let token = first.json()["token"].as_str().unwrap().to_owned();
    let secret = token.rsplit('_').next().unwrap().to_owned();
    assert!(secret.len() >= 40, "{token}");
    let replay = send().await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.headers["idempotency-replayed"], "true");
    let v = replay.json();
    assert!(v.get("token").is_none(), "{v}");
    assert_eq!(v["secrets_withheld"], json!(["token"]));
    assert_eq!(v["key"]["id"], first.json()["key"]["id"]);
    if let Some(db) = api.store.db() {
        let dump = std::process::Command::new("pg_dump")
            .args(["--data-only", &db.url])
            .output()
            .unwrap();
        assert!(dump.status.success());
        assert!(
            !dump
                .stdout
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "the token's secret is stored in the database"
        );
    }
    for entry in walk(api.store.root()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the token's secret is stored in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// X2 (regression): an artifact's source path on the server is shown to
/// administrators only; other callers see it relative to the ingest root.
#[tokio::test]
async fn x2_server_paths_are_for_administrators() {
    let api = Api::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("docs/ops")).unwrap();
    std::fs::write(dir.path().join("docs/ops/run.md"), "# Run\n\nthe runbook\n").unwrap();
    let admin = kontextual_app::Caller::new(Actor::local_admin(), Namespace::default());
    let req = kontextual_app::IngestRequest {
        paths: vec![dir.path().join("docs")],
        collection: "handbook".into(),
        prune: false,
        source_system: None,
    };
    support::blocking(|| api.svc.ingest(&admin, &req, &kontextual_app::NoProgress)).unwrap();
    let tokens = keys_for(
        &api,
        &[
            json!({"actor": "user:boss", "permission": "admin"}),
            json!({"actor": "agent:reader", "permission": "read", "collection": "handbook"}),
        ],
        &[
            ("boss", "user:boss", json!(["admin"])),
            ("reader", "agent:reader", json!(["read"])),
        ],
    )
    .await;
    let path = |who: &str| {
        let (api, token) = (&api, tokens[who].clone());
        async move {
            let r = api
                .with_key(
                    Method::GET,
                    "/v1/artifacts/by-ref?ref=handbook/ops/run.md",
                    &token,
                    None,
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::OK,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            r.json()["provenance"]["source_path"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let full = path("boss").await;
    assert!(full.starts_with(dir.path().to_str().unwrap()), "{full}");
    assert_eq!(path("reader").await, "ops/run.md");
}

/// K7/X4: `GET /v1/search` reads its parameters with one typed extractor:
/// `meta` repeats (all must match), flags are `true`/`false`/`1`/`0` or
/// bare, numbers are numbers, and a bad value or an unknown or missing
/// parameter is a 400 that names it.
#[tokio::test]
async fn k7_search_parameters_are_one_typed_query() {
    let (api, _) = Api::seeded().await;
    for (name, meta) in [
        (
            "m1.md",
            "%7B%22team%22%3A%22core%22%2C%22lang%22%3A%22en%22%7D",
        ),
        (
            "m2.md",
            "%7B%22team%22%3A%22core%22%2C%22lang%22%3A%22de%22%7D",
        ),
    ] {
        let r = api
            .put(
                &format!("handbook/{name}&metadata={meta}"),
                "# Zebra\n\nzebra crossing\n",
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let total = |v: Value| v["total"].as_u64().unwrap();
    let both = api
        .get("/v1/search?q=zebra&meta=team%3Dcore&refresh=wait_for")
        .await
        .json();
    assert_eq!(total(both), 2);
    let one = api
        .get("/v1/search?q=zebra&meta=team%3Dcore&meta=lang%3Den&refresh=wait_for")
        .await
        .json();
    assert_eq!(one["hits"][0]["name"], "m1.md", "{one}");
    assert_eq!(total(one), 1);
    let page = api
        .get("/v1/search?q=zebra&limit=1&offset=1&sections")
        .await
        .json();
    assert_eq!(page["hits"].as_array().unwrap().len(), 1, "{page}");
    for (query, names) in [
        ("q=zebra&sections=maybe", "true or false"),
        ("q=zebra&limit=ten", "limit"),
        ("q=zebra&colour=red", "colour"),
        ("sections=true", "q"),
        ("q=zebra&meta=novalue", "KEY=VALUE"),
        ("q=zebra&refresh=later", "wait_for"),
    ] {
        let p = api
            .get(&format!("/v1/search?{query}"))
            .await
            .problem(StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            p["detail"].as_str().unwrap().contains(names),
            "{query}: {p}"
        );
    }
}

/// X8 (regression): names, references and metadata whose percent-escapes
/// are not UTF-8 are refused with a 400 naming the parameter — never turned
/// into U+FFFD, which once made three different names one artifact.
#[tokio::test]
async fn x8_query_parameters_must_be_utf8() {
    let (api, _) = Api::seeded().await;
    for r in ["handbook/x%FF%FE.md", "handbook/x%C0%80.md"] {
        let p = api
            .put(r, "# X\n", &[])
            .await
            .problem(StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            p["detail"]
                .as_str()
                .unwrap()
                .contains("query parameter ref"),
            "{p}"
        );
    }
    let p = api
        .put(
            "handbook/y.md&metadata=%7B%22a%22%3A%22%FF%22%7D",
            "# Y\n",
            &[],
        )
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(p["detail"].as_str().unwrap().contains("metadata"), "{p}");
    // a name that really is U+FFFD twice is a name like any other
    let r = api
        .put("handbook/x%EF%BF%BD%EF%BF%BD.md", "# X\n", &[])
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = api.get("/v1/artifacts?collection=handbook").await.json();
    let names: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["guide.md", "notes.md", "x\u{fffd}\u{fffd}.md"]);
}

/// X4: too many or too large header fields are a 431 problem with the
/// correlation id, like every other refusal.
#[tokio::test]
async fn x4_oversized_headers_are_a_431_problem() {
    let api = Api::new();
    let mut many = Request::get("/v1/collections");
    for i in 0..70 {
        many = many.header(format!("x-filler-{i}"), "1");
    }
    let r = api.send(many.body(Body::empty()).unwrap()).await;
    let p = r.problem(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
    );
    assert!(
        p["correlation_id"].as_str().is_some_and(|c| !c.is_empty()),
        "{p}"
    );
    assert!(r.headers.contains_key("x-correlation-id"));
    let big = "a".repeat(40 * 1024);
    let r = api
        .send(
            Request::get("/healthz")
                .header("cookie", big)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let p = r.problem(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
    );
    assert!(p["detail"].as_str().unwrap().contains("32768"), "{p}");
    // the limits are in the API description
    let doc = api.get("/openapi.json").await.json();
    assert!(doc.to_string().contains("RequestHeaderFieldsTooLarge"));
}

/// X4/X5: a body whose declared length is over the limit is refused at once
/// (no waiting for bytes that will never come) with a 413 that names the
/// limit and the flag that sets it.
#[tokio::test]
async fn x4_declared_oversize_bodies_are_refused_at_once_with_the_limit() {
    let api = Api::new();
    let r = api
        .send(
            Request::put("/v1/artifacts?ref=handbook/huge.md")
                .header(header::CONTENT_LENGTH, "1000000000000")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let p = r.problem(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let d = p["detail"].as_str().unwrap();
    assert!(
        d.contains("65536 bytes") && d.contains("--max-body-mb"),
        "{d}"
    );
}

/// X4: JSON Schema's integers include `2000.0`; request bodies accept them
/// (and refuse `2000.5` with a problem naming the field).
#[tokio::test]
async fn x4_integral_numbers_are_integers() {
    let (api, _) = Api::seeded().await;
    let r = api
        .json(
            Method::POST,
            "/v1/context-packages",
            json!({"name": "whole", "queries": ["install"], "budget": 2000.0, "depth": 0.0}),
        )
        .await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = api
        .json(
            Method::POST,
            "/v1/context-packages",
            json!({"name": "half", "queries": ["install"], "budget": 2000.5}),
        )
        .await;
    let p = r.problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert!(
        p["detail"].as_str().unwrap().contains("whole number"),
        "{p}"
    );
    let r = api
        .json(
            Method::POST,
            "/v1/jobs",
            json!({"kind": "noop", "max_attempts": 3.0}),
        )
        .await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

/// Reads Server-Sent Events from a streaming answer.
struct SseReader {
    body: Body,
    buf: String,
}

/// One SSE event: id, event name, data.
type SseEvent = (u64, String, Value);

impl SseReader {
    async fn open(api: &Api, uri: &str, token: &str, last_id: Option<u64>) -> SseReader {
        let mut b = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_id {
            b = b.header("Last-Event-ID", id.to_string());
        }
        let res = api
            .app
            .clone()
            .oneshot(b.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(
            res.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        SseReader {
            body: res.into_body(),
            buf: String::new(),
        }
    }

    /// The next `n` events (panics after 10 s).
    async fn next(&mut self, n: usize) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut out = Vec::new();
        while out.len() < n {
            if let Some(i) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..i + 2).collect();
                let (mut id, mut ev, mut data) = (None, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        ev = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    out.push((id, ev, serde_json::from_str(&data).unwrap()));
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} events arrived", out.len()))
                .expect("the stream ended")
                .unwrap();
            if let Ok(bytes) = frame.into_data() {
                self.buf.push_str(std::str::from_utf8(&bytes).unwrap());
            }
        }
        out
    }

    /// The stream ends within `ms`, and no event comes before its end.
    async fn ended(&mut self, ms: u64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => panic!("the stream is still open after {ms} ms"),
                Ok(None | Some(Err(_))) => return,
                Ok(Some(Ok(frame))) => {
                    if let Ok(bytes) = frame.into_data() {
                        let text = String::from_utf8_lossy(&bytes);
                        assert!(!text.contains("id:"), "an event before the end: {text}");
                    }
                }
            }
        }
    }

    /// Nothing more arrives within `ms`.
    async fn quiet(&mut self, ms: u64) {
        assert!(
            !self.buf.contains("id:"),
            "an event is pending: {}",
            self.buf
        );
        if let Ok(Some(Ok(frame))) =
            tokio::time::timeout(std::time::Duration::from_millis(ms), self.body.frame()).await
            && let Ok(bytes) = frame.into_data()
        {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("id:"), "an unexpected event: {text}");
        }
    }
}

/// A store with `handbook` (readable by `agent:reader`) and `ops` (not),
/// a confidential note in `handbook` (above the reader's clearance) and
/// a quarantined note; returns the API, the boss's and the reader's tokens,
/// and the ids the reader must never hear of.
async fn events_fixture() -> (Api, String, String, Vec<String>) {
    let (api, _) = Api::seeded().await;
    api.json(Method::POST, "/v1/collections", json!({"name": "ops"}))
        .await;
    let secret = api
        .put("ops/secret.md", "# Secret\n\nlaunch codes\n", &[])
        .await
        .json()["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let merger = api
        .put(
            "handbook/merger.md&classification=confidential",
            "# Merger\n\nmoney\n",
            &[],
        )
        .await
        .json()["artifact"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api
        .json(
            Method::POST,
            "/v1/quarantines",
            json!({"artifact": "handbook/notes.md", "reason": "malware scan"}),
        )
        .await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let notes = r.json()["artifact_id"].as_str().unwrap().to_owned();
    for body in [
        json!({"actor": "agent:reader", "permission": "read", "collection": "handbook"}),
        json!({"actor": "user:boss", "permission": "admin"}),
    ] {
        let r = api.json(Method::POST, "/v1/grants", body).await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let boss = api
        .json(
            Method::POST,
            "/v1/keys",
            json!({"name": "boss", "actor": "user:boss", "scopes": ["admin"]}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let reader = api
        .with_key(
            Method::POST,
            "/v1/keys",
            &boss,
            Some(json!({"name": "reader", "actor": "agent:reader", "scopes": ["read"]})),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    (api, boss, reader, vec![secret, merger, notes])
}

fn ids_of(items: &Value) -> Vec<u64> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

/// O5/X2: a key sees only events about what it may read — not another
/// collection's, not above its clearance, not a quarantined artifact's,
/// not keys and grants — on `/v1/events` and on the stream; what it may
/// not see leaves no trace but the cursor still moves past it. Every
/// event the administrator sees validates against its catalog schema.
#[tokio::test]
async fn o5_x2_events_show_a_key_only_what_it_may_read() {
    let (api, boss, reader, hidden) = events_fixture().await;
    let all = api
        .with_key(Method::GET, "/v1/events?limit=1000", &boss, None)
        .await;
    assert_eq!(
        all.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&all.body)
    );
    let all = all.json();
    let everything = all["items"].as_array().unwrap();
    assert!(everything.len() > 8, "{all}");
    for e in everything {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["datacontenttype"], "application/json");
        assert!(e["source"].as_str().unwrap().starts_with("kontextual://"));
        assert_eq!(e["id"], e["sequence"]);
        kontextual_events::check(e["type"].as_str().unwrap(), &e["data"])
            .unwrap_or_else(|err| panic!("{err}: {e}"));
    }
    let kinds: Vec<&str> = everything
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    for k in [
        "collection.created",
        "artifact.created",
        "artifact.quarantined",
        "grant.created",
        "key.created",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let last = *ids_of(&all["items"]).last().unwrap();
    assert_eq!(all["next_after"], last);

    let mine = api
        .with_key(Method::GET, "/v1/events?limit=1000", &reader, None)
        .await
        .json();
    let seen = mine["items"].as_array().unwrap();
    assert!(!seen.is_empty());
    let text = mine.to_string();
    for id in &hidden {
        assert!(!text.contains(id.as_str()), "{id} leaked: {text}");
    }
    assert!(!text.contains("\"ops\""), "{text}");
    for e in seen {
        assert_eq!(e["collection"], "handbook", "{e}");
        let t = e["type"].as_str().unwrap();
        assert!(!t.starts_with("key.") && !t.starts_with("grant."), "{e}");
    }
    // the cursor still moves past what the reader may not see
    assert_eq!(mine["next_after"], last);
    // one event by its sequence number (a webhook's `dataref`): the same
    // rule — what the reader may not see is not found, as is no event
    let first = seen[0]["id"].as_str().unwrap();
    let one = api
        .with_key(Method::GET, &format!("/v1/events/{first}"), &reader, None)
        .await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json(), seen[0]);
    let unseen = everything
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .find(|id| !seen.iter().any(|e| e["id"] == *id))
        .unwrap();
    for path in [
        format!("/v1/events/{unseen}"),
        format!("/v1/events/{}", last + 1000),
    ] {
        let r = api.with_key(Method::GET, &path, &reader, None).await;
        r.problem(StatusCode::NOT_FOUND, "not_found");
    }
    let boss_sees = api
        .with_key(Method::GET, &format!("/v1/events/{unseen}"), &boss, None)
        .await;
    assert_eq!(boss_sees.status, StatusCode::OK);
    // an id has one spelling: the one events carry
    for bad in ["seven".to_owned(), format!("0{first}"), format!("+{first}")] {
        let r = api
            .with_key(Method::GET, &format!("/v1/events/{bad}"), &reader, None)
            .await;
        r.problem(StatusCode::BAD_REQUEST, "invalid_input");
    }
    let ops = api
        .with_key(Method::GET, "/v1/events?collection=ops", &reader, None)
        .await
        .json();
    assert_eq!(ops["items"], json!([]));
    assert_eq!(ops["next_after"], last);

    // the stream: the same events, nothing more
    let mut s = SseReader::open(&api, "/v1/events/stream?after=0", &reader, None).await;
    let streamed = s.next(seen.len()).await;
    assert_eq!(
        streamed.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
        ids_of(&mine["items"])
    );
    for (_, ev, data) in &streamed {
        assert_eq!(data["type"].as_str().unwrap(), ev);
        assert_eq!(data["collection"], "handbook");
    }
    // a new write in ops stays hidden; one in handbook arrives live
    let auth = format!("Bearer {boss}");
    api.put("ops/more.md", "# More\n", &[("authorization", &auth)])
        .await;
    s.quiet(700).await;
    let r = api
        .put("handbook/live.md", "# Live\n", &[("authorization", &auth)])
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let live = s.next(1).await;
    assert_eq!(live[0].1, "artifact.created");
    assert_eq!(live[0].2["data"]["name"], "live.md");
}

/// O5/X2: a webhook created with an API key is sent only what that key's
/// actor may read — `user:boss` (admin, cleared for internal) gets the
/// internal artifact's event and not the confidential one's — while one
/// the local administrator created gets both.
#[tokio::test]
async fn o5_x2_a_webhook_gets_only_what_its_creator_may_read() {
    let (api, boss, _, _) = events_fixture().await;
    // an empty type list is not "every type": refused, as on PATCH and the CLI
    let r = api
        .with_key(
            Method::POST,
            "/v1/webhooks",
            &boss,
            Some(json!({"url": "https://hooks.example.com/kx", "types": []})),
        )
        .await;
    let p = r.problem(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        p["detail"].as_str().unwrap().contains("types is empty"),
        "{p}"
    );
    let hook = json!({"url": "https://hooks.example.com/kx", "types": ["artifact.created"]});
    let by_boss = api
        .with_key(Method::POST, "/v1/webhooks", &boss, Some(hook))
        .await;
    assert_eq!(by_boss.status, StatusCode::CREATED);
    let by_boss = by_boss.json()["webhook"]["id"].as_str().unwrap().to_owned();
    // the local administrator (the CLI's caller) creates the other one
    let svc = api.svc.clone();
    let by_admin = tokio::task::spawn_blocking(move || {
        let admin = kontextual_app::Caller::new(Actor::local_admin(), Namespace::default());
        let new = kontextual_app::NewWebhook {
            url: "https://hooks.example.com/kx".to_owned(),
            types: vec!["artifact.created".to_owned()],
            ..kontextual_app::NewWebhook::default()
        };
        svc.webhooks()
            .create(&admin, new)
            .unwrap()
            .webhook
            .id
            .to_string()
    })
    .await
    .unwrap();
    let auth = format!("Bearer {boss}");
    for path in [
        "handbook/open.md",
        "handbook/board.md&classification=confidential",
    ] {
        let r = api
            .put(path, "# Minutes\n", &[("authorization", &auth)])
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{path}");
    }
    let svc = api.svc.clone();
    tokio::task::spawn_blocking(move || svc.follow_shared_feeds())
        .await
        .unwrap();
    let boss = boss.as_str();
    let names = |id: String| {
        let api = &api;
        async move {
            let page = api
                .with_key(
                    Method::GET,
                    &format!("/v1/webhooks/{id}/deliveries"),
                    boss,
                    None,
                )
                .await
                .json();
            let mut names = Vec::new();
            for d in page["items"].as_array().unwrap() {
                let path = format!("/v1/webhook-deliveries/{}", d["id"].as_str().unwrap());
                let one = api.with_key(Method::GET, &path, boss, None).await.json();
                let body: Value = serde_json::from_str(one["body"].as_str().unwrap()).unwrap();
                names.push(body["data"]["name"].as_str().unwrap().to_owned());
            }
            names.sort();
            names
        }
    };
    assert_eq!(names(by_boss).await, ["open.md"]);
    assert_eq!(names(by_admin).await, ["board.md", "open.md"]);
}

/// O5: the stream resumes from `Last-Event-ID` with no gap and no
/// duplicate; without a cursor it starts at the head.
#[tokio::test]
async fn o5_stream_resumes_from_last_event_id_without_gaps_or_duplicates() {
    let (api, boss, _, _) = events_fixture().await;
    let all = api
        .with_key(Method::GET, "/v1/events?limit=1000", &boss, None)
        .await
        .json();
    let ids = ids_of(&all["items"]);
    assert!(ids.len() > 4);
    let mut first = SseReader::open(&api, "/v1/events/stream?after=0", &boss, None).await;
    let head: Vec<u64> = first.next(3).await.iter().map(|e| e.0).collect();
    assert_eq!(head, ids[..3]);
    drop(first);
    let mut resumed = SseReader::open(&api, "/v1/events/stream", &boss, Some(head[2])).await;
    let rest: Vec<u64> = resumed
        .next(ids.len() - 3)
        .await
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(rest, ids[3..]);
    resumed.quiet(500).await;
    // no cursor: only what happens from now on
    let mut fresh =
        SseReader::open(&api, "/v1/events/stream?types=collection.*", &boss, None).await;
    fresh.quiet(400).await;
    let r = api
        .with_key(
            Method::POST,
            "/v1/collections",
            &boss,
            Some(json!({"name": "later"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let got = fresh.next(1).await;
    assert_eq!(got[0].1, "collection.created");
    assert_eq!(got[0].2["data"]["collection"], "later");
    assert_eq!(got[0].2["collection"], "later");
    // a malformed Last-Event-ID is refused, not ignored
    let r = api
        .send(
            Request::get("/v1/events/stream")
                .header(header::AUTHORIZATION, format!("Bearer {boss}"))
                .header("Last-Event-ID", "yesterday")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.problem(StatusCode::BAD_REQUEST, "invalid_input");
}

/// O5/X2: a stream checks its caller again, as new requests do (within
/// the key cache's 2 s): once the reader's grant is revoked it hears
/// nothing more of the collection, and once its key is revoked the stream
/// ends — it does not keep the access it had when it connected.
#[tokio::test]
async fn o5_x2_a_stream_follows_revoked_grants_and_keys() {
    let (api, boss, reader, _) = events_fixture().await;
    let auth = format!("Bearer {boss}");
    let auth = [("authorization", auth.as_str())];
    let mut s = SseReader::open(&api, "/v1/events/stream?types=artifact.*", &reader, None).await;
    s.quiet(300).await;
    let r = api.put("handbook/before.md", "# Before\n", &auth).await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let got = s.next(1).await;
    assert_eq!(got[0].1, "artifact.created");
    assert_eq!(got[0].2["collection"], "handbook");
    let r = api
        .with_key(
            Method::DELETE,
            "/v1/grants",
            &boss,
            Some(json!({"actor": "agent:reader", "permission": "read", "collection": "handbook"})),
        )
        .await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // the stream checks its caller at least every 2.25 s (the key cache's
    // 2 s and a poll)
    tokio::time::sleep(std::time::Duration::from_millis(2600)).await;
    let r = api.put("handbook/after.md", "# After\n", &auth).await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    s.quiet(1000).await;
    let keys = api
        .with_key(Method::GET, "/v1/keys", &boss, None)
        .await
        .json();
    let reader_id = keys["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "reader")
        .and_then(|k| k["id"].as_str())
        .unwrap()
        .to_owned();
    let r = api
        .with_key(
            Method::DELETE,
            &format!("/v1/keys/{reader_id}"),
            &boss,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    s.ended(3000).await;
}

/// O5: type and collection filters, pages that continue without overlap,
/// clear errors for bad patterns and limits.
#[tokio::test]
async fn o5_event_filters_and_pages() {
    let (api, _) = Api::seeded().await;
    let arts = api.get("/v1/events?types=artifact.*").await.json();
    let items = arts["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|e| e["type"] == "artifact.created"));
    let mixed = api
        .get("/v1/events?types=collection.created,artifact.*&collection=handbook")
        .await
        .json();
    assert_eq!(mixed["items"].as_array().unwrap().len(), 3);
    let none = api.get("/v1/events?collection=elsewhere").await.json();
    assert_eq!(none["items"], json!([]));
    let p1 = api.get("/v1/events?limit=2").await.json();
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let next = p1["next_after"].as_u64().unwrap();
    assert_eq!(next, ids_of(&p1["items"])[1]);
    let p2 = api
        .get(&format!("/v1/events?after={next}&limit=2"))
        .await
        .json();
    assert_eq!(ids_of(&p2["items"])[0], next + 1);
    // a cursor past the newest event is not this store's: refused, not an
    // empty page forever
    let p = api
        .get("/v1/events?after=18446744073709551615")
        .await
        .problem(StatusCode::CONFLICT, "conflict");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("the newest event is seq"),
        "{p}"
    );
    api.get("/v1/events?types=Artifact.*")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/events?types=artifact.*.x")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    let p = api
        .get("/v1/events?types=artifact.craeted")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("matches no event type"),
        "{p}"
    );
    api.get("/v1/events?limit=0")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
}

/// O5: the catalog is served; each type has a version, a description and
/// a JSON Schema (2020-12) for its data.
#[tokio::test]
async fn o5_event_types_are_served_with_json_schemas() {
    let api = Api::new();
    let r = api.get("/v1/event-types").await;
    assert_eq!(r.status, StatusCode::OK);
    let types = r.json();
    let types = types.as_array().unwrap();
    assert_eq!(types.len(), kontextual_events::CATALOG.len());
    for t in types {
        assert_eq!(t["version"], 1);
        assert!(!t["description"].as_str().unwrap().is_empty());
        let s = &t["schema"];
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
        assert_eq!(s["type"], "object");
        assert!(
            s["properties"].is_object() && s["required"].is_array(),
            "{t}"
        );
        assert!(["emitted", "reserved"].contains(&t["status"].as_str().unwrap()));
    }
    let webhook = types
        .iter()
        .find(|t| t["name"] == "webhook.created")
        .unwrap();
    assert_eq!(webhook["status"], "emitted");
}

/// O5: open event streams are capped (503 `too_many_streams` beyond, and
/// a permit comes back when a stream ends); streams end when the server
/// shuts down, so the drain does not wait for them.
#[tokio::test]
async fn o5_event_streams_are_capped_and_end_on_shutdown() {
    let store = TestStore::new();
    let svc = Arc::new(store.open(StoreOpenMode::Create));
    let mut state = AppState::new(
        svc,
        Actor::local_admin(),
        Namespace::default(),
        kontextual_server::limits::LimitConfig {
            per_key_per_second: 1000,
            per_key_burst: 1000,
            failed_auth_per_minute: 10,
        },
    );
    state.event_streams = Arc::new(tokio::sync::Semaphore::new(1));
    let shutdown = state.shutdown.clone();
    let permits = state.event_streams.clone();
    let (app, _) = router(state, &ServeConfig::default());
    let open = || {
        app.clone().oneshot(
            Request::get("/v1/events/stream")
                .body(Body::empty())
                .unwrap(),
        )
    };
    let first = open().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let second = open().await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers()[header::RETRY_AFTER], "5");
    let body = second.into_body().collect().await.unwrap().to_bytes();
    let p: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(p["code"], "too_many_streams", "{p}");
    shutdown.send(true).unwrap();
    let ended = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        first.into_body().collect(),
    )
    .await;
    assert!(ended.is_ok(), "the stream did not end on shutdown");
    assert_eq!(permits.available_permits(), 1);
}

/// O5: webhooks are managed over HTTP through the same service as the
/// CLI: the secret is in the create and rotate answers only (never in a
/// listing, a show or an Idempotency-Key replay); addresses the policy
/// refuses are a 400 that says why; deliveries are listed and shown with
/// their body; only administrators manage webhooks.
#[tokio::test]
async fn o5_webhooks_are_managed_over_http() {
    let (api, _) = Api::seeded().await;
    let create = |key: &'static str| {
        Request::post("/v1/webhooks")
            .header(header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key)
            .body(Body::from(
                json!({"url": "https://hooks.example.com/kx", "types": ["artifact.*"],
                       "collections": ["handbook"], "description": "indexer"})
                .to_string(),
            ))
            .unwrap()
    };
    let made = api.send(create("wh-1")).await;
    assert_eq!(
        made.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&made.body)
    );
    let made = made.json();
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{made}");
    let id = made["webhook"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made["webhook"]["types"], json!(["artifact.*"]));
    assert_eq!(made["webhook"]["state"], "enabled");
    // a replay answers the same webhook without its secret
    let again = api.send(create("wh-1")).await;
    assert_eq!(again.headers["idempotency-replayed"], "true");
    assert_eq!(again.json()["webhook"]["id"], id.as_str());
    assert!(again.json().get("secret").is_none());

    let refused = api
        .json(
            Method::POST,
            "/v1/webhooks",
            json!({"url": "http://169.254.169.254/latest"}),
        )
        .await;
    let p = refused.problem(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(
        p["detail"].as_str().unwrap().contains("169.254.169.254"),
        "{p}"
    );
    let refused = api
        .json(
            Method::POST,
            "/v1/webhooks",
            json!({"url": "https://hooks.example.com/kx", "types": ["artifact.exploded"]}),
        )
        .await;
    refused.problem(StatusCode::BAD_REQUEST, "invalid_input");

    let list = api.get("/v1/webhooks").await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 1);
    let shown = api.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(shown.json()["deliveries"]["pending"], 0);
    for body in [&list.body, &shown.body] {
        let text = String::from_utf8_lossy(body);
        assert!(
            !text.contains(&secret) && !text.contains("secret\""),
            "{text}"
        );
    }

    let patched = api
        .json(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            json!({"description": "search indexer"}),
        )
        .await;
    assert_eq!(patched.json()["description"], "search indexer");
    assert_eq!(patched.json()["collections"], json!(["handbook"]));
    let off = api
        .json(
            Method::POST,
            &format!("/v1/webhooks/{id}/disable"),
            json!({"reason": "maintenance"}),
        )
        .await;
    assert_eq!(off.json()["state"], "disabled");
    assert_eq!(off.json()["disabled_reason"], "maintenance");
    let on = api
        .send(
            Request::post(format!("/v1/webhooks/{id}/enable"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(on.json()["state"], "enabled");
    // the body is optional: a JSON `null` is no reason, as no body is
    let off = api
        .json(
            Method::POST,
            &format!("/v1/webhooks/{id}/disable"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(off.json()["state"], "disabled", "{}", off.json());
    assert_eq!(
        off.json()["disabled_reason"],
        "disabled by user:local-admin"
    );
    let on = api
        .send(
            Request::post(format!("/v1/webhooks/{id}/enable"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(on.json()["state"], "enabled");
    let rotated = api
        .send(
            Request::post(format!("/v1/webhooks/{id}/rotate-secret"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let rotated = rotated.json();
    assert_ne!(rotated["secret"], secret.as_str());
    assert!(
        rotated["previous_secret_expires_at"].is_string(),
        "{rotated}"
    );

    // a change in handbook becomes a delivery once the feed is followed
    api.put("handbook/new.md", "# New\n\nfresh\n", &[]).await;
    // (blocking: the PostgreSQL client must not run on the async thread)
    let svc = api.svc.clone();
    tokio::task::spawn_blocking(move || svc.follow_shared_feeds())
        .await
        .unwrap();
    let d = api.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    let items = d.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["event_type"], "artifact.created");
    assert_eq!(items[0]["state"], "pending");
    let did = items[0]["id"].as_str().unwrap().to_owned();
    let none = api
        .get(&format!(
            "/v1/webhooks/{id}/deliveries?state=succeeded,dead"
        ))
        .await;
    assert_eq!(none.json()["items"], json!([]));
    let bad = api
        .get(&format!("/v1/webhooks/{id}/deliveries?state=lost"))
        .await;
    bad.problem(StatusCode::BAD_REQUEST, "invalid_input");
    let detail = api.get(&format!("/v1/webhook-deliveries/{did}")).await;
    let detail = detail.json();
    let body: Value = serde_json::from_str(detail["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "artifact.created");
    assert_eq!(body["data"]["name"], "new.md");
    let busy = api
        .send(
            Request::post(format!("/v1/webhook-deliveries/{did}/resend"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    busy.problem(StatusCode::BAD_REQUEST, "invalid_input");
    let recover = api
        .json(
            Method::POST,
            &format!("/v1/webhooks/{id}/recover"),
            json!({"since": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(recover.status, StatusCode::ACCEPTED);
    assert_eq!(recover.json()["job"]["kind"], "webhook.recover");

    api.get("/v1/webhooks/not-an-id")
        .await
        .problem(StatusCode::BAD_REQUEST, "invalid_input");
    api.get("/v1/webhooks/0190c6a4-0000-7000-8000-000000000000")
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");

    let gone = api
        .send(
            Request::delete(format!("/v1/webhooks/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(gone.status, StatusCode::OK);
    assert_eq!(gone.json()["cancelled_deliveries"], 1);
    api.get(&format!("/v1/webhooks/{id}"))
        .await
        .problem(StatusCode::NOT_FOUND, "not_found");

    // a reader may not manage webhooks
    let key = api
        .json(
            Method::POST,
            "/v1/keys",
            json!({"name": "reader", "actor": "agent:reader", "scopes": ["read"]}),
        )
        .await
        .json();
    let reader = key["token"].as_str().unwrap();
    api.with_key(Method::GET, "/v1/webhooks", reader, None)
        .await
        .problem(StatusCode::FORBIDDEN, "permission_denied");
}
