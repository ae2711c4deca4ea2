//! Lightspark Grid (formerly UMAaaS), the second source of claimed
//! invitations: Grid's REST API hosts UMA invitations for a platform and posts
//! an `INVITATION.CLAIMED` webhook when one is claimed. This module holds the
//! leaf building blocks to receive those webhooks; wiring them into routes,
//! the ledger and the projection is done elsewhere.
//!
//! - [`signature`]: verification of the `X-Grid-Signature` header (ECDSA
//!   P-256 with SHA-256 over the raw body) against one or several configured
//!   public keys, and [`signature::sign`] to play Grid in the demo and tests.
//! - [`webhook`]: the tolerant reader of a webhook body in its current
//!   (`id`/`data`) and pre-rename (`webhookId`/`invitation`) shapes, exact
//!   amounts, the ledger event key and the invitation's stream name.
//! - [`client`]: `GET /invitations/{code}` with HTTP Basic credentials, a
//!   64 KiB answer cap and a timeout, its failures classified as transient or
//!   permanent.
//!
//! Nothing here depends on the rest of the crate except
//! [`crate::secret::Secret`].

pub mod client;
pub mod signature;
pub mod webhook;
