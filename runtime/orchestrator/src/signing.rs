//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, "Signature
//! scheme"): `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
//! secrets written `whsec_<base64 key>`, several signatures (space-separated) while a
//! secret rotates, and a timestamp the receiver checks against a tolerance (5 minutes in
//! the reference libraries) to refuse replays.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// How far a `webhook-timestamp` may be from the receiver's clock, in seconds.
pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;

/// Why a webhook is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A header is missing or not valid.
    #[error("the {0} header is missing or malformed")]
    Header(&'static str),
    /// The timestamp is too far from now (a replay, or a wrong clock).
    #[error("the timestamp is outside the {0}-second tolerance")]
    Timestamp(i64),
    /// No signature matches.
    #[error("no signature matches")]
    Signature,
    /// The secret is not `whsec_` and base64.
    #[error("the secret is not a Standard Webhooks secret")]
    Secret,
}

/// The key of a `whsec_…` secret (the prefix is optional, as in the reference libraries).
///
/// # Errors
/// [`VerifyError::Secret`] when the rest is not base64.
pub fn key_of(secret: &str) -> Result<Vec<u8>, VerifyError> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    BASE64
        .decode(encoded)
        .map_err(|_| VerifyError::Secret)
        .and_then(|key| {
            if key.is_empty() {
                Err(VerifyError::Secret)
            } else {
                Ok(key)
            }
        })
}

/// A new secret: `whsec_` and 24 random bytes, base64.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut key = [0u8; 24];
    getrandom::fill(&mut key)?;
    Ok(format!("{SECRET_PREFIX}{}", BASE64.encode(key)))
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Result<Hmac<Sha256>, VerifyError> {
    let mut mac = <Hmac<Sha256>>::new_from_slice(key).map_err(|_| VerifyError::Secret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The `webhook-signature` value for `body` under every secret: `v1,<sig>` for each,
/// space-separated (the newest first).
///
/// # Errors
/// [`VerifyError::Secret`] for a malformed secret.
pub fn sign(
    secrets: &[String],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, VerifyError> {
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let key = key_of(secret)?;
        let digest = mac(&key, id, timestamp, body)?.finalize().into_bytes();
        signatures.push(format!("v1,{}", BASE64.encode(digest)));
    }
    Ok(signatures.join(" "))
}

/// Verifies a webhook as a receiver: `id`, `timestamp` and `signature` are the
/// `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, `now` the
/// receiver's clock in seconds. One matching `v1` signature suffices.
///
/// # Errors
/// [`VerifyError`] saying what did not hold.
pub fn verify(
    secret: &str,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), VerifyError> {
    let key = key_of(secret)?;
    let id = id
        .filter(|id| !id.is_empty())
        .ok_or(VerifyError::Header("webhook-id"))?;
    let timestamp: i64 = timestamp
        .and_then(|text| text.trim().parse().ok())
        .ok_or(VerifyError::Header("webhook-timestamp"))?;
    let signature = signature.ok_or(VerifyError::Header("webhook-signature"))?;
    if now.saturating_sub(timestamp) >= tolerance || timestamp.saturating_sub(now) > tolerance {
        return Err(VerifyError::Timestamp(tolerance));
    }
    let expected = mac(&key, id, timestamp, body)?;
    for candidate in signature.split(' ') {
        let Some(encoded) = candidate.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = BASE64.decode(encoded) else {
            continue;
        };
        // `verify_slice` compares in constant time.
        if expected.clone().verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published test vector of the Standard Webhooks reference libraries.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const WRONG: &str = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

    fn check(signature: &str, now: i64) -> Result<(), VerifyError> {
        verify(
            SECRET,
            Some(ID),
            Some(&TIMESTAMP.to_string()),
            Some(signature),
            BODY,
            now,
            DEFAULT_TOLERANCE_SECONDS,
        )
    }

    #[test]
    fn signs_the_published_vector() {
        assert_eq!(
            sign(&[SECRET.to_owned()], ID, TIMESTAMP, BODY).unwrap(),
            SIGNATURE
        );
        let bare = SECRET.trim_start_matches(SECRET_PREFIX).to_owned();
        assert_eq!(sign(&[bare], ID, TIMESTAMP, BODY).unwrap(), SIGNATURE);
    }

    #[test]
    fn verifies_the_published_vector_and_refuses_the_rest() {
        assert_eq!(check(SIGNATURE, TIMESTAMP), Ok(()));
        assert_eq!(check(WRONG, TIMESTAMP), Err(VerifyError::Signature));
        let several = format!("{WRONG} v2,{} {SIGNATURE} {WRONG}", &WRONG[3..]);
        assert_eq!(check(&several, TIMESTAMP), Ok(()));
        // A replay outside the tolerance (either side) is refused.
        assert_eq!(
            check(SIGNATURE, TIMESTAMP + DEFAULT_TOLERANCE_SECONDS),
            Err(VerifyError::Timestamp(300))
        );
        assert_eq!(
            check(SIGNATURE, TIMESTAMP - DEFAULT_TOLERANCE_SECONDS - 1),
            Err(VerifyError::Timestamp(300))
        );
        assert_eq!(
            verify(SECRET, None, Some("1"), Some(SIGNATURE), BODY, 1, 300),
            Err(VerifyError::Header("webhook-id"))
        );
        assert_eq!(check(SIGNATURE, TIMESTAMP + 10), Ok(()));
        let tampered = verify(
            SECRET,
            Some(ID),
            Some(&TIMESTAMP.to_string()),
            Some(SIGNATURE),
            b"{}",
            TIMESTAMP,
            300,
        );
        assert_eq!(tampered, Err(VerifyError::Signature));
    }

    #[test]
    fn new_secrets_are_keys() {
        let secret = new_secret().unwrap();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(key_of(&secret).unwrap().len(), 24);
        assert_eq!(key_of("whsec_***"), Err(VerifyError::Secret));
    }
}
