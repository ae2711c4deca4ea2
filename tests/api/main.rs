//! The fast black-box tests, as one binary: the service over real HTTP and
//! as the real binary, its CLI, its deployment files, and the fakes it talks
//! to. One module per area; [`support`] is the one module of helpers they share.
//!
//! The slow or browser-bound tests are binaries of their own:
//! `tests/simulation.rs`, `tests/storm.rs` and `tests/browser.rs`.

#[path = "../support/mod.rs"]
mod support;

mod amounts;
mod audit;
mod bounded;
mod cancel;
mod decisions;
mod demo;
mod deploy;
mod deploy_shared;
mod failure_notice;
mod faults;
mod fetch;
mod full_disk;
mod grid;
mod help;
mod hostile;
mod identity;
mod ingest;
mod invitation_page;
mod ledger;
mod lifecycle;
mod lightspark_client;
mod logs;
mod openapi;
mod page_actions;
mod postgres;
mod projection;
mod reconcile;
mod registered;
mod status_page;
mod sweep;
