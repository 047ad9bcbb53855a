//! Identifiers: run ids from OS-seeded randomness, and validated names for tenants, actions and
//! contacts.
//!
//! Every newtype is checked where it is made (`parse`, `TryFrom<String>`, and serde's
//! `Deserialize`), so a value of the type is always valid: an empty contact id cannot
//! alias tenant-scoped state, a tenant id cannot hold a path separator.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {given:?}: {rule}")]
pub struct InvalidId {
    /// Which kind of identifier.
    pub what: &'static str,
    /// The text given (cut to 80 bytes).
    pub given: String,
    /// The rule it breaks.
    pub rule: &'static str,
}

impl InvalidId {
    fn new(what: &'static str, given: &str, rule: &'static str) -> Self {
        let mut cut = given.len().min(80);
        while !given.is_char_boundary(cut) {
            cut -= 1;
        }
        Self {
            what,
            given: given.get(..cut).unwrap_or_default().to_owned(),
            rule,
        }
    }
}

/// The rule shared by tenant ids, action and workflow names: 1–64 characters of
/// `a-z 0-9 - _`, starting with a letter (safe in paths, URLs and SQL identifiers).
pub const NAME_RULE: &str = "use 1-64 characters a-z, 0-9, '-' or '_', starting with a letter";

/// [`NAME_RULE`] as a regular expression (ECMA 262, as JSON Schema and OpenAPI read it).
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9_-]{0,63}$";

