//! Verification of the `X-Grid-Signature` header (and of `X-UMAaaS-Signature`,
//! its name before the product was renamed).
//!
//! Grid signs the raw request body with ECDSA over P-256 and SHA-256 and sends
//! the DER signature, base64-encoded, wrapped as `{"v":"1","s":"<base64>"}`.
//! Unlike Lightspark's HMAC there is no shared secret: the configured value is
//! Grid's public key (SPKI PEM, from the dashboard), so it is not secret and a
//! leaked configuration cannot forge a webhook. The check runs on the exact
//! bytes received, before any parsing; the body is never re-serialised.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem;
use p256::pkcs8::spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};
use p256::pkcs8::DecodePublicKey as _;
use serde_json::Value;

/// The header Grid puts the signature in. Header names are case-insensitive on
/// the wire; `hyper` already folds them to lower case.
pub const GRID_SIGNATURE_HEADER: &str = "x-grid-signature";

/// The same header under the product's earlier name (UMAaaS). Deliveries
/// configured before the rename may still carry it; it is verified the same
/// way.
pub const UMAAAS_SIGNATURE_HEADER: &str = "x-umaaas-signature";

/// The only header version this module understands. A header without a
/// version is taken as this one.
const SUPPORTED_VERSION: &str = "1";

/// Longer than any version-1 header can be: a DER P-256 signature is at most
/// 72 bytes (96 base64 characters). Refusing early keeps an absurd header out
/// of the JSON parser and out of error texts.
const MAX_HEADER_LEN: usize = 1024;

/// How much of an unsupported version is repeated in the error.
const MAX_VERSION_CHARS: usize = 16;

/// `id-ecPublicKey` (RFC 5480): the SPKI algorithm of every EC key.
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

/// Standard base64 alphabet; padding optional, since Grid's examples decode
/// with lenient decoders (Node's `Buffer.from`) and a missing `=` says nothing
/// about authenticity. The signature check decides that.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a configured Grid public key cannot be used. The messages name the
/// block (1-based) so that an operator can find it in a rotated value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GridKeyError {
    /// Nothing that looks like `-----BEGIN …-----` was found.
    #[error(
        "GRID_WEBHOOK_PUBLIC_KEY holds no PEM block: paste the public key from the Grid dashboard, \
         from -----BEGIN PUBLIC KEY----- to -----END PUBLIC KEY-----"
    )]
    NoPemBlock,
    /// A `BEGIN` line without its `END` line.
    #[error("GRID_WEBHOOK_PUBLIC_KEY block {block} has no -----END …----- line: the value was cut short")]
    Unterminated { block: usize },
    /// The block's base64 or framing is broken.
    #[error("GRID_WEBHOOK_PUBLIC_KEY block {block} is not valid PEM ({detail})")]
    BadPem { block: usize, detail: String },
    /// A PEM block of another kind, such as a private key or a certificate.
    #[error("GRID_WEBHOOK_PUBLIC_KEY block {block} is a {label:?}, not a \"PUBLIC KEY\": give Grid's public key")]
    NotAPublicKey { block: usize, label: String },
    /// A public key, but not a P-256 one, or not readable as SPKI.
    #[error("GRID_WEBHOOK_PUBLIC_KEY block {block} is not a P-256 SPKI public key: {detail}")]
    NotP256 { block: usize, detail: String },
}

/// Why a webhook's signature was not accepted. Each variant is a distinct
/// operator-facing reason; all of them mean "not from Grid" to the sender.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GridSignatureError {
    #[error("the X-Grid-Signature header is missing or empty")]
    Missing,
    /// JSON that is not `{"v": …, "s": "<base64>"}` (or `version`/`signature`),
    /// or a header too long to be a signature.
    #[error("the X-Grid-Signature header is neither {{\"v\":\"1\",\"s\":\"<base64>\"}} nor a bare base64 signature")]
    Unreadable,
    /// A version other than 1; the version as sent, shortened.
    #[error("the X-Grid-Signature header has version {0}, and only version 1 is understood")]
    UnsupportedVersion(String),
    #[error("the X-Grid-Signature signature is not base64")]
    NotBase64,
    #[error("the X-Grid-Signature signature is not a DER-encoded ECDSA P-256 signature")]
    NotDer,
    #[error("the X-Grid-Signature signature does not match the body under any configured Grid public key")]
    Mismatch,
}

