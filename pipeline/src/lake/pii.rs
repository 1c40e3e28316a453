//! Personal data at rest (`[pii]`): e-mail addresses and names are stored encrypted
//! (AES-256-GCM) or pseudonymised (HMAC-SHA256), never in clear.
//!
//! Both are deterministic — the same value always gives the same stored text — so upserts still
//! see unchanged rows as unchanged and equality lookups (a GDPR request by e-mail, a meeting
//! attendee) work by protecting the value looked for. Encryption derives its nonce from an HMAC
//! of the value (the synthetic-IV construction): it reveals only which values are equal, which
//! the lookups need anyway. An e-mail keeps its domain in clear (`pii1.k1a2b3c4.…@acme.com`): the
//! domain names a company, not a person, and meeting attendees are matched to accounts by it.
//!
//! Stored values carry the id of the key that made them, so old keys can still be read while
//! `cslake pii rotate` re-encrypts with the current one. Keys come from the environment only:
//! 32 bytes, base64 (`openssl rand -base64 32`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;

use crate::settings::PiiConfig;
use crate::{Error, Result};

const PREFIX: &str = "pii1.";
const PSEUDO: &str = "p.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Encrypt,
    Pseudonymise,
}

struct Key {
    id: String,
    aead: LessSafeKey,
    nonce: hmac::Key,
}

impl Key {
    fn new(raw: &[u8]) -> Result<Self> {
        if raw.len() != 32 {
            return Err(Error::Config(format!(
                "[pii] a key must be 32 bytes (base64 of 32 random bytes), this one has {}",
                raw.len()
            )));
        }
        let root = hmac::Key::new(hmac::HMAC_SHA256, raw);
        let derive = |label: &[u8]| hmac::sign(&root, label);
        let enc = derive(b"cslake pii encryption");
        let aead = LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, enc.as_ref())
                .map_err(|_| Error::Config("[pii] unusable key".into()))?,
        );
        let nonce = hmac::Key::new(hmac::HMAC_SHA256, derive(b"cslake pii nonce").as_ref());
        let id: String = derive(b"cslake pii key id").as_ref()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            id: format!("k{id}"),
            aead,
            nonce,
        })
    }

    fn seal(&self, plain: &str) -> String {
        let tag = hmac::sign(&self.nonce, plain.as_bytes());
        let mut n = [0u8; 12];
        n.copy_from_slice(&tag.as_ref()[..12]);
        let mut data = plain.as_bytes().to_vec();
        // sealing with a valid key and nonce length cannot fail
        let _ = self.aead.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(n),
            Aad::from(b"cslake"),
            &mut data,
        );
        let mut out = n.to_vec();
        out.extend(data);
        format!("{PREFIX}{}.{}", self.id, B64.encode(out))
    }

    fn open(&self, sealed: &[u8]) -> Option<String> {
        if sealed.len() < 12 + 16 {
            return None;
        }
        let (n, ct) = sealed.split_at(12);
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(n);
        let mut data = ct.to_vec();
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"cslake"),
                &mut data,
            )
            .ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }

    fn pseudonym(&self, plain: &str) -> String {
        let tag = hmac::sign(&self.nonce, plain.as_bytes());
        let hex: String = tag.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{PSEUDO}{hex}")
    }
}

/// Protects and reveals the configured columns.
pub struct Protector {
    pub mode: Mode,
    /// `table.column` names, e.g. `contacts.email`.
    pub columns: Vec<String>,
    current: Key,
    old: Vec<Key>,
}

impl std::fmt::Debug for Protector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protector")
            .field("mode", &self.mode)
            .field("columns", &self.columns)
            .field("key", &self.current.id)
            .finish()
    }
}

fn key_from_env(name: &str) -> Result<Key> {
    let v = std::env::var(name).map_err(|_| Error::MissingEnv {
        var: name.to_string(),
        what: "[pii]".into(),
        why: "a base64 key of 32 bytes".into(),
    })?;
    crate::add_secrets([v.trim().to_string()]);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .map_err(|_| Error::Config(format!("[pii] {name} is not base64")))?;
    Key::new(&raw)
}

pub const DEFAULT_COLUMNS: &[&str] = &["contacts.email", "contacts.name", "csms.email", "csms.name"];

impl Protector {
    /// The protector the settings' `[pii]` configures, if any (its keys are read from the
    /// environment here).
    pub fn from_settings(settings: &crate::Settings) -> Result<Option<Self>> {
        Self::from_config(&settings.file.pii)
    }

