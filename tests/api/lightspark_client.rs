//! The Lightspark GraphQL client against a real HTTP fake of the API, and
//! against sockets that refuse or hang.

use std::time::{Duration, Instant};

use invitation_ledger::lightspark::client::{FetchError, LightsparkClient, GET_UMA_INVITATION};
use invitation_ledger::secret::Secret;
use serde_json::{json, Value};

use crate::support::eventually;
use crate::support::fake_lightspark::{self, aliased_entity, FakeLightspark};

const CLIENT_ID: &str = "test-client-id";
const CLIENT_SECRET: &str = "test-client-secret-4f9a2c";
const ID: &str = "UmaInvitation:0191a8b6-fixture-0001";

fn client_for(url: &str, secret: &str, timeout: Duration) -> LightsparkClient {
    LightsparkClient::new(url, CLIENT_ID, Secret::new(secret.to_owned()), timeout).unwrap()
}

fn fixture_entity() -> Value {
    let raw = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/graphql/invitation_claimed.json")).unwrap();
    let answer: Value = serde_json::from_slice(&raw).unwrap();
    answer["data"]["entity"].clone()
}

fn claimed() -> Value {
    aliased_entity(ID, "FIXTURE1", "CLAIMED", "VALIDATED", Some((500, "USD")), Some("$bob@vasp-b.example"))
}

#[test]
fn the_fake_entity_helper_spells_the_invitation_like_the_graphql_fixture() {
    assert_eq!(claimed(), fixture_entity());
}

#[tokio::test]
async fn the_fake_checks_basic_credentials_like_the_real_api() {
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let http = reqwest::Client::new();
    let body = json!({"query": GET_UMA_INVITATION, "variables": {"id": ID}});
    // reqwest's own Basic encoder, independent of the client's and the fake's.
    let ok = http.post(&fake.url).basic_auth(CLIENT_ID, Some(CLIENT_SECRET)).json(&body).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap(), json!({"data": {"entity": null}}));
    let wrong = http.post(&fake.url).basic_auth(CLIENT_ID, Some("nope")).json(&body).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().await.unwrap(), json!({"errors": [{"message": "unauthorized"}]}));
    let missing = http.post(&fake.url).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!((fake.calls(), fake.unauthorized_calls()), (3, 2));
}

#[tokio::test]
async fn fetch_returns_the_entity_with_basic_auth() {
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    fake.set_invitation(ID, claimed());
    let client = client_for(&fake.url, CLIENT_SECRET, Duration::from_secs(5));

    let entity = client.fetch_invitation(ID).await.unwrap();

    assert_eq!(entity, Some(fixture_entity()));
    assert_eq!((fake.calls(), fake.unauthorized_calls()), (1, 0));
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["query"], GET_UMA_INVITATION);
    assert!(GET_UMA_INVITATION.contains("query GetUmaInvitation($id: ID!)"));
    assert_eq!(requests[0]["variables"], json!({"id": ID}));
}

#[tokio::test]
async fn unknown_id_is_none() {
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    fake.set_invitation(ID, claimed());
    let client = client_for(&fake.url, CLIENT_SECRET, Duration::from_secs(5));

    assert_eq!(client.fetch_invitation("UmaInvitation:does-not-exist").await.unwrap(), None);
    assert_eq!(fake.requests()[0]["variables"]["id"], "UmaInvitation:does-not-exist");
}

#[tokio::test]
async fn wrong_credentials_are_a_status_error_and_do_not_leak_the_secret() {
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    fake.set_invitation(ID, claimed());
    let wrong_secret = "wrong-secret-that-must-never-print";
    let client = client_for(&fake.url, wrong_secret, Duration::from_secs(5));

    let e = client.fetch_invitation(ID).await.unwrap_err();

    assert!(matches!(&e, FetchError::Status { status: 401, .. }), "{e:?}");
    // Documented choice: credentials get fixed by an operator and a restart,
    // so the event stays pending rather than being given up.
    assert!(e.is_transient());
    let encoded = fake_lightspark::base64_encode(format!("{CLIENT_ID}:{wrong_secret}").as_bytes());
    for text in [format!("{e}"), format!("{e:?}"), format!("{client:?}")] {
        assert!(!text.contains(wrong_secret), "{text}");
        assert!(!text.contains(CLIENT_SECRET), "{text}");
        assert!(!text.to_ascii_lowercase().contains("basic "), "{text}");
        assert!(!text.contains(&encoded), "{text}");
    }
    assert_eq!((fake.calls(), fake.unauthorized_calls()), (1, 1));
}

#[tokio::test]
async fn server_errors_and_graphql_errors_are_transient() {
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    fake.set_invitation(ID, claimed());
    let client = client_for(&fake.url, CLIENT_SECRET, Duration::from_secs(5));

    fake.fail_next(1);
    let e = client.fetch_invitation(ID).await.unwrap_err();
    assert!(matches!(&e, FetchError::Status { status: 500, .. }), "{e:?}");
    assert!(e.is_transient());

    fake.fail_with_graphql_errors_next(1);
    let e = client.fetch_invitation(ID).await.unwrap_err();
    assert!(matches!(&e, FetchError::GraphQl(m) if m.contains("try again later")), "{e:?}");
    assert!(e.is_transient());

    // Once the failures are spent, the same request succeeds.
    assert_eq!(client.fetch_invitation(ID).await.unwrap(), Some(claimed()));
    assert_eq!((fake.calls(), fake.unauthorized_calls()), (3, 0));
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = client_for(&format!("http://{addr}/graphql/server/2023-09-13"), CLIENT_SECRET, Duration::from_secs(5));

    let e = client.fetch_invitation(ID).await.unwrap_err();

    assert!(matches!(&e, FetchError::Transport(_)), "{e:?}");
    assert!(e.is_transient());
    assert!(!format!("{e} {e:?}").contains(CLIENT_SECRET));
}

#[tokio::test]
async fn a_hanging_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        // Accept, read nothing, answer nothing; keep the sockets open.
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let client =
        client_for(&format!("http://{addr}/graphql/server/2023-09-13"), CLIENT_SECRET, Duration::from_millis(200));

    let started = Instant::now();
    let e = client.fetch_invitation(ID).await.unwrap_err();
    let elapsed = started.elapsed();

    assert!(matches!(&e, FetchError::Transport(m) if m.contains("timed out")), "{e:?}");
    assert!(e.is_transient());
    assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    hold.abort();
}

#[tokio::test]
async fn dropping_the_fake_stops_its_server() {
    let fake = FakeLightspark::start(CLIENT_ID, CLIENT_SECRET).await;
    let url = fake.url.clone();
    drop(fake);
    let client = client_for(&url, CLIENT_SECRET, Duration::from_secs(1));
    eventually("the fake to stop answering after drop", Duration::from_secs(5), || async {
        match client.fetch_invitation(ID).await {
            Err(FetchError::Transport(_)) => Ok(()),
            other => Err(format!("still answering after drop: {other:?}")),
        }
    })
    .await;
}
