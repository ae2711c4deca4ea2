//! SIGKILL the real binary mid-stream: every acknowledged webhook survives.

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::binary::{run, ServeProcess};
use support::{claimed_body, ledger_rows, signature_of, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_webhook_survives_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ledger.db");
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();

    for round in 0..3 {
        let server = ServeProcess::start(&db, &[]);
        let url = server.url("/webhooks/lightspark");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        let mut senders = Vec::new();
        for task in 0..8 {
            let (client, url, acked) = (client.clone(), url.clone(), acked.clone());
            senders.push(tokio::spawn(async move {
                for i in 0.. {
                    let event_id = format!("r{round}-t{task}-{i}");
                    let body = claimed_body(&event_id, &format!("Inv:{event_id}"));
                    let sent = client
                        .post(&url)
                        .header("lightspark-signature", signature_of(body.as_bytes()))
                        .body(body.clone())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 200 => {
                            acked
                                .lock()
                                .unwrap()
                                .insert(invitation_ledger::lightspark::webhook::event_key(&event_id, body.as_bytes()));
                        }
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(_) => return i, // the server died under us
                    }
                }
                unreachable!()
            }));
        }
        tokio::time::sleep(Duration::from_millis(300 + 150 * round as u64)).await;
        server.kill();
        for s in senders {
            s.await.unwrap();
        }
    }

    let stored: HashSet<String> = ledger_rows(&db).into_iter().map(|r| r.1).collect();
    let acked = acked.lock().unwrap();
    assert!(acked.len() > 50, "the test must actually acknowledge webhooks, got {}", acked.len());
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");

    let out = run(&["verify"], &[("LEDGER_DB", db.to_str().unwrap()), ("LIGHTSPARK_WEBHOOK_SIGNING_KEY", SECRET)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
