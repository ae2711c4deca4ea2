//! invitation-ledger: the receiving side of Lightspark's signed
//! `UMA_INVITATION_CLAIMED` webhooks for a VASP.
//!
//! Every verified webhook becomes an immutable, hash-chained event in a
//! SQLite ledger; projections fold the ledger into each invitation's state; a
//! reconciler makes the payments and incentive transfers that are owed,
//! exactly once; a read API and CLI answer questions about all of it.
//! `../shared/DESIGN.md` is the contract.
//!
//! # Layout
//!
//! - [`config`]: settings from flags and environment, validated once; secrets
//!   that never print.
//! - [`lightspark`]: what Lightspark sends — signature verification, the
//!   webhook envelope.
//! - [`ledger`]: the append-only SQLite ledger — schema migrations, the group
//!   commit writer, the hash chain, `verify`, the one-writer-process lock.
//! - [`api`]: warp filters — webhook ingest, health; errors mapped to HTTP in
//!   one place.
//! - [`metrics`]: the Prometheus metrics each stage records into.
//! - [`service`]: wires the stages into the running service (`serve`).
//! - [`demo`]: the whole flow on localhost in one command.
//! - [`cli`]: the one-shot commands (`verify`, …) that `main.rs` dispatches to.
//!
//! Data flows one way: `api` → `ledger` → `projection` → `reconcile` →
//! `ledger`. Only [`service`] and [`cli`] know every stage.

pub mod api;
pub mod cli;
pub mod config;
pub mod demo;
pub mod ledger;
pub mod lightspark;
pub mod metrics;
pub mod projection;
pub mod reconcile;
pub mod service;

pub use service::serve;
