//! HTTP benchmark (issue 5), side by side in one run: `oha` (a load
//! generator from the crate registry, `cargo install oha`) against
//! `GET /v1/artifacts/{id}` and `GET /v1/search` of the real server — API
//! key, grants, clearance, access log, tracing, problem errors all on — and,
//! as the ceiling, a minimal axum handler that reads the same artifact row
//! with rusqlite and returns it as JSON. Reports requests/s at saturation,
//! latency at a fixed rate (with oha's latency correction), and this
//! process's CPU time per request (the load generator shares the cores).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use kontextual_app::{Caller, GrantOn, Services, StoreConfig, StoreOpenMode};
use kontextual_model::{Actor, Namespace};

/// CPU seconds this process has used (user + system).
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    ok: f64,
    cpu_us_per_req: f64,
}

fn oha(url: &str, token: Option<&str>, args: &[&str]) -> Result<Run> {
    let mut cmd = std::process::Command::new("oha");
    cmd.args(["--no-tui", "--output-format", "json"]).args(args);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    cmd.arg(url);
    let cpu0 = cpu_seconds();
    let out = cmd
        .output()
        .context("running oha (install it with `cargo install oha`)")?;
    let cpu = cpu_seconds() - cpu0;
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = &v["summary"];
    let p = &v["latencyPercentiles"];
    let total = v["statusCodeDistribution"]
        .as_object()
        .map(|m| m.values().filter_map(|x| x.as_f64()).sum::<f64>())
        .unwrap_or(0.0);
    Ok(Run {
        rps: s["requestsPerSec"].as_f64().unwrap_or(0.0),
        p50_ms: p["p50"].as_f64().unwrap_or(0.0) * 1000.0,
        p99_ms: p["p99"].as_f64().unwrap_or(0.0) * 1000.0,
        ok: s["successRate"].as_f64().unwrap_or(0.0),
        cpu_us_per_req: if total > 0.0 { cpu / total * 1e6 } else { 0.0 },
    })
}

/// The ceiling: the same row, read with rusqlite, returned as JSON.
fn ceiling(db: PathBuf) -> axum::Router {
    use axum::extract::{Path as P, State};
    thread_local! {
        static CONN: std::cell::RefCell<Option<rusqlite::Connection>> = const { std::cell::RefCell::new(None) };
    }
    async fn get(State(db): State<Arc<PathBuf>>, P(id): P<String>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let row = tokio::task::spawn_blocking(move || {
            CONN.with(|c| {
                let mut c = c.borrow_mut();
                if c.is_none() {
                    *c = rusqlite::Connection::open_with_flags(
                        db.as_path(),
                        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                    )
                    .ok();
                }
                let conn = c.as_ref()?;
                let uuid: uuid::Uuid = id.parse().ok()?;
                let mut stmt = conn
                    .prepare_cached("SELECT * FROM artifacts WHERE id = ?1")
                    .ok()?;
                let names: Vec<String> = stmt.column_names().map(|s| s.to_string()).collect();
                stmt.query_row([uuid], |r| {
                    let mut m = serde_json::Map::new();
                    for (i, n) in names.iter().enumerate() {
                        let v = match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => serde_json::Value::Null,
                            rusqlite::types::ValueRef::Integer(x) => x.into(),
                            rusqlite::types::ValueRef::Real(x) => x.into(),
                            rusqlite::types::ValueRef::Text(t) => {
                                String::from_utf8_lossy(t).into_owned().into()
                            }
                            rusqlite::types::ValueRef::Blob(b) => hex::encode(b).into(),
                        };
                        m.insert(n.clone(), v);
                    }
                    Ok(serde_json::Value::Object(m))
                })
                .ok()
            })
        })
        .await
        .ok()
        .flatten();
        match row {
            Some(v) => axum::Json(v).into_response(),
            None => axum::http::StatusCode::NOT_FOUND.into_response(),
        }
    }
    axum::Router::new()
        .route("/ceiling/artifacts/{id}", axum::routing::get(get))
        .with_state(Arc::new(db))
}

