//! Runs the reference `standardwebhooks` implementation (PyPI) over
//! requests we signed. Shared by the webhooks crate's signature test and the
//! CLI's end-to-end test (`#[path]`-included there), with the one Python
//! script beside it.

use std::io::Write;
use std::process::{Command, Stdio};

/// One request to verify: the secret to verify with, the three headers and
/// the exact body bytes.
pub struct Case<'a> {
    pub secret: &'a str,
    pub id: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
    pub body: &'a [u8],
}

/// Whether the reference implementation accepts each case, in order.
/// `None` (after a `SKIPPED` note) when python3 cannot import the package,
/// unless `CI_REQUIRE_STANDARDWEBHOOKS=1`, which makes that a failure.
pub fn verdicts(cases: &[Case<'_>]) -> Option<Vec<bool>> {
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            serde_json::json!({
                "secret": c.secret,
                "body_hex": c.body.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "headers": {
                    "webhook-id": c.id,
                    "webhook-timestamp": c.timestamp,
                    "webhook-signature": c.signature,
                },
            })
        })
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", include_str!("../standardwebhooks_verify.py")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // The script exits at once (77) when the package is missing, so the
    // write may meet a closed pipe: its exit status says what happened.
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(serde_json::to_string(&input).expect("JSON").as_bytes());
    let out = child.wait_with_output().expect("python3 ends");
    if out.status.code() == Some(77) {
        assert!(
            std::env::var("CI_REQUIRE_STANDARDWEBHOOKS").as_deref() != Ok("1"),
            "CI_REQUIRE_STANDARDWEBHOOKS=1 but python3 cannot import standardwebhooks"
        );
        eprintln!("SKIPPED: python3 package standardwebhooks not installed");
        return None;
    }
    if let Err(e) = written {
        panic!(
            "the script did not read its input ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<bool> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l == "ok")
        .collect();
    assert_eq!(verdicts.len(), cases.len(), "one verdict per case");
    Some(verdicts)
}
