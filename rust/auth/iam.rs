//! `AWS_IAM` authorization: who signed a request (the principals the gateway knows, by access key)
//! and whether they may invoke the route (their identity policy, with the REST API's resource
//! policy).
//!
//! Principals come from the spec (`spec.principals`): the admin key as the account's root, and
//! those the configuration declares. Each is kept with its secret (the signature needs it) and
//! never printed: `Debug` shows the access key id and ARN only.
//!
//! Authorization follows "How API Gateway resource policies affect authorization workflow" in
//! the developer guide: an explicit deny in the identity policy or the resource policy denies;
//! otherwise a caller of the API's own account is allowed when either policy allows, and a caller
//! of another account only when both do. A principal without an identity policy is its
//! account's root, allowed everything its account may do.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use ring::{digest, hmac};

use super::policy::{Policy, Request, Verdict};
use super::sigv4::{Presented, Refusal};
use super::IamIdentity;
use crate::spec::PrincipalSpec;

/// The principals the gateway knows, by access key id.
#[derive(Default)]
pub struct Principals {
    by_key: HashMap<String, Principal>,
}

pub struct Principal {
    secret: Box<str>,
    /// Temporary credentials: a key derived from the secret, and the session token's HMAC under
    /// it; a presented token is compared by its HMAC, in constant time, never as text.
    session: Option<(hmac::Key, Vec<u8>)>,
    /// The signing key of the last scope (date, region, service) seen: it changes once a day,
    /// and deriving it costs four HMACs.
    signing: ArcSwapOption<SigningKey>,
    pub identity: IamIdentity,
    /// The identity policy; None: the account's root.
    pub policy: Option<Policy>,
}

impl fmt::Debug for Principals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_key.values()).finish()
    }
}

impl fmt::Debug for Principal {
    /// Without the secret and the session token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("access_key", &self.identity.access_key)
            .field("arn", &self.identity.user_arn)
            .finish_non_exhaustive()
    }
}

struct SigningKey {
    date: Box<str>,
    region: Box<str>,
    service: Box<str>,
    key: hmac::Key,
}

fn session_key(secret: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, digest::digest(&digest::SHA256, format!("session-token\0{secret}").as_bytes()).as_ref())
}

impl Principals {
    pub fn compile(specs: &[PrincipalSpec]) -> Result<Principals, String> {
        let mut by_key = HashMap::with_capacity(specs.len());
        for (i, p) in specs.iter().enumerate() {
            let at = format!("principals[{i}]");
            if p.access_key_id.is_empty() || p.secret_access_key.is_empty() {
                return Err(format!("{at}: an access key id and a secret access key are required"));
            }
            if !(p.account_id.len() == 12 && p.account_id.bytes().all(|b| b.is_ascii_digit())) {
                return Err(format!("{at}.account_id: {:?} is not a 12-digit account id", p.account_id));
            }
            let policy = p
                .policy
                .as_ref()
                .map(|doc| Policy::parse(doc).map_err(|e| format!("{at}.policy: {e}")))
                .transpose()?;
            let session = p.session_token.as_ref().map(|token| {
                let key = session_key(&p.secret_access_key);
                let tag = hmac::sign(&key, token.as_bytes()).as_ref().to_vec();
                (key, tag)
            });
            let principal = Principal {
                secret: p.secret_access_key.as_str().into(),
                session,
                signing: ArcSwapOption::empty(),
                identity: identity_of(&p.access_key_id, &p.arn, &p.account_id),
                policy,
            };
            if by_key.insert(p.access_key_id.clone(), principal).is_some() {
                return Err(format!("{at}.access_key_id: {:?} is another principal's too", p.access_key_id));
            }
        }
        Ok(Principals { by_key })
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// The principal of `access_key_id` (one that signed a request already verified).
    pub fn get(&self, access_key_id: &str) -> Option<&Principal> {
        self.by_key.get(access_key_id)
    }

    /// The principal whose access key signed `presented`, once the signature's scope and date
    /// hold for the gateway's `region` at `now_s` and the session token is the key's own. The
    /// signature itself is checked by `Principal::verify`, over the canonical request.
    pub fn authenticate(&self, presented: &Presented, region: &str, now_s: i64) -> Result<&Principal, Refusal> {
        presented.check(region, now_s)?;
        let principal = self.by_key.get(&presented.access_key_id).ok_or(Refusal::Unrecognized)?;
        let token_holds = match (&principal.session, &presented.security_token) {
            (None, None) => true,
            (Some((key, tag)), Some(token)) => hmac::verify(key, token.as_bytes(), tag).is_ok(),
            _ => false,
        };
        if !token_holds {
            return Err(Refusal::Unrecognized);
        }
        Ok(principal)
    }
}

impl Principal {
    /// Check the signature over `canonical_request` with this principal's secret.
    pub fn verify(&self, presented: &Presented, canonical_request: &str) -> Result<(), Refusal> {
        let cached = self.signing.load();
        if let Some(k) = cached.as_deref() {
            if *k.date == presented.scope_date && *k.region == presented.region && *k.service == presented.service {
                return presented.verify_with(&k.key, canonical_request);
            }
        }
        let derived = Arc::new(SigningKey {
            date: presented.scope_date.as_str().into(),
            region: presented.region.as_str().into(),
            service: presented.service.as_str().into(),
            key: presented.signing_key(&self.secret),
        });
        self.signing.store(Some(derived.clone()));
        presented.verify_with(&derived.key, canonical_request)
    }
}

/// What AWS_IAM authorization decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused; `explicit` when a statement denies it (AWS adds "with an explicit deny").
    Deny { explicit: bool },
}