pub fn run(n: usize, seconds: u64) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let corpus = tmp.path().join("corpus");
    eprintln!("generating and ingesting {n} markdown files…");
    crate::retrieval::generate(&corpus, n)?;
    let data = tmp.path().join("data");
    let svc = Services::open(
        &StoreConfig {
            data_dir: data.clone(),
            busy_timeout: Duration::from_secs(30),
        },
        StoreOpenMode::Create,
    )?;
    let admin = Caller::new(Actor::local_admin(), Namespace::default());
    let r = svc.ingest_and_index(
        &admin,
        &kontextual_app::IngestRequest {
            paths: vec![corpus.clone()],
            collection: "bench".to_owned(),
            prune: false,
            source_system: None,
        },
        &kontextual_app::NoProgress,
    )?;
    if r.new != n as u64 {
        bail!("ingest stored {} of {n}", r.new);
    }
    let agent: Actor = "agent:bench".parse()?;
    svc.grant(
        &admin,
        agent.clone(),
        kontextual_model::GrantPermission::Read,
        GrantOn::Collection("bench"),
    )?;
    let token = svc
        .key_create(
            &admin,
            "bench",
            agent,
            vec![kontextual_model::Scope::Read],
            None,
        )?
        .token;
    let some = svc.artifact_list(
        &admin,
        &kontextual_app::store_types::ArtifactQuery::default(),
        &kontextual_app::store_types::PageRequest::first(1),
    )?;
    let id = some.items[0].id.to_string();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let svc = Arc::new(svc);
    let state = kontextual_server::AppState::new(
        svc.clone(),
        Actor::local_admin(),
        Namespace::default(),
        kontextual_server::limits::LimitConfig {
            per_key_per_second: 1_000_000,
            per_key_burst: 1_000_000,
            failed_auth_per_minute: 10,
        },
    );
    let (ours, _) = kontextual_server::router(state, &kontextual_server::ServeConfig::default());
    let db = data.join("kontextual.db");
    let addr: SocketAddr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let app = ours.merge(ceiling(db));
        tokio::spawn(async move {
            let _ = axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        Ok::<_, std::io::Error>(addr)
    })?;
    // keep the index fresh as `serve` would (nothing changes during the run)
    svc.index_follow()?;
    let base = format!("http://{addr}");
    let z = format!("{seconds}s");
    let words = ["zuka", "rokami", "delo", "tusa", "mikavi", "kato"];
    let sat = ["-z", z.as_str(), "-c", "16"];
    let fixed = [
        "-z",
        z.as_str(),
        "-c",
        "16",
        "-q",
        "200",
        "--latency-correction",
    ];
    // warm up both
    oha(
        &format!("{base}/v1/artifacts/{id}"),
        Some(&token),
        &["-n", "2000", "-c", "8"],
    )?;
    oha(
        &format!("{base}/ceiling/artifacts/{id}"),
        None,
        &["-n", "2000", "-c", "8"],
    )?;
    let mut rows = Vec::new();
    for (label, url, tok, args) in [
        (
            "ceiling: minimal axum + rusqlite row",
            format!("{base}/ceiling/artifacts/{id}"),
            None,
            &sat[..],
        ),
        (
            "kontextual GET /v1/artifacts/{id}",
            format!("{base}/v1/artifacts/{id}"),
            Some(token.as_str()),
            &sat[..],
        ),
        (
            "ceiling at 200 req/s",
            format!("{base}/ceiling/artifacts/{id}"),
            None,
            &fixed[..],
        ),
        (
            "kontextual artifact at 200 req/s",
            format!("{base}/v1/artifacts/{id}"),
            Some(token.as_str()),
            &fixed[..],
        ),
        (
            "kontextual GET /v1/search (saturation)",
            format!("{base}/v1/search?q={}&limit=10", words[0]),
            Some(token.as_str()),
            &sat[..],
        ),
        (
            "kontextual GET /v1/search at 200 req/s",
            format!("{base}/v1/search?q={}&limit=10", words[1]),
            Some(token.as_str()),
            &fixed[..],
        ),
    ] {
        let r = oha(&url, tok, args)?;
        if r.ok < 0.999 {
            bail!("{label}: success rate {}", r.ok);
        }
        eprintln!(
            "  {label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
            r.rps, r.p50_ms, r.p99_ms
        );
        rows.push((label.to_owned(), r));
    }
    // The same server on PostgreSQL (each request a round trip to the database).
    match pg_server(&rt, &corpus, n) {
        Ok(Some((pg_base, pg_token, pg_id, drop_db))) => {
            let url = format!("{pg_base}/v1/artifacts/{pg_id}");
            oha(&url, Some(&pg_token), &["-n", "2000", "-c", "8"])?;
            for (label, args) in [
                ("kontextual on PostgreSQL GET /v1/artifacts/{id}", &sat[..]),
                ("kontextual on PostgreSQL artifact at 200 req/s", &fixed[..]),
            ] {
                let r = oha(&url, Some(&pg_token), args)?;
                if r.ok < 0.999 {
                    bail!("{label}: success rate {}", r.ok);
                }
                eprintln!(
                    "  {label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms",
                    r.rps, r.p50_ms, r.p99_ms
                );
                rows.push((label.to_owned(), r));
            }
            let _ = std::process::Command::new("psql")
                .args([
                    "-q",
                    "-d",
                    &drop_db.0,
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", drop_db.1),
                ])
                .status();
        }
        Ok(None) => eprintln!("  (no PostgreSQL rows: set KX_BENCH_DATABASE_URL)"),
        Err(e) => eprintln!("  (no PostgreSQL rows: {e:#})"),
    }
    let ceiling_rps = rows[0].1.rps;
    println!(
        "\n### HTTP: {n} artifacts, oha -c 16, {seconds} s per line, same process serves both\n"
    );
    println!("| endpoint | req/s | p50 ms | p99 ms | server CPU µs/req | vs ceiling (req/s) |");
    println!("|---|---|---|---|---|---|");
    for (label, r) in &rows {
        let ratio = if label.contains("200 req/s") || label.contains("search") {
            "—".to_owned()
        } else {
            format!("{:.2}×", r.rps / ceiling_rps)
        };
        println!(
            "| {label} | {:.0} | {:.2} | {:.2} | {:.0} | {ratio} |",
            r.rps, r.p50_ms, r.p99_ms, r.cpu_us_per_req
        );
    }
    drop(rt);
    Ok(())
}

