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
//! - [`lightspark`]: what Lightspark sends and serves — signature
//!   verification, the webhook envelope, the tolerant invitation parser
//!   (from a parsed `Value`, or in one pass straight from a webhook's text
//!   for the fold), the GraphQL client.
//! - [`ledger`]: the append-only SQLite ledger — schema migrations, the group
//!   commit writer (with an after-commit hook) and its checkpointer thread,
//!   the hash chain, `verify`, the one-writer-process lock.
//! - [`projection`]: the pure fold `apply(state, &event) -> state`, obligation
//!   views, the SQL store (a file of its own beside the ledger) with its
//!   checkpoint, the projector thread, rebuild and checksum.
//! - [`reconcile`]: what is owed against what was done — pure decisions, the
//!   exactly-once protocol over HTTP endpoints, clock and jitter seams, the
//!   incentive audit.
//! - [`api`]: warp filters — webhook ingest, read API, status page, OpenAPI,
//!   health and metrics; errors mapped to HTTP in one place.
//! - [`metrics`]: the Prometheus metrics each stage records into.
//! - [`service`]: wires the stages into the running service (`serve`).
//! - [`operator`]: an operator's actions on the ledger (`resolve`), one
//!   function each, called by the CLI and by the status page alike.
//! - [`cli`]: the one-shot commands that `main.rs` dispatches to.
//! - [`demo`]: the whole flow on localhost in one command.
//!
//! Data flows one way: `api` → `ledger` → `projection` → `reconcile` →
//! `ledger`. Only [`service`], [`cli`] and [`demo`] know every stage.

pub mod api;
pub mod cli;
pub mod config;
pub mod demo;
pub mod grid;
pub mod invitation;
pub mod ledger;
pub mod lightspark;
pub mod metrics;
pub mod money;
pub mod operator;
pub mod projection;
pub mod reconcile;
pub mod rng;
pub mod secret;
pub mod service;
pub mod source;
pub mod time;

pub use service::serve;
