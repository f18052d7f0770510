//! O5 webhook delivery, end to end against real sockets: the SSRF table
//! (every forbidden target refused with no connection made), delivery
//! outcomes against a local receiver thread, and the signatures checked by
//! the reference `standardwebhooks` Python package.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "support/standardwebhooks.rs"]
mod standardwebhooks;

use kontextual_webhooks::{
    AddressPolicy, AllowList, Attempt, Client, ClientConfig, Destination, Forbidden, Headers,
    Secret, unix_now, verify,
};

// ---------------------------------------------------------------- helpers

/// A tiny HTTP/1.1 receiver on 127.0.0.1: reads each request (head and a
/// `content-length` body), records it and answers with `reply(request)`;
/// `None` means hold the connection open for 3 s and answer nothing.
struct Receiver {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

type Reply = dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync;

fn receiver(reply: impl Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync + 'static) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let reply: Arc<Reply> = Arc::new(reply);
    let (h, r) = (hits.clone(), requests.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            h.fetch_add(1, Ordering::SeqCst);
            let (r, reply) = (r.clone(), reply.clone());
            std::thread::spawn(move || {
                let Ok(request) = read_request(&mut conn) else {
                    return;
                };
                r.lock().unwrap().push(request.clone());
                match reply(&request) {
                    Some(bytes) => {
                        let _ = conn.write_all(&bytes);
                    }
                    None => std::thread::sleep(Duration::from_secs(3)),
                }
            });
        }
    });
    Receiver {
        addr,
        hits,
        requests,
    }
}