/// Base URL, token, an artifact id, and (admin URL, database) to drop.
type PgServer = (String, String, String, (String, String));

/// A second server over a PostgreSQL store holding the same corpus:
/// (base URL, token, an artifact id). `None` without a database URL.
fn pg_server(
    rt: &tokio::runtime::Runtime,
    corpus: &std::path::Path,
    n: usize,
) -> Result<Option<PgServer>> {
    let Ok(admin_url) = std::env::var("KX_BENCH_DATABASE_URL") else {
        return Ok(None);
    };
    let name = format!("kx_bench_http_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        let ok = std::process::Command::new("psql")
            .args(["-q", "-d", &admin_url, "-c", &sql])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("psql could not run {sql}");
        }
    }
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    let dir = tempfile::tempdir()?.keep();
    let svc = Services::open_postgres(&url, &dir, true, Duration::from_secs(30))?;
    let admin = Caller::new(Actor::local_admin(), Namespace::default());
    let r = svc.ingest_and_index(
        &admin,
        &kontextual_app::IngestRequest {
            paths: vec![corpus.to_owned()],
            collection: "bench".to_owned(),
            prune: false,
            source_system: None,
        },
        &kontextual_app::NoProgress,
    )?;
    if r.new != n as u64 {
        bail!("PostgreSQL ingest stored {} of {n}", r.new);
    }
    let agent: Actor = "agent:bench".parse()?;
    svc.grant(
        &admin,
        agent.clone(),
        kontextual_model::GrantPermission::Read,
        GrantOn::Collection("bench"),
    )?;
    let token = svc
        .key_create(
            &admin,
            "bench",
            agent,
            vec![kontextual_model::Scope::Read],
            None,
        )?
        .token;
    let some = svc.artifact_list(
        &admin,
        &kontextual_app::store_types::ArtifactQuery::default(),
        &kontextual_app::store_types::PageRequest::first(1),
    )?;
    let id = some.items[0].id.to_string();
    let svc = Arc::new(svc);
    let state = kontextual_server::AppState::new(
        svc.clone(),
        Actor::local_admin(),
        Namespace::default(),
        kontextual_server::limits::LimitConfig {
            per_key_per_second: 1_000_000,
            per_key_burst: 1_000_000,
            failed_auth_per_minute: 10,
        },
    );
    let (app, _) = kontextual_server::router(state, &kontextual_server::ServeConfig::default());
    let addr: SocketAddr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        tokio::spawn(async move {
            let _ = axum::serve(l, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        Ok::<_, std::io::Error>(addr)
    })?;
    Ok(Some((
        format!("http://{addr}"),
        token,
        id,
        (admin_url.clone(), name),
    )))
}