/// The Grid public keys currently accepted. Several are kept during a key
/// rotation so that webhooks signed with the old and the new key both verify.
#[derive(Clone)]
pub struct GridKeys {
    keys: Vec<VerifyingKey>,
}

/// Only the count: the keys are public, but a configuration dump has no use
/// for their points and a count is what an operator checks.
impl std::fmt::Debug for GridKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GridKeys({} key(s))", self.keys.len())
    }
}

impl GridKeys {
    /// Reads every PEM block in `text`, in order; the index [`verify`] returns
    /// is a block's position here. Text between blocks is ignored, and a value
    /// whose newlines were stored as the two characters `\n` (as some secret
    /// stores and `.env` files keep multi-line values) is read as if they were
    /// newlines.
    ///
    /// [`verify`]: GridKeys::verify
    ///
    /// # Errors
    /// [`GridKeyError`] for the first block that is not a P-256 SPKI public
    /// key, or when there is no block at all.
    pub fn parse(text: &str) -> Result<Self, GridKeyError> {
        let unescaped;
        let text = if !text.contains('\n') && text.contains("\\n") {
            unescaped = text.replace("\\n", "\n");
            unescaped.as_str()
        } else {
            text
        };
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN ") {
            let block = keys.len() + 1;
            let after_begin = &rest[start..];
            let end_line = after_begin.find("-----END ").ok_or(GridKeyError::Unterminated { block })?;
            let close = after_begin[end_line + "-----END ".len()..]
                .find("-----")
                .map(|i| end_line + "-----END ".len() + i + "-----".len())
                .ok_or(GridKeyError::Unterminated { block })?;
            keys.push(parse_block(block, &after_begin[..close])?);
            rest = &after_begin[close..];
        }
        if keys.is_empty() {
            return Err(GridKeyError::NoPemBlock);
        }
        Ok(Self { keys })
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false: [`GridKeys::parse`] refuses a value without a key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks `header` (the value of [`GRID_SIGNATURE_HEADER`] or of
    /// [`UMAAAS_SIGNATURE_HEADER`], whichever was sent) against the exact
    /// `body` bytes under every configured key, and returns the index of the
    /// first key that verified, so the caller can tell when the old key of a
    /// rotation is no longer used.
    ///
    /// Every key is tried even after a match so that timing does not reveal
    /// which key signed. Both low-S and high-S signatures are accepted: Grid's
    /// signer is not known to normalise `s`, and either form proves the key.
    ///
    /// # Errors
    /// [`GridSignatureError`] saying why the signature is not accepted.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<usize, GridSignatureError> {
        let encoded = signature_text(header)?;
        let der = BASE64_LENIENT.decode(encoded).map_err(|_| GridSignatureError::NotBase64)?;
        let signature = Signature::from_der(&der).map_err(|_| GridSignatureError::NotDer)?;
        let mut verified = None;
        for (index, key) in self.keys.iter().enumerate() {
            let ok = key.verify(body, &signature).is_ok();
            if ok && verified.is_none() {
                verified = Some(index);
            }
        }
        verified.ok_or(GridSignatureError::Mismatch)
    }
}

/// The base64 signature inside a header, after the header's form and version
/// were checked.
fn signature_text(header: Option<&str>) -> Result<String, GridSignatureError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or(GridSignatureError::Missing)?;
    if header.len() > MAX_HEADER_LEN {
        return Err(GridSignatureError::Unreadable);
    }
    if !header.starts_with('{') {
        return Ok(header.to_owned());
    }
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(header) else {
        return Err(GridSignatureError::Unreadable);
    };
    let pick = |short: &str, long: &str| fields.get(short).filter(|v| !v.is_null()).or_else(|| fields.get(long));
    match pick("v", "version") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if v == SUPPORTED_VERSION => {}
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
        Some(other) => {
            let shown = match other {
                Value::String(s) => format!("{s:?}"),
                v => v.to_string(),
            };
            let mut shown_short: String = shown.chars().take(MAX_VERSION_CHARS).collect();
            if shown_short.len() < shown.len() {
                shown_short.push('…');
            }
            return Err(GridSignatureError::UnsupportedVersion(shown_short));
        }
    }
    match pick("s", "signature") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        _ => Err(GridSignatureError::Unreadable),
    }
}

