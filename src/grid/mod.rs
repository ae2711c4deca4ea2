//! What Lightspark Grid sends: the webhook signature.

pub mod signature;
