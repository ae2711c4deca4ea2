//! Webhook signatures, made by the library's own `sign`.

use invitation_ledger::lightspark::signature::sign;

use super::secret::SECRET;

/// The `lightspark-signature` of `body` under the test secret.
pub fn signature_of(body: &[u8]) -> String {
    sign(SECRET.as_bytes(), body)
}