/// May `principal` do `request` (`execute-api:Invoke` on the method's ARN) on an API of
/// `api_account`, given the API's resource policy?
pub fn authorize(principal: &Principal, resource_policy: Option<&Policy>, api_account: &str, request: &Request<'_>) -> Decision {
    let identity = principal.policy.as_ref().map_or(Verdict::Allow, |p| p.evaluate(request));
    let resource = resource_policy.map(|p| p.evaluate(request));
    if identity == Verdict::Deny || resource == Some(Verdict::Deny) {
        return Decision::Deny { explicit: true };
    }
    let resource_allows = resource == Some(Verdict::Allow);
    let allowed = if principal.identity.account_id == api_account {
        identity == Verdict::Allow || resource_allows
    } else {
        identity == Verdict::Allow && resource_allows
    };
    if allowed {
        Decision::Allow
    } else {
        Decision::Deny { explicit: false }
    }
}

/// The identity API Gateway shows for a principal (`requestContext.identity`,
/// `authorizer.iam`). The unique ids are derived from the ARN, stable across restarts and
/// shaped as IAM's ("Unique identifiers" in the IAM user guide):
/// - the account's root (`arn:aws:iam::ACCOUNT:root`): the account id;
/// - a user (`...:user/NAME`): `AIDA` + 17 characters;
/// - a role (`...:role/NAME`): `AROA` + 17; a role session
///   (`arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`): the role's id, `:`, the session name;
/// - a federated user (`arn:aws:sts::ACCOUNT:federated-user/NAME`): `ACCOUNT:NAME`;
/// - anything else: `AIDA` + 17.
///
/// The 17 characters are the ARN's SHA-256 in base 32 (`A-Z2-7`, IAM's alphabet).
pub fn identity_of(access_key: &str, arn: &str, account_id: &str) -> IamIdentity {
    let resource = arn.splitn(6, ':').nth(5).unwrap_or("");
    let caller = if resource == "root" {
        account_id.to_owned()
    } else if let Some(rest) = resource.strip_prefix("assumed-role/") {
        let (role, session) = rest.rsplit_once('/').unwrap_or((rest, ""));
        let role_arn = format!("arn:aws:iam::{account_id}:role/{role}");
        format!("{}:{session}", unique_id("AROA", &role_arn))
    } else if resource.starts_with("role/") {
        unique_id("AROA", arn)
    } else if let Some(name) = resource.strip_prefix("federated-user/") {
        format!("{account_id}:{name}")
    } else {
        unique_id("AIDA", arn)
    };
    IamIdentity {
        access_key: access_key.to_owned(),
        account_id: account_id.to_owned(),
        user: caller.clone(),
        caller,
        user_arn: arn.to_owned(),
    }
}

