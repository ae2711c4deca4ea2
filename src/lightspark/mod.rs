//! What Lightspark sends and serves: the webhook signature, the webhook
//! envelope.

pub mod client;
pub mod invitation;
pub mod signature;
pub mod webhook;