/// One `-----BEGIN …----- … -----END …-----` block, 1-based `block` for the
/// messages.
fn parse_block(block: usize, text: &str) -> Result<VerifyingKey, GridKeyError> {
    let (label, der) =
        pem::decode_vec(text.as_bytes()).map_err(|e| GridKeyError::BadPem { block, detail: e.to_string() })?;
    if label != "PUBLIC KEY" {
        return Err(GridKeyError::NotAPublicKey { block, label: label.to_owned() });
    }
    VerifyingKey::from_public_key_der(&der).map_err(|e| GridKeyError::NotP256 { block, detail: describe_spki(&der, e) })
}

/// Names what an SPKI that is not P-256 holds, since "unknown OID" alone does
/// not tell an operator that they pasted, say, an RSA or a P-384 key.
fn describe_spki(der: &[u8], error: p256::pkcs8::spki::Error) -> String {
    let Ok(spki) = SubjectPublicKeyInfoRef::try_from(der) else {
        return format!("not a SubjectPublicKeyInfo ({error})");
    };
    let algorithm = spki.algorithm.oid;
    if algorithm != ID_EC_PUBLIC_KEY {
        return format!("its algorithm is {} ({})", algorithm, algorithm_name(algorithm));
    }
    match spki.algorithm.parameters_oid() {
        Ok(curve) => format!("it is an EC key on curve {} ({}) ({error})", curve, algorithm_name(curve)),
        Err(_) => format!("it is an EC key without a named curve ({error})"),
    }
}

/// Names for the object identifiers an operator is likely to paste by mistake.
fn algorithm_name(oid: ObjectIdentifier) -> &'static str {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA",
        "1.3.101.112" => "Ed25519",
        "1.3.101.110" => "X25519",
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        _ => "unrecognised",
    }
}