fn unique_id(prefix: &str, arn: &str) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = digest::digest(&digest::SHA256, arn.as_bytes());
    let mut out = String::with_capacity(21);
    out.push_str(prefix);
    out.extend(hash.as_ref()[..17].iter().map(|b| char::from(ALPHABET[usize::from(b & 31)])));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::sigv4::{format_basic, signing_key, sign, EMPTY_SHA256};
    use http::{HeaderMap, HeaderValue};
    use serde_json::json;

    const ACCOUNT: &str = "123456789012";
    const ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:api1/prod/GET/pets";
    const NOW: i64 = 1_700_000_000;

    fn spec(akid: &str, arn: &str, policy: Option<serde_json::Value>, token: Option<&str>) -> PrincipalSpec {
        PrincipalSpec {
            access_key_id: akid.into(),
            secret_access_key: format!("secret-of-{akid}"),
            session_token: token.map(Into::into),
            arn: arn.into(),
            account_id: arn.split(':').nth(4).unwrap().into(),
            policy,
        }
    }

    fn signed(akid: &str, secret: &str, token: Option<&str>) -> (HeaderMap, Presented) {
        signed_at(akid, secret, token, NOW)
    }

    fn signed_at(akid: &str, secret: &str, token: Option<&str>, at: i64) -> (HeaderMap, Presented) {
        let date = format_basic(at);
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("api1.execute-api.localhost"));
        headers.insert("x-amz-date", HeaderValue::from_str(&date).unwrap());
        if let Some(token) = token {
            headers.insert("x-amz-security-token", HeaderValue::from_str(token).unwrap());
        }
        let credential = format!("{akid}/{}/us-east-1/execute-api/aws4_request", &date[..8]);
        let unsigned = format!("AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host;x-amz-date, Signature=00");
        headers.insert("authorization", HeaderValue::from_str(&unsigned).unwrap());
        let draft = Presented::parse(&headers, "").unwrap();
        let canonical = draft.canonical_request("GET", "/prod/pets", "", &headers, EMPTY_SHA256);
        let signature = sign(&signing_key(secret, &date[..8], "us-east-1", "execute-api"), &draft.string_to_sign(&canonical));
        let value = unsigned.replace("Signature=00", &format!("Signature={signature}"));
        headers.insert("authorization", HeaderValue::from_str(&value).unwrap());
        let presented = Presented::parse(&headers, "").unwrap();
        (headers, presented)
    }

    fn check(principals: &Principals, headers: &HeaderMap, presented: &Presented) -> Result<IamIdentity, Refusal> {
        let principal = principals.authenticate(presented, "us-east-1", NOW)?;
        let canonical = presented.canonical_request("GET", "/prod/pets", "", headers, EMPTY_SHA256);
        principal.verify(presented, &canonical)?;
        Ok(principal.identity.clone())
    }

    #[test]
    fn known_keys_with_their_secret_and_session_token_authenticate() {
        let principals = Principals::compile(&[
            spec("AKIAALICE", "arn:aws:iam::123456789012:user/alice", None, None),
            spec("ASIATEMP", "arn:aws:sts::123456789012:assumed-role/reader/s1", None, Some("tok-1")),
        ])
        .unwrap();
        let (headers, presented) = signed("AKIAALICE", "secret-of-AKIAALICE", None);
        let identity = check(&principals, &headers, &presented).unwrap();
        assert_eq!(identity.user_arn, "arn:aws:iam::123456789012:user/alice");
        assert!(identity.caller.starts_with("AIDA") && identity.caller.len() == 21, "{}", identity.caller);
        let (headers, presented) = signed("AKIAALICE", "a wrong secret", None);
        assert!(matches!(check(&principals, &headers, &presented), Err(Refusal::Invalid(..))));
        let (headers, presented) = signed("AKIANOBODY", "secret-of-AKIANOBODY", None);
        assert_eq!(check(&principals, &headers, &presented), Err(Refusal::Unrecognized));

        let (headers, presented) = signed("ASIATEMP", "secret-of-ASIATEMP", Some("tok-1"));
        let identity = check(&principals, &headers, &presented).unwrap();
        assert!(identity.caller.starts_with("AROA") && identity.caller.ends_with(":s1"), "{}", identity.caller);
        for token in [Some("tok-2"), None] {
            let (headers, presented) = signed("ASIATEMP", "secret-of-ASIATEMP", token);
            assert_eq!(check(&principals, &headers, &presented), Err(Refusal::Unrecognized), "{token:?}");
        }
        // Long-term keys take no session token.
        let (headers, presented) = signed("AKIAALICE", "secret-of-AKIAALICE", Some("tok-1"));
        assert_eq!(check(&principals, &headers, &presented), Err(Refusal::Unrecognized));
        let shown = format!("{principals:?}");
        assert!(shown.contains("AKIAALICE") && !shown.contains("secret-of") && !shown.contains("tok-1"), "{shown}");
    }

    #[test]
    fn the_cached_signing_key_follows_the_scope_date() {
        let principals = Principals::compile(&[spec("AKIAALICE", "arn:aws:iam::123456789012:user/alice", None, None)]).unwrap();
        let principal = &principals.by_key["AKIAALICE"];
        let today = signed_at("AKIAALICE", "secret-of-AKIAALICE", None, NOW);
        let yesterday = signed_at("AKIAALICE", "secret-of-AKIAALICE", None, NOW - 86_400);
        let forged = signed_at("AKIAALICE", "another secret", None, NOW - 86_400);
        for _ in 0..3 {
            for ((headers, presented), holds) in [(&today, true), (&yesterday, true), (&forged, false)] {
                let canonical = presented.canonical_request("GET", "/prod/pets", "", headers, EMPTY_SHA256);
                assert_eq!(principal.verify(presented, &canonical).is_ok(), holds, "{presented:?}");
            }
        }
    }

    #[test]
    fn compile_refuses_duplicates_and_bad_policies() {
        let alice = spec("AKIAALICE", "arn:aws:iam::123456789012:user/alice", None, None);
        assert!(Principals::compile(&[alice.clone(), alice.clone()]).unwrap_err().contains("principals[1].access_key_id"));
        let broken = spec("AKIAB", "arn:aws:iam::123456789012:user/b", Some(json!({"Statement": {"Effect": "Maybe"}})), None);
        assert!(Principals::compile(&[broken]).unwrap_err().starts_with("principals[0].policy"));
    }

    fn request<'a>(principal: &'a Principal) -> Request<'a> {
        Request {
            action: "execute-api:Invoke",
            resource: ARN,
            principal: Some(&principal.identity.user_arn),
            principal_account: Some(&principal.identity.account_id),
            source_ip: "192.0.2.1".parse().unwrap(),
        }
    }

    fn policy(effect: &str, principal: Option<&str>) -> Policy {
        let mut statement = json!({"Effect": effect, "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*:*:api1/*"});
        if let Some(p) = principal {
            statement["Principal"] = json!({"AWS": p});
        }
        Policy::parse(&json!({"Statement": [statement]})).unwrap()
    }

    #[test]
    fn identity_and_resource_policies_combine_as_aws_documents() {
        let allow = json!({"Statement": {"Effect": "Allow", "Action": "execute-api:*", "Resource": "*"}});
        let deny = json!({"Statement": {"Effect": "Deny", "Action": "execute-api:Invoke", "Resource": ARN}});
        let nothing = json!({"Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}});
        let principals = Principals::compile(&[
            spec("AKROOT", "arn:aws:iam::123456789012:root", None, None),
            spec("AKALLOW", "arn:aws:iam::123456789012:user/a", Some(allow.clone()), None),
            spec("AKDENY", "arn:aws:iam::123456789012:user/d", Some(deny), None),
            spec("AKNONE", "arn:aws:iam::123456789012:user/n", Some(nothing), None),
            spec("AKOTHER", "arn:aws:iam::999999999999:user/o", Some(allow), None),
        ])
        .unwrap();
        let p = |k: &str| &principals.by_key[k];
        let own = |k: &str, resource: Option<&Policy>| authorize(p(k), resource, ACCOUNT, &request(p(k)));
        let (allowed, implicit, explicit) = (Decision::Allow, Decision::Deny { explicit: false }, Decision::Deny { explicit: true });

        // No resource policy: the identity policy decides (none: the root, allowed).
        assert_eq!([own("AKROOT", None), own("AKALLOW", None), own("AKDENY", None), own("AKNONE", None)], [allowed, allowed, explicit, implicit]);
        // Same account: either policy's allow is enough; any explicit deny wins.
        let grants_n = policy("Allow", Some("arn:aws:iam::123456789012:user/n"));
        assert_eq!(own("AKNONE", Some(&grants_n)), allowed);
        assert_eq!(own("AKDENY", Some(&grants_n)), explicit);
        let denies_a = policy("Deny", Some("arn:aws:iam::123456789012:user/a"));
        assert_eq!(own("AKALLOW", Some(&denies_a)), explicit);
        assert_eq!(own("AKROOT", Some(&denies_a)), allowed);
        // Another account: both must allow.
        assert_eq!(own("AKOTHER", None), implicit);
        assert_eq!(own("AKOTHER", Some(&grants_n)), implicit);
        assert_eq!(own("AKOTHER", Some(&policy("Allow", Some("999999999999")))), allowed);
    }

    #[test]
    fn unique_ids_are_shaped_as_iam_shapes_them() {
        let root = identity_of("AK", "arn:aws:iam::123456789012:root", ACCOUNT);
        assert_eq!((root.caller.as_str(), root.user.as_str()), (ACCOUNT, ACCOUNT));
        let user = identity_of("AK", "arn:aws:iam::123456789012:user/team/alice", ACCOUNT);
        assert_eq!(user, identity_of("AK", "arn:aws:iam::123456789012:user/team/alice", ACCOUNT));
        assert!(user.caller.starts_with("AIDA") && user.caller[4..].bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        let role = identity_of("AK", "arn:aws:iam::123456789012:role/reader", ACCOUNT);
        let session = identity_of("AK", "arn:aws:sts::123456789012:assumed-role/reader/job-7", ACCOUNT);
        assert_eq!(session.caller, format!("{}:job-7", role.caller));
        assert_eq!(identity_of("AK", "arn:aws:sts::123456789012:federated-user/bob", ACCOUNT).caller, "123456789012:bob");
    }
}