fn read_request(conn: &mut TcpStream) -> io::Result<Vec<u8>> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + len {
                return Ok(buf);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn response(status: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn header<'a>(request: &'a [u8], name: &str) -> Option<String> {
    let end = find(request, b"\r\n\r\n")?;
    let head: &'a [u8] = &request[..end];
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn body_of(request: &[u8]) -> &[u8] {
    find(request, b"\r\n\r\n").map_or(&[][..], |end| &request[end + 4..])
}

/// The test resolver: fixed answers for `.test` names, nothing else.
fn test_lookup(host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
    let ips: &[&str] = match host {
        "loopback.test" | "localhost" | "receiver.test" => &["127.0.0.1"],
        "mixed.test" => &["93.184.215.14", "127.0.0.1"],
        "metadata.test" => &["169.254.169.254"],
        "v6loop.test" => &["::1"],
        "mapped.test" => &["::ffff:127.0.0.1"],
        "nat64.test" => &["64:ff9b::a9fe:a9fe"],
        "lan.test" => &["192.168.1.20"],
        _ => return Err(io::Error::new(io::ErrorKind::NotFound, "no such test name")),
    };
    Ok(ips.iter().map(|s| s.parse().unwrap()).collect())
}

fn client(allow: &[&str], timeout: Duration) -> Client {
    let allow: Vec<String> = allow.iter().map(|s| s.to_string()).collect();
    Client::new(ClientConfig {
        policy: AddressPolicy::new(AllowList::from_values(&allow).unwrap()),
        timeout,
        lookup: Arc::new(test_lookup),
    })
}

fn signed(body: &[u8]) -> (Secret, Headers) {
    let secret = Secret::generate().unwrap();
    let headers = Headers::sign("msg_2kq8VxZ3", unix_now(), body, &[&secret]).unwrap();
    (secret, headers)
}

// ---------------------------------------------------------------- SSRF

/// Every forbidden target in every spelling is refused — by the URL
/// checks or by the address policy — and the local listener that all the
/// loopback spellings point at never sees a connection.
#[test]
fn o5_ssrf_table_refuses_every_target_without_connecting() {
    use Forbidden::*;
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let p = trap.local_addr().unwrap().port();

    // (URL, the class expected; None = refused by the URL checks)
    let table: Vec<(String, Option<Forbidden>)> = vec![
        // loopback, in every IPv4 spelling the WHATWG parser accepts
        (format!("http://127.0.0.1:{p}/"), Some(Loopback)),
        (format!("http://127.1:{p}/"), Some(Loopback)),
        (format!("http://127.0.1:{p}/"), Some(Loopback)),
        (format!("http://2130706433:{p}/"), Some(Loopback)),
        (format!("http://0177.0.0.1:{p}/"), Some(Loopback)),
        (format!("http://0x7f.1:{p}/"), Some(Loopback)),
        (format!("http://0x7f000001:{p}/"), Some(Loopback)),
        (format!("http://0x7F.0.0.1:{p}/"), Some(Loopback)),
        (format!("http://017700000001:{p}/"), Some(Loopback)),
        (format!("http://127.000.000.001:{p}/"), Some(Loopback)),
        (format!("https://127.255.255.254:{p}/"), Some(Loopback)),
        (format!("http://[::1]:{p}/"), Some(Loopback)),
        (format!("http://[0:0:0:0:0:0:0:1]:{p}/"), Some(Loopback)),
        // unspecified and this-network
        (format!("http://0.0.0.0:{p}/"), Some(Unspecified)),
        (format!("http://0:{p}/"), Some(Unspecified)),
        (format!("http://[::]:{p}/"), Some(Unspecified)),
        (format!("http://0.1.2.3:{p}/"), Some(ThisNetwork)),
        // private, shared, link-local
        (format!("http://10.0.0.1:{p}/"), Some(Private)),
        (format!("http://012.0.0.1:{p}/"), Some(Private)),
        (format!("http://172.16.0.1:{p}/"), Some(Private)),
        (format!("http://192.168.0.1:{p}/"), Some(Private)),
        (format!("http://3232235521:{p}/"), Some(Private)),
        (format!("http://100.64.0.1:{p}/"), Some(SharedAddressSpace)),
        (format!("http://169.254.1.1:{p}/"), Some(LinkLocal)),
        (format!("http://[fe80::1]:{p}/"), Some(LinkLocal)),
        (format!("http://[fc00::1]:{p}/"), Some(UniqueLocal)),
        (format!("http://[fd12:3456::1]:{p}/"), Some(UniqueLocal)),
        // cloud metadata
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            Some(CloudMetadata),
        ),
        ("http://0xa9fea9fe/".into(), Some(CloudMetadata)),
        ("http://2852039166/".into(), Some(CloudMetadata)),
        ("http://0251.0376.0251.0376/".into(), Some(CloudMetadata)),
        ("http://100.100.100.200/".into(), Some(CloudMetadata)),
        ("http://[fd00:ec2::254]/".into(), Some(CloudMetadata)),
        // multicast, broadcast, documentation, benchmarking, reserved
        (format!("http://224.0.0.1:{p}/"), Some(Multicast)),
        (format!("http://[ff02::1]:{p}/"), Some(Multicast)),
        (format!("http://255.255.255.255:{p}/"), Some(Broadcast)),
        (format!("http://0xffffffff:{p}/"), Some(Broadcast)),
        (format!("http://192.0.2.1:{p}/"), Some(Documentation)),
        (format!("http://198.51.100.1:{p}/"), Some(Documentation)),
        (format!("http://203.0.113.1:{p}/"), Some(Documentation)),
        (format!("http://[2001:db8::1]:{p}/"), Some(Documentation)),
        (format!("http://198.18.0.1:{p}/"), Some(Benchmarking)),
        (format!("http://240.0.0.1:{p}/"), Some(Reserved)),
        // IPv6 that embeds or tunnels to a forbidden IPv4 address
        (format!("http://[::ffff:127.0.0.1]:{p}/"), Some(Ipv4Mapped)),
        (format!("http://[::ffff:7f00:1]:{p}/"), Some(Ipv4Mapped)),
        ("http://[::ffff:169.254.169.254]/".into(), Some(Ipv4Mapped)),
        (format!("http://[::ffff:10.0.0.1]:{p}/"), Some(Ipv4Mapped)),
        (format!("http://[::127.0.0.1]:{p}/"), Some(Ipv4Compatible)),
        (format!("http://[64:ff9b::127.0.0.1]:{p}/"), Some(Nat64)),
        ("http://[64:ff9b::a9fe:a9fe]/".into(), Some(Nat64)),
        (format!("http://[2002:7f00:1::1]:{p}/"), Some(SixToFour)),
        ("http://[2002:a9fe:a9fe::]/".into(), Some(SixToFour)),
        (
            "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/".into(),
            Some(Teredo),
        ),
        // names, judged by what the (injected) resolver answers
        (format!("http://loopback.test:{p}/"), Some(Loopback)),
        (format!("http://localhost:{p}/"), Some(Loopback)),
        (format!("http://LOCALHOST.:{p}/"), Some(Loopback)),
        (format!("http://mixed.test:{p}/"), Some(Loopback)),
        ("https://metadata.test/".into(), Some(CloudMetadata)),
        (format!("http://v6loop.test:{p}/"), Some(Loopback)),
        (format!("http://mapped.test:{p}/"), Some(Ipv4Mapped)),
        ("http://nat64.test/".into(), Some(Nat64)),
        ("http://lan.test/".into(), Some(Private)),
        // refused by the URL checks: credentials, schemes, no host, brackets
        (format!("http://user:pw@example.com:{p}/"), None),
        (format!("http://admin@127.0.0.1:{p}/"), None),
        (format!("ftp://127.0.0.1:{p}/"), None),
        ("file:///etc/passwd".into(), None),
        (format!("gopher://127.0.0.1:{p}/_"), None),
        (format!("ws://127.0.0.1:{p}/"), None),
        ("javascript:alert(1)".into(), None),
        ("http://".into(), None),
        (format!("http://[127.0.0.1]:{p}/"), None),
        ("//127.0.0.1/".into(), None),
    ];
    assert!(table.len() >= 40, "{} targets", table.len());

    // The localhost spelling with a trailing dot resolves as `localhost.`;
    // make the resolver answer for it too.
    let lookup = |host: &str, port: u16| match host {
        "LOCALHOST." | "localhost." => test_lookup("localhost", port),
        other => test_lookup(other, port),
    };
    let client = Client::new(ClientConfig {
        policy: AddressPolicy::default(),
        timeout: Duration::from_secs(2),
        lookup: Arc::new(lookup),
    });
    let body = br#"{"type":"artifact.updated"}"#;
    let (_, headers) = signed(body);
    let mut wrong = Vec::new();
    for (url, expected) in &table {
        let outcome = match Destination::parse(url) {
            Err(e) => {
                if expected.is_some() {
                    wrong.push(format!("{url}: URL refused ({e}), expected {expected:?}"));
                }
                continue;
            }
            Ok(dest) => client.attempt(&dest, &headers, body),
        };
        match (&outcome, expected) {
            (Attempt::Refused { reason, .. }, Some(class)) if reason == class => {}
            _ => wrong.push(format!("{url}: {outcome:?}, expected {expected:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused as expected:\n{}",
        wrong.join("\n")
    );
    match trap.accept() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("a refused target reached the listener: {other:?}"),
    }
}

// ---------------------------------------------------------------- delivery

#[test]
fn o5_delivered_on_2xx_with_signed_headers() {
    let rx = receiver(|_| Some(response("200 OK", "", b"thanks")));
    let body = br#"{"type":"artifact.created","data":{"id":"a1"}}"#;
    let (secret, headers) = signed(body);
    let dest = Destination::parse(&format!("http://{}/hook?k=v", rx.addr)).unwrap();
    let outcome = client(&["127.0.0.1/32"], Duration::from_secs(5)).attempt(&dest, &headers, body);
    match outcome {
        Attempt::Delivered {
            status, response, ..
        } => {
            assert_eq!(status, 200);
            assert_eq!(response, "thanks");
        }
        other => panic!("{other:?}"),
    }
    let requests = rx.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let req = &requests[0];
    assert!(req.starts_with(b"POST /hook?k=v HTTP/1.1\r\n"));
    assert_eq!(body_of(req), body);
    assert_eq!(
        header(req, "content-type").as_deref(),
        Some("application/json")
    );
    let id = header(req, "webhook-id").unwrap();
    let ts: i64 = header(req, "webhook-timestamp").unwrap().parse().unwrap();
    let sig = header(req, "webhook-signature").unwrap();
    verify(&secret, &id, ts, body_of(req), &sig, unix_now()).unwrap();
}

#[test]
fn o5_allowlist_is_what_permits_loopback() {
    let rx = receiver(|_| Some(response("204 No Content", "", b"")));
    let body = b"{}";
    let (_, headers) = signed(body);
    let dest = Destination::parse(&format!("http://{}/", rx.addr)).unwrap();
    let closed = client(&[], Duration::from_secs(5)).attempt(&dest, &headers, body);
    assert!(
        matches!(
            closed,
            Attempt::Refused {
                reason: Forbidden::Loopback,
                ..
            }
        ),
        "{closed:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rx.hits.load(Ordering::SeqCst), 0, "refused, yet connected");

    let open = client(&["127.0.0.1/32"], Duration::from_secs(5)).attempt(&dest, &headers, body);
    assert!(
        matches!(open, Attempt::Delivered { status: 204, .. }),
        "{open:?}"
    );
    // a name that resolves to the allowed address is delivered too
    let by_name = Destination::parse(&format!("http://receiver.test:{}/", rx.addr.port())).unwrap();
    let named = client(&["127.0.0.1/32"], Duration::from_secs(5)).attempt(&by_name, &headers, body);
    assert!(
        matches!(named, Attempt::Delivered { status: 204, .. }),
        "{named:?}"
    );
    assert_eq!(rx.hits.load(Ordering::SeqCst), 2);
}

fn attempt_against(reply: &'static [u8], timeout: Duration) -> (Attempt, Receiver) {
    let rx = receiver(move |_| Some(reply.to_vec()));
    let body = b"{}";
    let (_, headers) = signed(body);
    let dest = Destination::parse(&format!("http://{}/", rx.addr)).unwrap();
    let outcome = client(&["127.0.0.1/32"], timeout).attempt(&dest, &headers, body);
    (outcome, rx)
}

#[test]
fn o5_500_is_a_failure_with_the_response_captured() {
    let reply =
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops";
    match attempt_against(reply, Duration::from_secs(5)).0 {
        Attempt::Failed {
            status,
            gone,
            retry_after,
            response,
            ..
        } => {
            assert_eq!(status, Some(500));
            assert!(!gone);
            assert_eq!(retry_after, None);
            assert_eq!(response, "oops");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn o5_410_gone_asks_to_disable() {
    let reply = b"HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    match attempt_against(reply, Duration::from_secs(5)).0 {
        Attempt::Failed { status, gone, .. } => {
            assert_eq!(status, Some(410));
            assert!(gone);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn o5_429_carries_retry_after() {
    let reply = b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    match attempt_against(reply, Duration::from_secs(5)).0 {
        Attempt::Failed {
            status,
            retry_after,
            gone,
            ..
        } => {
            assert_eq!(status, Some(429));
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(!gone);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn o5_response_capture_is_one_kib_lossy() {
    let rx = receiver(|_| {
        let mut big = vec![0xffu8; 3];
        big.extend(std::iter::repeat_n(b'x', 5000));
        Some(response("200 OK", "", &big))
    });
    let (_, headers) = signed(b"{}");
    let dest = Destination::parse(&format!("http://{}/", rx.addr)).unwrap();
    match client(&["127.0.0.1/32"], Duration::from_secs(5)).attempt(&dest, &headers, b"{}") {
        Attempt::Delivered { response, .. } => {
            assert!(response.starts_with('\u{fffd}'));
            assert_eq!(response.chars().filter(|c| *c == 'x').count(), 1021);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn o5_timeout_is_a_failure_without_status() {
    let rx = receiver(|_| None);
    let (_, headers) = signed(b"{}");
    let dest = Destination::parse(&format!("http://{}/", rx.addr)).unwrap();
    let started = std::time::Instant::now();
    let outcome =
        client(&["127.0.0.1/32"], Duration::from_millis(400)).attempt(&dest, &headers, b"{}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match outcome {
        Attempt::Failed { status, error, .. } => {
            assert_eq!(status, None);
            assert_eq!(error, "timeout: no answer within 0.4 s");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn o5_redirects_are_never_followed() {
    // to the metadata endpoint
    let reply = b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/iam\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    match attempt_against(reply, Duration::from_secs(5)).0 {
        Attempt::Failed { status, error, .. } => {
            assert_eq!(status, Some(302));
            assert!(error.contains("not followed"), "{error}");
            assert!(
                !error.contains("iam"),
                "the location's path leaked: {error}"
            );
        }
        other => panic!("{other:?}"),
    }
    // and to an allowed receiver, which must see nothing
    let target = receiver(|_| Some(response("200 OK", "", b"")));
    let location = format!("http://{}/stolen", target.addr);
    let rx = receiver(move |_| {
        Some(response(
            "307 Temporary Redirect",
            &format!("location: {location}\r\n"),
            b"",
        ))
    });
    let (_, headers) = signed(b"{}");
    let dest = Destination::parse(&format!("http://{}/", rx.addr)).unwrap();
    let outcome = client(&["127.0.0.1/32"], Duration::from_secs(5)).attempt(&dest, &headers, b"{}");
    assert!(
        matches!(
            outcome,
            Attempt::Failed {
                status: Some(307),
                ..
            }
        ),
        "{outcome:?}"
    );
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[test]
fn o5_connection_refused_is_a_failure() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_, headers) = signed(b"{}");
    let dest = Destination::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let outcome = client(&["127.0.0.1/32"], Duration::from_secs(5)).attempt(&dest, &headers, b"{}");
    assert!(
        matches!(outcome, Attempt::Failed { status: None, .. }),
        "{outcome:?}"
    );
}

// ---------------------------------------------------------------- signatures

/// Our signatures verified by the reference implementation, the
/// `standardwebhooks` PyPI package: several messages, one signed with two
/// secrets (rotation; each secret verifies alone), a non-UTF-8 body, and a
/// tampered body that must fail. Skipped (with a note) when the package is
/// missing, unless `CI_REQUIRE_STANDARDWEBHOOKS=1`.
#[test]
fn o5_signatures_verify_with_the_standardwebhooks_package() {
    let a = Secret::generate().unwrap();
    let b = Secret::generate().unwrap();
    let kat = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    let now = unix_now();
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"email":"test@example.com","username":"test_user"}"#.to_vec(),
        r#"{"type":"artifact.updated","title":"Grüße — 日本語 ✓"}"#
            .as_bytes()
            .to_vec(),
        b"{}".to_vec(),
        format!(r#"{{"pad":"{}"}}"#, "x".repeat(30_000)).into_bytes(),
        vec![0xff, 0xfe, 0x00, b'{'],
    ];
    // (secret to verify with, id, body, headers, expected to verify)
    let mut cases = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let id = format!("msg_{i}_2kq8VxZ3");
        let single = Headers::sign(&id, now, body, &[&kat]).unwrap();
        cases.push((kat.expose(), body.clone(), single.clone(), true));
        let rotated = Headers::sign(&id, now, body, &[&a, &b]).unwrap();
        cases.push((a.expose(), body.clone(), rotated.clone(), true));
        cases.push((b.expose(), body.clone(), rotated.clone(), true));
        cases.push((kat.expose(), body.clone(), rotated, false));
        let mut tampered = body.clone();
        tampered.push(b' ');
        cases.push((kat.expose(), tampered, single, false));
    }

    let pairs: Vec<[(&str, String); 3]> = cases.iter().map(|c| c.2.pairs()).collect();
    let checked: Vec<standardwebhooks::Case<'_>> = cases
        .iter()
        .zip(&pairs)
        .map(
            |((secret, body, _, _), [(_, id), (_, ts), (_, sig)])| standardwebhooks::Case {
                secret,
                id,
                timestamp: ts,
                signature: sig,
                body,
            },
        )
        .collect();
    let Some(verdicts) = standardwebhooks::verdicts(&checked) else {
        return;
    };
    assert_eq!(verdicts.len(), cases.len());
    for ((_, _, headers, expected), verdict) in cases.iter().zip(&verdicts) {
        assert_eq!(
            *verdict, *expected,
            "{}: verified {verdict}, expected {expected}",
            headers.id
        );
    }
    let passed = verdicts.iter().filter(|v| **v).count();
    eprintln!(
        "standardwebhooks verified {passed} signatures and rejected {} forgeries",
        verdicts.len() - passed
    );

    // and the other way: a signature made by the reference library verifies here
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, datetime\nfrom standardwebhooks.webhooks import Webhook\nts = int(sys.argv[2])\nprint(Webhook(sys.argv[1]).sign('msg_py', datetime.datetime.fromtimestamp(ts, datetime.timezone.utc), b'{\"from\":\"python\"}'))",
            &a.expose(),
            &now.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = String::from_utf8(out.stdout).unwrap();
    verify(&a, "msg_py", now, br#"{"from":"python"}"#, sig.trim(), now).unwrap();
}
