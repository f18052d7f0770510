//! O5: the event catalog and the change feed from the real binary
//! (`event-type list|show`, `event list`), on either engine.

mod support;

use serde_json::Value;
use support::Env;

fn kinds(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// O5: the catalog lists every type with its status; `show` prints one
/// type's JSON Schema; an unknown type is "not found" (exit 3).
#[test]
fn o5_event_type_list_and_show() {
    let env = Env::new();
    let all = env.json(&["event-type", "list"]);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for n in [
        "artifact.created",
        "ingest.succeeded",
        "policy.denied",
        "webhook.created",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let t = env.json(&["event-type", "show", "artifact.created"]);
    assert_eq!(t["version"], 1);
    assert_eq!(t["status"], "emitted");
    assert_eq!(t["schema"]["type"], "object");
    assert!(
        t["schema"]["required"]
            .as_array()
            .unwrap()
            .contains(&Value::from("collection"))
    );
    let text = env.ok(&["event-type", "show", "run.failed"]);
    assert!(text.contains("\"properties\""), "{text}");
    let err = env.fails(3, &["event-type", "show", "artifact.exploded"]);
    assert!(err.contains("artifact.exploded"), "{err}");
}

/// O5: `event list` shows what the writes did, in order, as CloudEvents;
/// filters by type pattern and collection; pages with --after/--limit;
/// a legal hold's refusal is a `policy.denied` event.
#[test]
fn o5_event_list_follows_the_feed() {
    let env = Env::init();
    env.write("docs/a.md", "# A\n\nalpha\n");
    env.write("docs/b.md", "# B\n\nbeta\n");
    env.ok(&["ingest", "docs", "--collection", "handbook"]);
    env.ok(&["collection", "create", "ops"]);
    let all = env.json(&["event", "list"]);
    let k = kinds(&all);
    assert_eq!(
        k[..2],
        ["collection.created".to_owned(), "ingest.started".to_owned()],
        "{k:?}"
    );
    assert!(k.contains(&"ingest.succeeded".to_owned()), "{k:?}");
    assert_eq!(k.iter().filter(|t| *t == "artifact.created").count(), 2);
    for e in all["items"].as_array().unwrap() {
        assert_eq!(e["specversion"], "1.0");
        assert!(e["source"].as_str().unwrap().starts_with("kontextual://"));
    }
    let arts = env.json(&["event", "list", "--type", "artifact.*"]);
    assert_eq!(kinds(&arts), ["artifact.created", "artifact.created"]);
    let mixed = env.json(&[
        "event",
        "list",
        "--type",
        "collection.created",
        "--type",
        "ingest.*",
    ]);
    assert!(
        kinds(&mixed)
            .iter()
            .all(|t| t == "collection.created" || t.starts_with("ingest."))
    );
    let ops = env.json(&["event", "list", "--collection", "ops"]);
    assert_eq!(kinds(&ops), ["collection.created"]);
    let p1 = env.json(&["event", "list", "--limit", "2"]);
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let next = p1["next_after"].as_u64().unwrap().to_string();
    let p2 = env.json(&["event", "list", "--after", &next, "--limit", "1"]);
    assert_eq!(p2["items"][0]["id"], all["items"][2]["id"]);
    // the hint for the next page keeps the filters, quoted for a shell
    let out = env.run(&[
        "event",
        "list",
        "--type",
        "ingest.*",
        "--collection",
        "handbook",
        "--limit",
        "1",
    ]);
    assert!(out.status.success());
    let text = format!("{}{}", support::stdout(&out), support::stderr(&out));
    assert!(
        text.contains("--type 'ingest.*' --collection handbook --limit 1"),
        "{text}"
    );
    // and the store and namespace it read, so pasted it reads the same
    let other = env.run(&["--namespace", "other", "event", "list", "--limit", "1"]);
    let text = format!("{}{}", support::stdout(&other), support::stderr(&other));
    // (on PostgreSQL the URL is not printed: it may hold a password)
    if support::engine() == support::Engine::Sqlite {
        assert!(text.contains("--data-dir "), "{text}");
    }
    assert!(text.contains("--namespace other event list"), "{text}");
    let err = env.fails(2, &["event", "list", "--collection", "no such"]);
    assert!(err.contains("no such"), "{err}");
    env.fails(2, &["event", "list", "--type", "Artifact"]);
    let err = env.fails(2, &["event", "list", "--type", "artifact.craeted"]);
    assert!(err.contains("matches no event type"), "{err}");

    env.ok(&["hold", "set", "handbook/a.md", "--reason", "case 7"]);
    env.fails(4, &["artifact", "delete", "handbook/a.md"]);
    let denied = env.json(&["event", "list", "--type", "policy.denied"]);
    let items = denied["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{denied}");
    assert_eq!(items[0]["data"]["reason"], "hold");
    assert!(
        items[0]["subject"]
            .as_str()
            .unwrap()
            .contains("handbook/a.md"),
        "{denied}"
    );
}