    /// The protector `[pii]` configures, if any.
    pub fn from_config(cfg: &PiiConfig) -> Result<Option<Self>> {
        let mode = match cfg.mode.as_deref() {
            None | Some("off") => return Ok(None),
            Some("encrypt") => Mode::Encrypt,
            Some("pseudonymise" | "pseudonymize") => Mode::Pseudonymise,
            Some(other) => {
                return Err(Error::Config(format!(
                    "[pii] mode = '{other}': expected 'encrypt', 'pseudonymise' or 'off'"
                )));
            }
        };
        let current = key_from_env(cfg.key_env.as_deref().unwrap_or("CSLAKE_PII_KEY"))?;
        let old = cfg
            .old_key_envs
            .iter()
            .map(|k| key_from_env(k))
            .collect::<Result<Vec<_>>>()?;
        let columns = if cfg.columns.is_empty() {
            DEFAULT_COLUMNS.iter().map(|c| c.to_string()).collect()
        } else {
            cfg.columns.clone()
        };
        Ok(Some(Self {
            mode,
            columns,
            current,
            old,
        }))
    }

    #[cfg(test)]
    fn for_test(mode: Mode, key: [u8; 32], old: &[[u8; 32]]) -> Self {
        Self {
            mode,
            columns: DEFAULT_COLUMNS.iter().map(|c| c.to_string()).collect(),
            current: Key::new(&key).unwrap(),
            old: old.iter().map(|k| Key::new(k).unwrap()).collect(),
        }
    }

    pub fn covers(&self, table: &str, column: &str) -> bool {
        self.columns.iter().any(|c| c == &format!("{table}.{column}"))
    }

    pub fn is_protected(v: &str) -> bool {
        v.starts_with(PREFIX) || v.starts_with(PSEUDO)
    }

    /// The stored form of a value; e-mails are lower-cased and keep their domain.
    pub fn protect(&self, column: &str, value: &str) -> String {
        if Self::is_protected(value) {
            return value.to_string();
        }
        let seal = |s: &str| match self.mode {
            Mode::Encrypt => self.current.seal(s),
            Mode::Pseudonymise => self.current.pseudonym(s),
        };
        if column == "email" {
            let v = value.trim().to_lowercase();
            if let Some((local, domain)) = v.rsplit_once('@') {
                return format!("{}@{domain}", seal(local));
            }
            return seal(&v);
        }
        seal(value)
    }

    /// Every stored form a looked-up value may have (current and old keys).
    pub fn forms(&self, column: &str, value: &str) -> Vec<String> {
        let mut out = vec![self.protect(column, value)];
        let v = value.trim().to_lowercase();
        for k in &self.old {
            let seal = |s: &str| match self.mode {
                Mode::Encrypt => k.seal(s),
                Mode::Pseudonymise => k.pseudonym(s),
            };
            out.push(match v.rsplit_once('@') {
                Some((local, domain)) if column == "email" => format!("{}@{domain}", seal(local)),
                _ => seal(&v),
            });
        }
        out
    }