/// The header value Grid would send for `body` signed with `key`:
/// `{"v":"1","s":"<base64 DER>"}`. Exists so that the demo and the tests can
/// play Grid with a test key.
pub fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    let encoded = base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes());
    format!(r#"{{"v":"1","s":"{encoded}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};

    const FIXTURE_PUBLIC_KEY: &str = include_str!("../../fixtures/grid/test_key.pub.pem");
    const FIXTURE_PRIVATE_KEY: &str = include_str!("../../fixtures/grid/test_key.pem");
    const FIXTURES: [(&[u8], &str); 2] = [
        (include_bytes!("../../fixtures/grid/claimed.json"), include_str!("../../fixtures/grid/claimed.sig")),
        (
            include_bytes!("../../fixtures/grid/claimed_umaaas.json"),
            include_str!("../../fixtures/grid/claimed_umaaas.sig"),
        ),
    ];
    const BODY: &[u8] =
        br#"{"id":"Webhook:1","type":"INVITATION.CLAIMED","timestamp":"2026-11-01T12:00:01Z","data":{"code":"abc"}}"#;

    // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384`, public half.
    const P384_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEXHzC1DeOSlDGJjbfx+srScdBOT2I2PHx
4OZjDMqMiWYtJc4w6nhr5dhk3fmSV3sbSto8SCM4Atu6IG9s9zoIi9e+Egt7hgKM
sq3LW4/Nmkk25gy0T8Z0CMKP2kGYbF3n
-----END PUBLIC KEY-----";
    // `openssl genpkey -algorithm ed25519`, public half.
    const ED25519_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA92mq7pOCfB/xy6A2umBuEhix4MQCGQ5qlszJRPTMTYI=
-----END PUBLIC KEY-----";

    /// A deterministic test key: `n` repeated as the secret scalar.
    fn signing_key(n: u8) -> SigningKey {
        SigningKey::from_slice(&[n; 32]).unwrap()
    }

    fn public_pem(key: &SigningKey) -> String {
        use p256::pkcs8::EncodePublicKey as _;
        key.verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap()
    }

    fn keys_of(signers: &[&SigningKey]) -> GridKeys {
        GridKeys::parse(&signers.iter().map(|k| public_pem(k)).collect::<String>()).unwrap()
    }

    /// The base64 DER signature inside a header made by [`sign`].
    fn signature_of(header: &str) -> String {
        let parsed: Value = serde_json::from_str(header).unwrap();
        parsed["s"].as_str().unwrap().to_owned()
    }

    #[test]
    fn every_fixture_verifies_with_the_fixture_public_key() {
        // Given the committed public key and the bodies openssl signed with its private half
        let keys = GridKeys::parse(FIXTURE_PUBLIC_KEY).unwrap();
        for (body, header) in FIXTURES {
            // When each is verified with its exact header text
            // Then the only key verifies it
            assert_eq!(keys.verify(body, Some(header)), Ok(0), "{}", String::from_utf8_lossy(body));
            assert!(!header.ends_with('\n') && !body.ends_with(b"\n"));
        }
    }

    #[test]
    fn the_fixture_private_key_is_the_pair_of_the_public_key() {
        // Given the committed private key
        use p256::pkcs8::DecodePrivateKey as _;
        let key = SigningKey::from_pkcs8_pem(FIXTURE_PRIVATE_KEY).unwrap();
        // When a body is signed with it
        let header = sign(&key, BODY);
        // Then the committed public key verifies it
        assert_eq!(GridKeys::parse(FIXTURE_PUBLIC_KEY).unwrap().verify(BODY, Some(&header)), Ok(0));
    }

    #[test]
    fn every_header_form_verifies() {
        // Given a body signed with a key that is configured
        let key = signing_key(1);
        let keys = keys_of(&[&key]);
        let header = sign(&key, BODY);
        let s = signature_of(&header);
        // When the signature arrives in each accepted form
        for form in [
            header.clone(),
            s.clone(),
            format!("  {s}  "),
            STANDARD_NO_PAD.encode(STANDARD.decode(&s).unwrap()),
            format!(r#"{{"v": 1, "s": "{s}"}}"#),
            format!(r#"{{"s": "{s}"}}"#),
            format!(r#"{{"v": null, "s": "{s}"}}"#),
            format!(r#"{{"version": "1", "signature": "{s}"}}"#),
            format!(r#"{{"version": 1, "signature": "{s}"}}"#),
            format!(r#"{{"signature": "{s}", "extra": true}}"#),
        ] {
            // Then it verifies
            assert_eq!(keys.verify(BODY, Some(&form)), Ok(0), "{form}");
        }
    }

    #[test]
    fn the_second_key_verifies_during_rotation_and_its_index_is_returned() {
        // Given two configured keys, old then new
        let (old, new) = (signing_key(1), signing_key(2));
        let keys = keys_of(&[&old, &new]);
        assert_eq!(keys.len(), 2);
        // When each signs
        // Then each verifies, and the index says which
        assert_eq!(keys.verify(BODY, Some(&sign(&old, BODY))), Ok(0));
        assert_eq!(keys.verify(BODY, Some(&sign(&new, BODY))), Ok(1));
    }

    #[test]
    fn the_same_key_twice_reports_the_first() {
        // Given one key configured twice (a rotation to the same key)
        let key = signing_key(3);
        let keys = keys_of(&[&key, &key]);
        // When it signs
        // Then the first index is reported
        assert_eq!(keys.verify(BODY, Some(&sign(&key, BODY))), Ok(0));
    }

    #[test]
    fn an_altered_body_byte_is_a_mismatch() {
        // Given a fixture and its header
        let keys = GridKeys::parse(FIXTURE_PUBLIC_KEY).unwrap();
        let (body, header) = FIXTURES[0];
        // When any one byte of the body is changed
        for i in [0, body.len() / 2, body.len() - 1] {
            let mut altered = body.to_vec();
            altered[i] ^= 0x01;
            // Then the signature no longer matches
            assert_eq!(keys.verify(&altered, Some(header)), Err(GridSignatureError::Mismatch), "byte {i}");
        }
        // And neither does the body with a trailing newline added
        let mut with_newline = body.to_vec();
        with_newline.push(b'\n');
        assert_eq!(keys.verify(&with_newline, Some(header)), Err(GridSignatureError::Mismatch));
    }

    #[test]
    fn a_signature_by_another_key_is_a_mismatch() {
        // Given keys that do not include the signer
        let keys = keys_of(&[&signing_key(1), &signing_key(2)]);
        // When another key signs
        let header = sign(&signing_key(9), BODY);
        // Then no configured key verifies it
        assert_eq!(keys.verify(BODY, Some(&header)), Err(GridSignatureError::Mismatch));
    }

    #[test]
    fn a_high_s_signature_verifies_as_well_as_its_low_s_twin() {
        // Given a signature and its twin with s replaced by n - s
        let key = signing_key(4);
        let keys = keys_of(&[&key]);
        let signature: Signature = key.sign(BODY);
        let (r, s) = signature.split_scalars();
        let twin = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
        for sig in [signature, twin] {
            // When either is sent
            let header = STANDARD.encode(sig.to_der().as_bytes());
            // Then it verifies
            assert_eq!(keys.verify(BODY, Some(&header)), Ok(0));
        }
        // And the committed old-shape fixture (signed by OpenSSL) is itself high-S
        let fixture = STANDARD.decode(signature_of(FIXTURES[1].1)).unwrap();
        assert!(Signature::from_der(&fixture).unwrap().normalize_s().is_some());
    }

    #[test]
    fn version_2_and_other_versions_are_refused() {
        // Given a valid signature
        let key = signing_key(1);
        let keys = keys_of(&[&key]);
        let s = signature_of(&sign(&key, BODY));
        // When it is labelled with a version other than 1
        for (version, shown) in [
            (r#""2""#, r#""2""#),
            ("2", "2"),
            ("1.0", "1.0"),
            (r#""v1""#, r#""v1""#),
            ("true", "true"),
            (r#""1111111111111111111111111111""#, r#""111111111111111…"#),
        ] {
            let header = format!(r#"{{"v":{version},"s":"{s}"}}"#);
            // Then it is refused before any verification, naming the version
            assert_eq!(
                keys.verify(BODY, Some(&header)),
                Err(GridSignatureError::UnsupportedVersion(shown.to_owned())),
                "{header}"
            );
        }
        let long_name = format!(r#"{{"version":"2","signature":"{s}"}}"#);
        assert_eq!(keys.verify(BODY, Some(&long_name)), Err(GridSignatureError::UnsupportedVersion(r#""2""#.into())));
    }

    #[test]
    fn missing_and_garbage_headers_are_told_apart() {
        // Given configured keys
        let key = signing_key(1);
        let keys = keys_of(&[&key]);
        let s = signature_of(&sign(&key, BODY));
        let not_der = STANDARD.encode(b"definitely not DER");
        // When the header is absent, empty or garbage
        // Then each failure has its own reason
        for (header, expected) in [
            (None, GridSignatureError::Missing),
            (Some(""), GridSignatureError::Missing),
            (Some("   "), GridSignatureError::Missing),
            (Some("{"), GridSignatureError::Unreadable),
            (Some("{}"), GridSignatureError::Unreadable),
            (Some(r#"{"v":"1"}"#), GridSignatureError::Unreadable),
            (Some(r#"{"v":"1","s":42}"#), GridSignatureError::Unreadable),
            (Some(r#"{"v":"1","s":""}"#), GridSignatureError::Unreadable),
            (Some(r#"{"v":"1","s":null}"#), GridSignatureError::Unreadable),
            (Some(&format!("{{\"v\":\"1\",\"s\":\"{}\"}}", "A".repeat(2000))), GridSignatureError::Unreadable),
            (Some("not base64!"), GridSignatureError::NotBase64),
            (Some(r#"{"v":"1","s":"***"}"#), GridSignatureError::NotBase64),
            (Some(r#"[1,2]"#), GridSignatureError::NotBase64),
            (Some(&not_der), GridSignatureError::NotDer),
            (Some(&format!(r#"{{"v":"1","s":"{not_der}"}}"#)), GridSignatureError::NotDer),
            (Some(&s[..s.len() - 8]), GridSignatureError::NotDer),
        ] {
            assert_eq!(keys.verify(BODY, header), Err(expected), "{header:?}");
        }
    }

    #[test]
    fn several_pem_blocks_in_one_value_are_all_read() {
        // Given three public keys in one value, separated by blanks, a comment and CRLF
        let (a, b, c) = (signing_key(1), signing_key(2), signing_key(3));
        let text = format!(
            "\n  {}\nold key above, new below\n\n{}{}",
            public_pem(&a),
            public_pem(&b).replace('\n', "\r\n"),
            public_pem(&c)
        );
        // When it is parsed
        let keys = GridKeys::parse(&text).unwrap();
        // Then every block is a key, in order
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.verify(BODY, Some(&sign(&c, BODY))), Ok(2));
        assert_eq!(format!("{keys:?}"), "GridKeys(3 key(s))");
    }

    #[test]
    fn a_value_with_escaped_newlines_is_read_as_multi_line() {
        // Given the fixture key stored with literal `\n` instead of newlines
        let escaped = FIXTURE_PUBLIC_KEY.trim_end().replace('\n', "\\n");
        // When it is parsed
        let keys = GridKeys::parse(&escaped).unwrap();
        // Then it verifies the fixtures
        assert_eq!(keys.verify(FIXTURES[0].0, Some(FIXTURES[0].1)), Ok(0));
    }

    #[test]
    fn a_key_that_is_not_p256_is_refused_naming_what_it_is() {
        // Given public keys of other algorithms and curves
        for (pem, expected) in [(P384_PUBLIC_KEY, "P-384"), (ED25519_PUBLIC_KEY, "Ed25519")] {
            // When one is configured, alone or after a good key
            for text in [pem.to_owned(), format!("{FIXTURE_PUBLIC_KEY}{pem}")] {
                let block = if text.starts_with(pem) { 1 } else { 2 };
                // Then the value is refused, naming the block and the algorithm
                match GridKeys::parse(&text).unwrap_err() {
                    GridKeyError::NotP256 { block: b, detail } => {
                        assert_eq!(b, block);
                        assert!(detail.contains(expected), "{detail}");
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn values_without_a_usable_public_key_block_are_refused() {
        // Given values that hold no public key block
        let body = FIXTURE_PUBLIC_KEY.lines().nth(1).unwrap();
        let cases = [
            (String::new(), GridKeyError::NoPemBlock),
            (body.to_owned(), GridKeyError::NoPemBlock),
            ("-----BEGIN PUBLIC KEY-----\nMFkw".to_owned(), GridKeyError::Unterminated { block: 1 }),
            (format!("{FIXTURE_PUBLIC_KEY}-----BEGIN PUBLIC KEY-----\n"), GridKeyError::Unterminated { block: 2 }),
            (FIXTURE_PRIVATE_KEY.to_owned(), GridKeyError::NotAPublicKey { block: 1, label: "PRIVATE KEY".into() }),
        ];
        for (text, expected) in cases {
            // When it is parsed
            // Then the error says what is wrong
            assert_eq!(GridKeys::parse(&text).unwrap_err(), expected, "{text}");
        }
        let broken = FIXTURE_PUBLIC_KEY.replace("MFkw", "MF*w");
        assert!(matches!(GridKeys::parse(&broken), Err(GridKeyError::BadPem { block: 1, .. })));
    }

    #[test]
    fn a_refused_private_key_is_not_repeated_in_the_error() {
        // Given a private key pasted by mistake
        let secret_line = FIXTURE_PRIVATE_KEY.lines().nth(1).unwrap();
        // When it is refused
        let e = GridKeys::parse(FIXTURE_PRIVATE_KEY).unwrap_err();
        // Then neither the message nor the debug form holds its content
        assert!(!format!("{e} {e:?}").contains(secret_line));
    }

    #[test]
    fn sign_makes_the_documented_header_shape() {
        // Given a key
        // When a body is signed
        let header = sign(&signing_key(5), BODY);
        // Then the header is {"v":"1","s":"<base64>"}, exactly
        let parsed: Value = serde_json::from_str(&header).unwrap();
        assert_eq!(parsed.as_object().unwrap().len(), 2);
        assert_eq!(parsed["v"], "1");
        assert!(header.starts_with(r#"{"v":"1","s":""#) && header.ends_with(r#""}"#));
        assert!(Signature::from_der(&STANDARD.decode(signature_of(&header)).unwrap()).is_ok());
    }

    #[test]
    fn header_names_are_lower_case() {
        assert_eq!(GRID_SIGNATURE_HEADER, "X-Grid-Signature".to_ascii_lowercase());
        assert_eq!(UMAAAS_SIGNATURE_HEADER, "X-UMAaaS-Signature".to_ascii_lowercase());
    }
}
