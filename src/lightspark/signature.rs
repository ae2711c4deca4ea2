//! Verification of the `lightspark-signature` header.
//!
//! Lightspark signs the raw request body (no timestamp) with HMAC-SHA256 keyed
//! by the UTF-8 bytes of the webhook signing secret and sends the digest as
//! hex. The check runs on the exact bytes received, before any parsing.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// The name of the header Lightspark puts the signature in. Header names are
/// case-insensitive on the wire; `hyper` already folds them.
pub const SIGNATURE_HEADER: &str = "lightspark-signature";

/// Why a webhook's signature was not accepted. Each variant is a distinct
/// operator-facing reason; all of them answer 401.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the lightspark-signature header is missing")]
    Missing,
    #[error("the lightspark-signature header is not a 64-digit hex SHA-256 digest")]
    NotHex,
    #[error("the lightspark-signature header does not match the body under any configured key")]
    Mismatch,
}

/// The webhook signing secrets currently accepted. Several are kept during a
/// key rotation so that webhooks signed with the old and the new secret both
/// verify.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<Secret>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeys({} key(s), redacted)", self.keys.len())
    }
}

impl SigningKeys {
    /// Parses a comma-separated list of secrets; blanks around commas are
    /// ignored.
    ///
    /// # Errors
    /// Returns `None` when the list holds no non-empty secret.
    pub fn parse(list: &str) -> Option<Self> {
        let keys: Vec<Secret> =
            list.split(',').map(str::trim).filter(|k| !k.is_empty()).map(|k| Secret::new(k.to_owned())).collect();
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// Checks `header` against `body` under every configured key.
    ///
    /// The comparison of digests is constant-time (`Mac::verify_slice`), and
    /// every key is tried even after a match so timing does not reveal which
    /// key signed.
    ///
    /// # Errors
    /// [`SignatureError`] saying why the signature is not accepted.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        self.verify_which(body, header).map(|_| ())
    }

    /// As [`verify`](Self::verify), and which key verified: its position
    /// (from 0) in the configured list, so that an operator re-checking a
    /// stored webhook sees whether it was signed with the old or the new
    /// secret of a rotation. Every key is still tried, in constant time
    /// each, whichever matches.
    ///
    /// # Errors
    /// [`SignatureError`] saying why the signature is not accepted.
    pub fn verify_which(&self, body: &[u8], header: Option<&str>) -> Result<usize, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?.trim();
        if header.is_empty() {
            return Err(SignatureError::Missing);
        }
        let mut expected = [0u8; 32];
        hex::decode_to_slice(header, &mut expected).map_err(|_| SignatureError::NotHex)?;
        let mut which = None;
        for (index, key) in self.keys.iter().enumerate() {
            let ok = Self::verify_one(key.expose().as_bytes(), body, &expected);
            if ok && which.is_none() {
                which = Some(index);
            }
        }
        which.ok_or(SignatureError::Mismatch)
    }

    /// How many secrets are configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: [`SigningKeys::parse`] refuses a list without a secret.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn verify_one(key: &[u8], body: &[u8], expected: &[u8; 32]) -> bool {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
        mac.update(body);
        mac.verify_slice(expected).is_ok()
    }
}

/// Hex HMAC-SHA256 of `body` under `key`: what Lightspark puts in the header.
/// Used by the outgoing `ledger-signature`, the demo and the tests.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official vector from Lightspark's Rust SDK.
    const SECRET: &str = "3gZ5oQQUASYmqQNuEk0KambNMVkOADDItIJjzUlAWjX";
    const BODY: &str = r#"{"event_type": "NODE_STATUS", "event_id": "1615c8be5aa44e429eba700db2ed8ca5", "timestamp": "2023-05-17T23:56:47.874449+00:00", "entity_id": "lightning_node:01882c25-157a-f96b-0000-362d42b64397"}"#;
    const SIGNATURE: &str = "62a8829aeb48b4142533520b1f7f86cdb1ee7d718bf3ea15bc1c662d4c453b74";

    fn keys(list: &str) -> SigningKeys {
        SigningKeys::parse(list).unwrap()
    }

    #[test]
    fn official_test_vector_signs_to_the_published_digest() {
        assert_eq!(sign(SECRET.as_bytes(), BODY.as_bytes()), SIGNATURE);
    }

    #[test]
    fn official_test_vector_verifies() {
        assert_eq!(keys(SECRET).verify(BODY.as_bytes(), Some(SIGNATURE)), Ok(()));
    }

    #[test]
    fn upper_case_hex_verifies_too() {
        let upper = SIGNATURE.to_uppercase();
        assert_eq!(keys(SECRET).verify(BODY.as_bytes(), Some(&upper)), Ok(()));
    }

    #[test]
    fn either_key_verifies_during_rotation() {
        let rotating = keys(&format!("old-secret, {SECRET}"));
        assert_eq!(rotating.verify(BODY.as_bytes(), Some(SIGNATURE)), Ok(()));
    }

    #[test]
    fn the_key_that_verified_is_named_by_its_position() {
        // given the new and the old secret of a rotation, in that order
        let rotating = keys(&format!("new-secret, {SECRET}"));
        // when the official vector, signed with the old one, is checked
        // then the second key is named, and a forgery names none
        assert_eq!(rotating.verify_which(BODY.as_bytes(), Some(SIGNATURE)), Ok(1));
        assert_eq!(keys(SECRET).verify_which(BODY.as_bytes(), Some(SIGNATURE)), Ok(0));
        assert_eq!(rotating.verify_which(b"{}", Some(SIGNATURE)), Err(SignatureError::Mismatch));
        assert_eq!(rotating.len(), 2);
    }

    #[test]
    fn a_changed_body_byte_is_a_mismatch() {
        let mut body = BODY.as_bytes().to_vec();
        body[10] ^= 1;
        assert_eq!(keys(SECRET).verify(&body, Some(SIGNATURE)), Err(SignatureError::Mismatch));
    }

    #[test]
    fn wrong_key_missing_header_and_non_hex_are_told_apart() {
        let body = BODY.as_bytes();
        assert_eq!(keys("other").verify(body, Some(SIGNATURE)), Err(SignatureError::Mismatch));
        assert_eq!(keys(SECRET).verify(body, None), Err(SignatureError::Missing));
        assert_eq!(keys(SECRET).verify(body, Some("zz")), Err(SignatureError::NotHex));
        assert_eq!(keys(SECRET).verify(body, Some(&SIGNATURE[..62])), Err(SignatureError::NotHex));
    }

    #[test]
    fn an_empty_key_list_is_refused() {
        assert!(SigningKeys::parse(" , ").is_none());
    }
}
