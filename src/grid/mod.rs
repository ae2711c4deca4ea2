//! What Lightspark Grid sends: the webhook signature and the webhook body.

pub mod signature;
pub mod webhook;
