//! The SHA-256 hash chain over ledger events (docs/design.md, "The ledger").
//!
//! `hash(seq) = SHA-256(prev_hash ‖ u64be(seq) ‖ f(event_key) ‖ f(kind) ‖
//! f(stream) ‖ f(recorded_at) ‖ f(body) ‖ f(signature))`, with
//! `f(x) = u32be(len x) ‖ x` and `u32be(0xFFFFFFFF)` alone for NULL.

use sha2::{Digest, Sha256};

/// A SHA-256 digest of the chain: what an event's `hash` and `prev_hash`
/// hold, and what an anchor kept elsewhere names. Shown as 64 lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

/// `prev_hash` of the first event.
pub const GENESIS: Hash = Hash([0u8; 32]);

impl Hash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A stored hash column: zeros for a value that is not 32 bytes (NULL,
    /// or written by hand), which then fails the chain where it is checked.
    pub fn from_stored(bytes: Option<&[u8]>) -> Self {
        let mut h = [0u8; 32];
        if let Some(b) = bytes.filter(|b| b.len() == 32) {
            h.copy_from_slice(b);
        }
        Hash(h)
    }

    /// A hash written as 64 hex digits (either case).
    ///
    /// # Errors
    /// A sentence when `text` is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let bytes = hex::decode(text.trim()).map_err(|e| format!("{text:?} is not hex: {e}"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| format!("{text:?} is not 64 hex digits (32 bytes)"))?;
        Ok(Hash(bytes))
    }
}

impl AsRef<[u8]> for Hash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Display for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({self})")
    }
}

/// The fields of an event that the chain covers, borrowed.
pub struct Chained<'a> {
    pub seq: u64,
    pub event_key: &'a str,
    pub kind: &'a str,
    pub stream: Option<&'a str>,
    pub recorded_at: &'a str,
    pub body: &'a [u8],
    pub signature: Option<&'a str>,
}

fn field(h: &mut Sha256, x: Option<&[u8]>) {
    match x {
        Some(bytes) => {
            let len = u32::try_from(bytes.len()).expect("ledger fields are far below 4 GiB");
            h.update(len.to_be_bytes());
            h.update(bytes);
        }
        None => h.update(u32::MAX.to_be_bytes()),
    }
}

/// The hash of `event` given the hash of the event before it.
pub fn chain(prev: &Hash, event: &Chained<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(event.seq.to_be_bytes());
    field(&mut h, Some(event.event_key.as_bytes()));
    field(&mut h, Some(event.kind.as_bytes()));
    field(&mut h, event.stream.map(str::as_bytes));
    field(&mut h, Some(event.recorded_at.as_bytes()));
    field(&mut h, Some(event.body));
    field(&mut h, event.signature.map(str::as_bytes));
    Hash(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event<'a>(stream: Option<&'a str>) -> Chained<'a> {
        Chained {
            seq: 1,
            event_key: "k",
            kind: "webhook.received",
            stream,
            recorded_at: "t",
            body: b"{}",
            signature: None,
        }
    }

    #[test]
    fn the_encoding_matches_the_documented_byte_layout() {
        let mut manual = Vec::new();
        manual.extend_from_slice(&GENESIS.0);
        manual.extend_from_slice(&1u64.to_be_bytes());
        for x in [&b"k"[..], b"webhook.received"] {
            manual.extend_from_slice(&(x.len() as u32).to_be_bytes());
            manual.extend_from_slice(x);
        }
        manual.extend_from_slice(&u32::MAX.to_be_bytes());
        for x in [&b"t"[..], b"{}"] {
            manual.extend_from_slice(&(x.len() as u32).to_be_bytes());
            manual.extend_from_slice(x);
        }
        manual.extend_from_slice(&u32::MAX.to_be_bytes());
        let expected = Hash(Sha256::digest(&manual).into());
        assert_eq!(chain(&GENESIS, &event(None)), expected);
    }

    #[test]
    fn null_and_empty_stream_hash_differently() {
        assert_ne!(chain(&GENESIS, &event(None)), chain(&GENESIS, &event(Some(""))));
    }
}
