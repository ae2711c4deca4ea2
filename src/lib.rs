//! invitation-ledger: the receiving side of Lightspark's signed
//! `UMA_INVITATION_CLAIMED` webhooks for a VASP.
//!
//! Every verified webhook becomes an immutable, hash-chained event in a
//! ledger (a SQLite file, or a PostgreSQL database several instances
//! share); projections fold the ledger into each invitation's state; a
//! reconciler makes the payments and incentive transfers that are owed,
//! exactly once; a read API and CLI answer questions about all of it.
//! `docs/design.md` explains the design; `openapi.json` is the HTTP interface.
//!
//! # Layers
//!
//! Bottom up; a module may use its own layer and those below it, never one
//! above (`tests/layers.rs` reads this list and checks every file):
//!
//! 1. vocabulary: vocab, invitation, source, money, secret, time, rng
//! 2. sources: upstream, lightspark, grid
//! 3. ledger: ledger
//! 4. projection: projection
//! 5. reconcile: reconcile, operator
//! 6. api: api
//! 7. wiring: config, metrics, logging, service, cli, demo
//!
//! # Layout
//!
//! Stages, in the order data flows through them:
//!
//! - [`lightspark`]: what Lightspark sends and serves — signature
//!   verification, the webhook envelope, the tolerant invitation parser
//!   (from a parsed `Value`, or in one pass straight from a webhook's text
//!   for the fold), the GraphQL client.
//! - [`grid`]: the same for Lightspark Grid — P-256 signature verification,
//!   its webhook and invitation shapes, the REST client that fetches by code.
//! - [`ledger`]: the append-only ledger — the storage contract
//!   (`LedgerStore`: unique keys, conditional appends) and its two stores:
//!   SQLite (migrations, the group-commit writer and its checkpointer
//!   thread, the one-writer-process lock) and PostgreSQL (the batch writer
//!   task, reconciler leadership and fencing epochs, each instance's local
//!   replica); the hash chain; `verify` (chain, signatures, unique keys,
//!   anchors).
//! - [`projection`]: the pure fold `apply(state, &event) -> state`, the typed
//!   internal events (with `registration`: creating and cancelling
//!   invitations through the service), obligation views, the incentive audit (read a page of
//!   invitations at a time, by inviter), the SQL store (a file of its own, bound to the
//!   ledger it was folded from) with the aggregates the fold keeps beside
//!   the rows, the projector thread (which wakes the reconciler when work
//!   falls due), rebuild and checksum, and every query the read side asks,
//!   none of which reads more rows as the ledger grows.
//! - [`reconcile`]: what is owed against what was done — pure decisions, the
//!   exactly-once protocol over HTTP endpoints, the fetch schedule (which
//!   is also the sweep of registered invitations), clock and jitter seams,
//!   the worker pass, and creating and cancelling invitations at their
//!   source (`register`, `cancel`).
//! - [`api`]: warp filters — webhook ingest, read API and its access rule,
//!   status page and invitation pages, OpenAPI, health and metrics; errors
//!   mapped to HTTP in one place.
//!
//! Shared vocabulary, depending on no stage:
//!
//! - [`invitation`]: an invitation's facts and statuses, whichever source
//!   stated them.
//! - [`source`]: the sources (Lightspark, Grid) and what a delivery carries.
//! - [`money`]: amounts as integers in the currency's smallest unit, the
//!   one way they are shown (in their currency's decimals), and ISO 4217's
//!   minor units.
//! - [`upstream`]: calls to a source's API — credentials, client, bounded
//!   answers — shared by the Lightspark and Grid clients.
//! - [`secret`], [`time`], [`rng`]: secrets that never print, timestamps,
//!   the one seeded PRNG (jitter, spread).
//! - [`config`]: settings from flags and environment, validated once.
//! - [`logging`]: the log's filter and format (`LOG`, `LOG_FORMAT`),
//!   validated like the settings, coloured only on a terminal.
//! - [`metrics`]: the Prometheus metrics each stage records into.
//!
//! Wiring:
//!
//! - [`service`]: the running service (`serve`): ledger, projector,
//!   reconciler and HTTP, started and stopped in order.
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
pub mod logging;
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
pub mod upstream;
pub mod vocab;

pub use service::serve;
