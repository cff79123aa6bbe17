//! The issuer server and the HTTP client end to end, served from a thread on loopback.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use harness::history::{read_jsonl, Ev, Record, RedeemVerdict, UseVerdict};
use harness::issuer::{HttpIssuer, IssuedPair, Issuer, IssuerConfig};
use pool_core::digest::tag;
use pool_core::world::{Issuer as _, RedeemError, UseOutcome};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.jsonl");
    Fixture { _dir: dir, ledger }
}

fn ledger(path: &Path) -> Vec<Record> {
    read_jsonl(path).expect("the ledger parses")
}

fn assert_no_secrets(path: &Path, secrets: &[&str]) {
    let text = std::fs::read_to_string(path).unwrap();
    for s in secrets {
        assert!(!text.contains(s), "ledger leaks {}", tag(s));
    }
}

/// A raw request, for the cases the pool's client never sends.
fn raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_recv_response(Some(TIMEOUT))
        .build()
        .into();
    let result = match method {
        "GET" => {
            let mut r = agent.get(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        _ => {
            let mut r = match method {
                "POST" => agent.post(url),
                "PUT" => agent.put(url),
                other => panic!("{other}"),
            };
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send(body.unwrap_or(""))
        }
    };
    let mut response = result.expect("request reaches the server");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

fn form(url: &str, body: &str) -> (u16, serde_json::Value) {
    raw(
        "POST",
        &format!("{url}/oauth/token"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body),
    )
}

#[test]
fn refresh_round_trip() {
    let f = fixture();
    let mut issuer = Issuer::new(IssuerConfig::default(), &f.ledger).unwrap();
    let g0 = issuer.mint_family();
    let server = issuer.start_in_thread().unwrap();
    let client = HttpIssuer::new(server.url.clone(), 7, TIMEOUT);

    let g1 = client
        .redeem(&g0.refresh)
        .expect("first redemption succeeds");
    assert_eq!(g1.access_token.len(), 43);
    assert_eq!(g1.refresh_token.len(), 43);
    assert_ne!(g1.refresh_token, g0.refresh);
    assert_eq!(g1.expires_in_s, IssuerConfig::default().access_lifetime_s);
    let g2 = client
        .redeem(&g1.refresh_token)
        .expect("the new refresh token works");
    assert_eq!(
        client.use_credential(&g2.access_token),
        UseOutcome::Accepted
    );
    server.stop().unwrap();

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&f.ledger).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the ledger is private");
    let records = ledger(&f.ledger);
    let summary: Vec<(u32, String)> = records
        .iter()
        .map(|r| {
            let what = match &r.ev {
                Ev::Issued { generation, .. } => format!("issued g{generation}"),
                Ev::Redeemed { outcome, .. } => format!("redeemed {outcome:?}"),
                Ev::Used { outcome, .. } => format!("used {outcome:?}"),
                other => format!("{other:?}"),
            };
            (r.proc, what)
        })
        .collect();
    let expect = [
        // The issuer's rules come first, so a history alone says how long a grace lasts.
        (0, "IssuerRules { grace_ms: 0 }"),
        (0, "issued g0"),
        (7, "redeemed Rotated"),
        (7, "issued g1"),
        (7, "redeemed Rotated"),
        (7, "issued g2"),
        (7, "used Accepted"),
    ];
    assert_eq!(summary, expect.map(|(p, s)| (p, s.to_string())).to_vec());
    match &records[3].ev {
        Ev::Issued {
            refresh, access, ..
        } => {
            assert_eq!(refresh, &tag(&g1.refresh_token));
            assert_eq!(access, &tag(&g1.access_token));
        }
        other => panic!("{other:?}"),
    }
    assert_no_secrets(
        &f.ledger,
        &[
            &g0.refresh,
            &g0.access,
            &g1.refresh_token,
            &g1.access_token,
            &g2.refresh_token,
            &g2.access_token,
        ],
    );
}

/// Two workers redeem one token at the same moment, each request held 50-60 ms by the issuer.
fn race(
    config: IssuerConfig,
) -> (
    IssuedPair,
    Vec<Result<pool_core::world::Grant, RedeemError>>,
    Vec<Record>,
) {
    let f = fixture();
    let mut issuer = Issuer::new(config, &f.ledger).unwrap();
    let g0 = issuer.mint_family();
    let server = issuer.start_in_thread().unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let workers: Vec<_> = (1..=2)
        .map(|proc| {
            let (url, barrier, refresh) = (server.url.clone(), barrier.clone(), g0.refresh.clone());
            std::thread::spawn(move || {
                let client = HttpIssuer::new(url, proc, TIMEOUT);
                barrier.wait();
                client.redeem(&refresh)
            })
        })
        .collect();
    let results = workers.into_iter().map(|w| w.join().unwrap()).collect();
    server.stop().unwrap();
    (g0, results, ledger(&f.ledger))
}

#[test]
fn concurrent_double_redeem_revokes_the_family() {
    let config = IssuerConfig {
        latency_ms: (50, 60),
        ..IssuerConfig::default()
    };
    let (g0, results, records) = race(config);
    let wins: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let refusals: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    // Grants hold whole tokens: a failure message shows only the errors.
    assert_eq!(wins.len(), 1, "refusals: {refusals:?}");
    assert_eq!(
        refusals,
        vec![&RedeemError::Refused {
            error: "invalid_grant".into()
        }]
    );
    let revoked: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.ev {
            Ev::FamilyRevoked { family, cause } => Some((*family, cause.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(revoked, vec![(0, tag(&g0.refresh))]);
    let verdicts: Vec<_> = records
        .iter()
        .filter_map(|r| match &r.ev {
            Ev::Redeemed { outcome, refresh } => {
                assert_eq!(refresh, &tag(&g0.refresh));
                assert!(r.proc == 1 || r.proc == 2);
                Some(outcome.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![RedeemVerdict::Rotated, RedeemVerdict::Reused]
    );
}

#[test]
fn concurrent_redeem_within_grace_gets_the_same_pair() {
    let config = IssuerConfig {
        latency_ms: (50, 60),
        grace_ms: 60_000,
        ..IssuerConfig::default()
    };
    let (_, results, records) = race(config);
    let grants: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("both succeed within the grace period"))
        .collect();
    assert_eq!(grants[0].refresh_token, grants[1].refresh_token);
    assert_eq!(grants[0].access_token, grants[1].access_token);
    assert!(!records
        .iter()
        .any(|r| matches!(r.ev, Ev::FamilyRevoked { .. })));
    let issued = records
        .iter()
        .filter(|r| matches!(r.ev, Ev::Issued { .. }))
        .count();
    assert_eq!(issued, 2, "generation 0 and one rotation");
}

#[test]
fn use_endpoint_accepts_rejects_and_rate_limits() {
    let f = fixture();
    let config = IssuerConfig {
        api_keys: vec!["sk-good-0123456789".into()],
        rate_limited_keys: vec!["sk-busy-0123456789".into()],
        rate_limit_reset_ms: Some(5_000),
        ..IssuerConfig::default()
    };
    let mut issuer = Issuer::new(config, &f.ledger).unwrap();
    let g0 = issuer.mint_family();
    let server = issuer.start_in_thread().unwrap();
    let client = HttpIssuer::new(format!("{}/", server.url), 3, TIMEOUT);

    assert_eq!(
        client.use_credential("sk-good-0123456789"),
        UseOutcome::Accepted
    );
    let before = harness::issuer::server::unix_ms();
    match client.use_credential("sk-busy-0123456789") {
        UseOutcome::RateLimited {
            reset_at_ms: Some(t),
        } => assert!(t >= before + 5_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(client.use_credential("sk-unknown"), UseOutcome::Rejected);
    assert_eq!(client.use_credential(&g0.access), UseOutcome::Accepted);
    // Reuse revokes the family; its access token is rejected from then on.
    let g1 = client.redeem(&g0.refresh).unwrap();
    assert!(matches!(
        client.redeem(&g0.refresh),
        Err(RedeemError::Refused { .. })
    ));
    assert_eq!(client.use_credential(&g0.access), UseOutcome::Rejected);
    assert_eq!(
        client.use_credential(&g1.access_token),
        UseOutcome::Rejected
    );

    let use_url = format!("{}/v1/use", server.url);
    assert_eq!(raw("GET", &use_url, &[], None).0, 401, "no credential");
    assert_eq!(
        raw("GET", &use_url, &[("Authorization", "Basic abc")], None).0,
        400
    );
    assert_eq!(
        raw("GET", &use_url, &[("Authorization", "Bearer")], None).0,
        400
    );
    let (status, body) = raw(
        "GET",
        &use_url,
        &[("Authorization", "bearer sk-busy-0123456789")],
        None,
    );
    assert_eq!(status, 429);
    assert!(body["reset_at_ms"].as_u64().is_some());
    server.stop().unwrap();

    let used: Vec<(u32, UseVerdict)> = ledger(&f.ledger)
        .into_iter()
        .filter_map(|r| match r.ev {
            Ev::Used { outcome, .. } => Some((r.proc, outcome)),
            _ => None,
        })
        .collect();
    use UseVerdict::*;
    assert_eq!(
        used,
        vec![
            (3, Accepted),
            (3, RateLimited),
            (3, Unknown),
            (3, Accepted),
            (3, Revoked),
            (3, Revoked),
            (0, RateLimited)
        ]
    );
    assert_no_secrets(
        &f.ledger,
        &[
            "sk-good-0123456789",
            "sk-busy-0123456789",
            &g0.access,
            &g1.access_token,
        ],
    );
}

#[test]
fn malformed_requests_are_400_and_leave_no_ledger_line() {
    let f = fixture();
    let mut issuer = Issuer::new(IssuerConfig::default(), &f.ledger).unwrap();
    let g0 = issuer.mint_family();
    let server = issuer.start_in_thread().unwrap();
    let url = server.url.clone();

    let cases = [
        (
            "grant_type=password&username=a&password=b",
            "unsupported_grant_type",
        ),
        (
            "grant_type=authorization_code&code=x",
            "unsupported_grant_type",
        ),
        ("refresh_token=abc", "invalid_request"),
        ("grant_type=refresh_token", "invalid_request"),
        ("grant_type=refresh_token&refresh_token=", "invalid_request"),
        (
            "grant_type=refresh_token&refresh_token=a&refresh_token=b",
            "invalid_request",
        ),
        (
            "grant_type=refresh_token&refresh_token=%zz",
            "invalid_request",
        ),
        ("", "invalid_request"),
    ];
    for (body, error) in cases {
        let (status, reply) = form(&url, body);
        assert_eq!(
            (status, reply["error"].as_str()),
            (400, Some(error)),
            "body {body:?}"
        );
    }
    let token_url = format!("{url}/oauth/token");
    let good_body = format!("grant_type=refresh_token&refresh_token={}", g0.refresh);
    let (status, reply) = raw(
        "POST",
        &token_url,
        &[("Content-Type", "application/json")],
        Some(&good_body),
    );
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, reply) = raw(
        "POST",
        &token_url,
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Poolcheck-Proc", "abc"),
        ],
        Some(&good_body),
    );
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(raw("GET", &token_url, &[], None).0, 405);
    assert_eq!(raw("PUT", &format!("{url}/v1/use"), &[], Some("")).0, 405);
    assert_eq!(raw("GET", &format!("{url}/nowhere"), &[], None).0, 404);
    // An unknown token is well-formed: refused, and in the ledger.
    let (status, reply) = form(&url, "grant_type=refresh_token&refresh_token=never-issued");
    assert_eq!(
        (status, reply["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // None of the above touched the family: its token still redeems.
    let (status, reply) = form(&url, &good_body);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["token_type"], "Bearer");
    assert!(reply["expires_in"].as_u64().is_some());
    server.stop().unwrap();

    let kinds: Vec<String> = ledger(&f.ledger)
        .iter()
        .map(|r| match &r.ev {
            Ev::Issued { .. } => "issued".to_string(),
            Ev::Redeemed { outcome, .. } => format!("{outcome:?}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            "IssuerRules { grace_ms: 0 }",
            "issued",
            "Unknown",
            "Rotated",
            "issued"
        ]
    );
}

#[test]
fn client_reports_unavailable_when_nobody_answers() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = HttpIssuer::new(
        format!("http://127.0.0.1:{port}"),
        1,
        Duration::from_secs(2),
    );
    assert!(matches!(
        client.redeem("whatever"),
        Err(RedeemError::Unavailable(_))
    ));
    assert!(matches!(
        client.use_credential("whatever"),
        UseOutcome::Unavailable(_)
    ));
}

#[test]
fn a_ledger_that_cannot_be_written_fails_requests_loudly() {
    let dev_full = Path::new("/dev/full");
    if !dev_full.exists() {
        panic!("/dev/full is needed for this test");
    }
    let mut issuer = Issuer::new(IssuerConfig::default(), dev_full).unwrap();
    let g0 = issuer.mint_family(); // its Issued line cannot be written
    let server = issuer.start_in_thread().unwrap();
    let client = HttpIssuer::new(server.url.clone(), 1, TIMEOUT);
    match client.redeem(&g0.refresh) {
        Err(RedeemError::Unavailable(msg)) => assert!(msg.contains("500"), "{msg}"),
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a grant the ledger does not show"),
    }
    assert!(matches!(
        client.use_credential(&g0.access),
        UseOutcome::Unavailable(_)
    ));
    server.stop().unwrap();
}

#[test]
fn a_bad_config_is_refused_before_serving() {
    let f = fixture();
    let config = IssuerConfig {
        latency_ms: (9, 1),
        ..IssuerConfig::default()
    };
    let err = Issuer::new(config, &f.ledger).err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("latency_ms"), "{err}");
}