fn check_name(what: &'static str, text: &str) -> Result<(), InvalidId> {
    let valid = (1..=64).contains(&text.len())
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(InvalidId::new(what, text, NAME_RULE))
    }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        pub struct $name(String);

        impl $name {
            /// Checks `text` and wraps it.
            ///
            /// # Errors
            /// [`InvalidId`] naming the rule `text` breaks.
            pub fn parse(text: impl Into<String>) -> Result<Self, InvalidId> {
                let text = text.into();
                let check: fn(&str) -> Result<(), InvalidId> = $check;
                check(&text)?;
                Ok(Self(text))
            }

            /// The text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(text: String) -> Result<Self, InvalidId> {
                Self::parse(text)
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(text: &str) -> Result<Self, InvalidId> {
                Self::parse(text)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// A tenant's id ([`NAME_RULE`]).
    TenantId,
    "tenant id",
    |text| check_name("tenant id", text)
);

name_type!(
    /// The name of an action or a workflow, unique per tenant ([`NAME_RULE`]).
    ActionName,
    "name",
    |text| check_name("name", text)
);

/// The longest contact id accepted.
pub const MAX_CONTACT_ID_BYTES: usize = 256;

name_type!(
    /// The platform's id of a contact: 1–256 bytes, no control characters. Never empty,
    /// so contact-scoped state can never alias tenant-scoped state.
    ContactId,
    "contact id",
    |text| {
        if text.is_empty() {
            return Err(InvalidId::new("contact id", text, "it must not be empty"));
        }
        if text.len() > MAX_CONTACT_ID_BYTES {
            return Err(InvalidId::new("contact id", text, "it is longer than 256 bytes"));
        }
        if text.chars().any(char::is_control) {
            return Err(InvalidId::new(
                "contact id",
                text,
                "it holds control characters",
            ));
        }
        Ok(())
    }
);

/// A run's id: a UUIDv7 (RFC 9562 §5.7) — 48 bits of Unix milliseconds, then 74 random
/// bits from a CSPRNG seeded from the operating system's random source — so ids sort by
/// creation time and two processes (or nodes) never make the same one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
pub struct RunId(uuid::Uuid);

impl RunId {
    /// A fresh id for the current time.
    #[must_use]
    pub fn new() -> Self {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
            });
        Self::at_millis(millis)
    }

    /// An id stamped with `millis` (Unix milliseconds) whose other 74 bits come from a
    /// cryptographically secure generator seeded (and reseeded every 64 KiB) from the
    /// operating system's random source — `rand`'s `ThreadRng`, ChaCha12 — never from
    /// the process id or a counter: ids made in the same millisecond by different
    /// processes differ. (A `getrandom` call per id cost ~1 % of a run on the benchmark
    /// machine: BENCHMARKS.md.)
    ///
    /// The generator's state lives in the process: a process cloned without a fresh
    /// start — `fork()` without `exec`, or a VM restored twice from one memory snapshot —
    /// repeats its clone's ids until the next reseed, unless it calls
    /// `rand::rng().reseed()` on each thread first. Fluxo itself only spawns child
    /// processes that `exec`.
    ///
    /// # Panics
    /// When the operating system refuses randomness for the first seed (never seen on
    /// Linux).
    #[must_use]
    pub fn at_millis(millis: u64) -> Self {
        use rand::Rng as _;
        let mut random = [0u8; 10];
        rand::rng().fill_bytes(&mut random);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// Parses the canonical hyphenated form.
    ///
    /// # Errors
    /// [`InvalidId`] when `text` is not a UUID.
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        uuid::Uuid::try_parse(text)
            .map(Self)
            .map_err(|_| InvalidId::new("run id", text, "it is not a UUID"))
    }

    /// The 16 bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Milliseconds since the Unix epoch at which the id was made (0 for an id that is
    /// not a UUIDv7).
    #[must_use]
    pub fn created_ms(&self) -> u64 {
        self.0.get_timestamp().map_or(0, |ts| {
            let (seconds, nanos) = ts.to_unix();
            seconds
                .saturating_mul(1000)
                .saturating_add(u64::from(nanos / 1_000_000))
        })
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for RunId {
    type Error = InvalidId;
    fn try_from(text: String) -> Result<Self, InvalidId> {
        Self::parse(&text)
    }
}

impl FromStr for RunId {
    type Err = InvalidId;
    fn from_str(text: &str) -> Result<Self, InvalidId> {
        Self::parse(text)
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.to_string()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({self})")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for good in ["acme", "crm-lead", "a", "second_copy2"] {
            assert!(TenantId::parse(good).is_ok(), "{good}");
            assert!(ActionName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Crm",
            "1lead",
            "../etc",
            "a b",
            "crm.lead",
            &"a".repeat(65),
        ] {
            assert!(ActionName::parse(bad).is_err(), "{bad}");
        }
        let error = TenantId::parse("Bad").unwrap_err();
        assert_eq!(error.what, "tenant id");
    }

    #[test]
    fn contact_ids_are_never_empty() {
        assert!(ContactId::parse("c1").is_ok());
        assert!(ContactId::parse("+55 11 91234-5678").is_ok());
        assert!(ContactId::parse("").is_err());
        assert!(ContactId::parse("a\nb").is_err());
        assert!(ContactId::parse("x".repeat(257)).is_err());
        assert!(serde_json::from_str::<ContactId>("\"\"").is_err());
        assert_eq!(
            serde_json::from_str::<ContactId>("\"c1\"")
                .unwrap()
                .as_str(),
            "c1"
        );
    }

    #[test]
    fn run_ids_round_trip_and_sort_by_time() {
        let first = RunId::new();
        let text = first.to_string();
        assert_eq!(RunId::parse(&text).unwrap(), first);
        let json = serde_json::to_string(&first).unwrap();
        assert_eq!(serde_json::from_str::<RunId>(&json).unwrap(), first);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let made = u128::from(first.created_ms());
        assert!(now.abs_diff(made) < 60_000, "{made} vs {now}");
        assert!(RunId::parse("run-1").is_err());
    }

    #[test]
    fn many_ids_made_at_once_are_distinct() {
        let ids: HashSet<RunId> = (0..100_000).map(|_| RunId::new()).collect();
        assert_eq!(ids.len(), 100_000);
    }

    /// The millisecond every child process of the next test stamps its ids with.
    const SHARED_MILLIS: u64 = 1_790_000_000_000;

    /// Run as a child process by the test below: writes ids stamped with one millisecond
    /// to the file the parent names.
    #[test]
    fn child_prints_ids_for_one_millisecond() {
        let Some(path) = std::env::var_os("FLUXO_RUN_ID_CHILD") else {
            return;
        };
        let ids: Vec<String> = (0..20_000)
            .map(|_| RunId::at_millis(SHARED_MILLIS).to_string())
            .collect();
        std::fs::write(path, ids.join("\n")).unwrap();
    }

    /// Two processes making ids "in the same millisecond" (the same stamp, forced) never
    /// make the same id: nothing but the OS's randomness tells them apart, and it does.
    #[test]
    fn two_processes_in_the_same_millisecond_never_collide() {
        let exe = std::env::current_exe().unwrap();
        let dir = std::env::temp_dir().join(format!("fluxo-run-ids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let spawn = |name: &str| {
            let path = dir.join(name);
            let child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "ids::tests::child_prints_ids_for_one_millisecond",
                    "--test-threads=1",
                ])
                .env("FLUXO_RUN_ID_CHILD", &path)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (child, path)
        };
        let children = [spawn("a"), spawn("b")];
        let mut seen = HashSet::new();
        let mut total = 0;
        for (mut child, path) in children {
            assert!(child.wait().unwrap().success());
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let id = RunId::parse(line).unwrap();
                assert_eq!(id.created_ms(), SHARED_MILLIS);
                seen.insert(id);
                total += 1;
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(total, 40_000, "both children printed their ids");
        assert_eq!(seen.len(), total, "no id repeats across the two processes");
    }

    proptest::proptest! {
        /// Whatever the millisecond, ids stamped with it keep it and differ.
        #[test]
        fn ids_of_one_millisecond_keep_it_and_differ(millis in 0u64..(1 << 48)) {
            let ids: HashSet<RunId> = (0..64).map(|_| RunId::at_millis(millis)).collect();
            proptest::prop_assert_eq!(ids.len(), 64);
            proptest::prop_assert!(ids.iter().all(|id| id.created_ms() == millis));
        }
    }
}
