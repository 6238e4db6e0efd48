//! API keys (REST APIs' `apiKeyRequired`), served from memory: the spec carries each key's
//! SHA-256 and the stages its usage plans are bound to, never the value itself. A presented key
//! is hashed and looked up, so no comparison runs over the secret's bytes.
//!
//! A key passes when it exists, is enabled and a usage plan holding it is bound to the request's
//! API and stage ("Choose an API key source" and "Usage plans" in the developer guide); anything
//! else is AWS's 403 `{"message":"Forbidden"}` (INVALID_API_KEY).

use std::collections::{HashMap, HashSet};

use ring::digest::{digest, SHA256};

use super::ApiKeyIdentity;
use crate::spec::ApiKeySpec;

#[derive(Debug)]
struct Key {
    id: String,
    enabled: bool,
    /// `apiId/stage`
    stages: HashSet<String>,
}

#[derive(Debug, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Key>,
}

fn sha256(value: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, value).as_ref());
    out
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl ApiKeys {
    pub fn compile(keys: &[ApiKeySpec]) -> Result<ApiKeys, String> {
        let mut by_hash = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            let hash = parse_hex(&k.value_sha256)
                .ok_or_else(|| format!("api_keys[{i}].value_sha256: expected 64 hex digits"))?;
            let key = Key {
                id: k.id.clone(),
                enabled: k.enabled,
                stages: k.stages.iter().cloned().collect(),
            };
            if by_hash.insert(hash, key).is_some() {
                return Err(format!("api_keys[{i}]: the same value as another key (values are unique)"));
            }
        }
        Ok(ApiKeys { by_hash })
    }

    /// The key `value` if it may call stage `stage` of API `api_id`.
    pub fn check(&self, value: &str, api_id: &str, stage: &str) -> Option<ApiKeyIdentity> {
        let key = self.by_hash.get(&sha256(value.as_bytes()))?;
        let bound = key.enabled && key.stages.contains(&format!("{api_id}/{stage}"));
        bound.then(|| ApiKeyIdentity {
            value: value.to_owned(),
            id: key.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(value: &str) -> String {
        sha256(value.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    fn spec(id: &str, value: &str, enabled: bool, stages: &[&str]) -> ApiKeySpec {
        ApiKeySpec {
            id: id.into(),
            value_sha256: hex(value),
            enabled,
            stages: stages.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_key_passes_only_enabled_and_bound_to_the_stage() {
        let keys = ApiKeys::compile(&[
            spec("k1", "a-key-value-of-twenty-chars", true, &["api1/prod"]),
            spec("k2", "a-disabled-key-value-00", false, &["api1/prod"]),
        ])
        .unwrap();
        let ok = keys.check("a-key-value-of-twenty-chars", "api1", "prod").unwrap();
        assert_eq!(ok.id, "k1");
        assert!(keys.check("a-key-value-of-twenty-chars", "api1", "dev").is_none());
        assert!(keys.check("a-key-value-of-twenty-chars", "api2", "prod").is_none());
        assert!(keys.check("a-disabled-key-value-00", "api1", "prod").is_none());
        assert!(keys.check("unknown-key-value-000000", "api1", "prod").is_none());
    }

    #[test]
    fn malformed_and_duplicate_hashes_are_refused() {
        let mut bad = spec("k", "v", true, &[]);
        bad.value_sha256 = "zz".into();
        assert!(ApiKeys::compile(&[bad]).unwrap_err().contains("64 hex"));
        let twice = [spec("a", "same-value", true, &[]), spec("b", "same-value", true, &[])];
        assert!(ApiKeys::compile(&twice).unwrap_err().contains("unique"));
    }
}