    fn key(&self, id: &str) -> Option<&Key> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id == id)
    }

    /// The clear text of an encrypted value (pseudonyms and clear values come back as they are).
    pub fn reveal(&self, value: &str) -> String {
        let (head, domain) = match value.rsplit_once('@') {
            Some((h, d)) if h.starts_with(PREFIX) => (h, Some(d)),
            _ => (value, None),
        };
        let Some(rest) = head.strip_prefix(PREFIX) else {
            return value.to_string();
        };
        let Some((kid, data)) = rest.split_once('.') else {
            return value.to_string();
        };
        let plain = self
            .key(kid)
            .zip(B64.decode(data).ok())
            .and_then(|(k, d)| k.open(&d));
        match (plain, domain) {
            (Some(p), Some(d)) => format!("{p}@{d}"),
            (Some(p), None) => p,
            (None, _) => value.to_string(),
        }
    }

    /// Re-encrypts a value made with an old key under the current one (rotation).
    pub fn rekey(&self, column: &str, value: &str) -> String {
        if self.mode != Mode::Encrypt
            || !value.starts_with(PREFIX)
            || value.contains(&format!(".{}.", self.current.id))
        {
            return value.to_string();
        }
        let plain = self.reveal(value);
        if plain == value {
            return value.to_string();
        }
        self.protect(column, &plain)
    }

    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// A raw quarantined record (JSON object) with every value that looks like an e-mail address
    /// protected: the rest of a rejected record stays readable for the person fixing the input.
    pub fn protect_raw(&self, raw: &str) -> String {
        let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(raw) else {
            return raw.to_string();
        };
        for v in map.values_mut() {
            if let serde_json::Value::String(s) = v
                && s.contains('@')
                && !s.contains(char::is_whitespace)
            {
                *s = self.protect("email", s);
            }
        }
        serde_json::Value::Object(map).to_string()
    }

    /// Every string value that was encrypted, in clear (for `--reveal` and subject exports).
    pub fn reveal_json(&self, v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) if s.contains(PREFIX) => {
                *s = if s.starts_with('{') {
                    // a protected raw record: reveal inside it
                    let mut inner: serde_json::Value =
                        serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.clone()));
                    self.reveal_json(&mut inner);
                    match inner {
                        serde_json::Value::String(x) => self.reveal(&x),
                        other => other.to_string(),
                    }
                } else {
                    self.reveal(s)
                };
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|x| self.reveal_json(x)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|x| self.reveal_json(x)),
            _ => {}
        }
    }

    /// A batch with its protected values revealed (string columns only).
    pub fn reveal_batch(
        &self,
        batch: &deltalake::arrow::array::RecordBatch,
    ) -> Result<deltalake::arrow::array::RecordBatch> {
        use deltalake::arrow::array::{Array, ArrayRef, AsArray, StringArray};
        use deltalake::arrow::datatypes::DataType;
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
        let mut fields = Vec::with_capacity(batch.num_columns());
        for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
            if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) {
                let s = deltalake::arrow::compute::cast(c, &DataType::Utf8)?;
                let s = s.as_string::<i32>();
                let out: StringArray = (0..s.len())
                    .map(|i| {
                        (!s.is_null(i)).then(|| {
                            let v = s.value(i);
                            if v.contains(PREFIX) {
                                let mut j = serde_json::Value::String(v.to_string());
                                self.reveal_json(&mut j);
                                match j {
                                    serde_json::Value::String(x) => x,
                                    other => other.to_string(),
                                }
                            } else {
                                v.to_string()
                            }
                        })
                    })
                    .collect();
                cols.push(std::sync::Arc::new(out));
                fields.push(f.as_ref().clone().with_data_type(DataType::Utf8));
            } else {
                cols.push(c.clone());
                fields.push(f.as_ref().clone());
            }
        }
        Ok(deltalake::arrow::array::RecordBatch::try_new(
            std::sync::Arc::new(deltalake::arrow::datatypes::Schema::new(fields)),
            cols,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_reversible_and_rotatable() {
        let p = Protector::for_test(Mode::Encrypt, [7; 32], &[]);
        let a = p.protect("email", "Ann.Lee@Acme.com");
        assert_eq!(
            a,
            p.protect("email", "ann.lee@acme.com"),
            "deterministic, e-mails normalised"
        );
        assert!(a.starts_with("pii1.k") && a.ends_with("@acme.com"), "{a}");
        assert!(!a.contains("ann"), "{a}");
        assert_eq!(p.reveal(&a), "ann.lee@acme.com");
        let n = p.protect("name", "Ann Lee");
        assert_ne!(n, p.protect("name", "Ann Leo"));
        assert_eq!(p.reveal(&n), "Ann Lee");
        assert_eq!(p.protect("name", &n), n, "protecting twice changes nothing");

        // a new key: old values still read, rotation moves them to the new key
        let q = Protector::for_test(Mode::Encrypt, [9; 32], &[[7; 32]]);
        assert_eq!(q.reveal(&a), "ann.lee@acme.com");
        let rotated = q.rekey("email", &a);
        assert_ne!(rotated, a);
        assert_eq!(rotated, q.protect("email", "ann.lee@acme.com"));
        assert!(q.forms("email", "ann.lee@acme.com").contains(&a));
        // a wrong key reads nothing
        let r = Protector::for_test(Mode::Encrypt, [1; 32], &[]);
        assert_eq!(r.reveal(&a), a);

        let s = Protector::for_test(Mode::Pseudonymise, [7; 32], &[]);
        let ps = s.protect("email", "ann.lee@acme.com");
        assert!(ps.starts_with("p.") && ps.ends_with("@acme.com"), "{ps}");
        assert_eq!(s.reveal(&ps), ps, "pseudonyms do not come back");
    }
}
