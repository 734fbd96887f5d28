//! Who is behind a flow: proxy Basic authentication against a users file, or the client's
//! address mapped to a user (kiosks, servers, networks without authentication).
//!
//! ```toml
//! [[user]]
//! name = "chan.taiman"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # `portcullis policy hash-password`
//! groups = ["finance", "staff"]
//!
//! [[address]]
//! cidr = "10.20.0.0/16"          # most specific range wins
//! user = "lobby-kiosk"           # groups: the user's entry above, plus `groups` here
//! groups = ["kiosks"]
//! ```
//!
//! Argon2 is deliberately slow (tens of milliseconds): a proxy that verified it on every request
//! would spend its CPU hashing. Successful verifications are remembered as a keyed SHA-256 of
//! (user, password) under a per-process random key, so a repeated `Proxy-Authorization` costs
//! one SHA-256; a wrong password always goes through Argon2, and so does an unknown user name
//! (against a dummy hash), so timing does not reveal which users exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use ipnet::IpNet;
use portcullis_classify::{Problem, Problems, line_of, toml_problem};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::file::LoadError;

/// An identified user.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Identity {
    /// User name.
    pub user: Arc<str>,
    /// Groups.
    pub groups: Arc<[String]>,
}

/// Outcome of [`Users::identify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// A verified user (Basic credentials) or a mapped client address.
    User(Identity),
    /// No credentials, no mapping, and the users file has no accounts: anonymous is fine.
    Anonymous,
    /// Credentials are needed (answer 407 with `Proxy-Authenticate: Basic`): none were given,
    /// or they were wrong or malformed.
    Challenge(Option<AuthError>),
}

/// Why Basic authentication failed (the proxy answers 407 in every case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not `Basic <base64 user:password>`.
    #[error("malformed Proxy-Authorization header")]
    Malformed,
    /// Unknown user or wrong password (not distinguished, on purpose).
    #[error("wrong user name or password")]
    Rejected,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUsers {
    #[serde(default)]
    user: Vec<Spanned<RawUser>>,
    #[serde(default)]
    address: Vec<Spanned<RawAddress>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: String,
    password: Spanned<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAddress {
    cidr: Spanned<String>,
    user: String,
    #[serde(default)]
    groups: Vec<String>,
}

struct Account {
    phc: String,
    identity: Identity,
}

/// The users file, compiled. Share it as `Arc<Users>`; reload builds a new one.
pub struct Users {
    accounts: HashMap<String, Account>,
    /// Most specific first.
    addresses: Vec<(IpNet, Identity)>,
    key: [u8; 32],
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("users", &self.accounts.len()).field("addresses", &self.addresses.len()).finish()
    }
}

impl Users {
    /// No users, no addresses.
    pub fn empty() -> Users {
        Users { accounts: HashMap::new(), addresses: Vec::new(), key: rand::random(), verified: Mutex::default() }
    }

    /// Load a users file. On error nothing is loaded.
    pub fn load(path: &Path) -> Result<Users, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.display().to_string(), source })?;
        Users::parse(&path.display().to_string(), &text)
    }

    /// Parse a users file; `file` names it in problems.
    pub fn parse(file: &str, text: &str) -> Result<Users, LoadError> {
        let raw: RawUsers = toml::from_str(text).map_err(|e| LoadError::Invalid(Problems(vec![toml_problem(file, text, &e)])))?;
        let mut problems = Vec::new();
        let mut p = |line, message: String| problems.push(Problem { file: file.to_owned(), line, message });
        let mut users = Users::empty();
        for u in raw.user {
            let line = line_of(text, u.span().start);
            let u = u.into_inner();
            if let Err(e) = PasswordHash::new(u.password.get_ref()) {
                p(line_of(text, u.password.span().start), format!("user {:?}: password is not a PHC hash string ({e})", u.name));
                continue;
            }
            if !u.password.get_ref().starts_with("$argon2") {
                p(line_of(text, u.password.span().start), format!("user {:?}: only argon2 hashes are supported", u.name));
                continue;
            }
            if users.accounts.contains_key(&u.name) {
                p(line, format!("user {:?} defined twice", u.name));
                continue;
            }
            let identity = Identity { user: Arc::from(u.name.as_str()), groups: Arc::from(u.groups) };
            users.accounts.insert(u.name, Account { phc: u.password.into_inner(), identity });
        }
        for a in raw.address {
            let a = a.into_inner();
            let net = match a.cidr.get_ref().parse::<IpNet>().or_else(|_| a.cidr.get_ref().parse::<IpAddr>().map(IpNet::from)) {
                Ok(n) => n.trunc(),
                Err(_) => {
                    p(line_of(text, a.cidr.span().start), format!("{:?} is not an address or CIDR range", a.cidr.get_ref()));
                    continue;
                }
            };
            let mut groups: Vec<String> = users.accounts.get(&a.user).map(|acc| acc.identity.groups.to_vec()).unwrap_or_default();
            for g in a.groups {
                if !groups.contains(&g) {
                    groups.push(g);
                }
            }
            users.addresses.push((net, Identity { user: Arc::from(a.user), groups: Arc::from(groups) }));
        }
        if !problems.is_empty() {
            return Err(LoadError::Invalid(Problems(problems)));
        }
        users.addresses.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        Ok(users)
    }

    /// Verify a user's password; the identity on success.
    pub fn verify(&self, user: &str, password: &str) -> Option<Identity> {
        let Some(account) = self.accounts.get(user) else {
            // Spend the same Argon2 time on unknown users as on wrong passwords, so response
            // times do not tell which user names exist.
            static DUMMY: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
            if let Some(phc) = DUMMY.get_or_init(|| hash_password("portcullis-unknown-user").ok())
                && let Ok(parsed) = PasswordHash::new(phc)
            {
                let _ = argon2::Argon2::default().verify_password(password.as_bytes(), &parsed);
            }
            return None;
        };
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        if let Ok(cache) = self.verified.lock()
            && cache.get(user) == Some(&digest)
        {
            return Some(account.identity.clone());
        }
        let parsed = PasswordHash::new(&account.phc).ok()?;
        argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).ok()?;
        if let Ok(mut cache) = self.verified.lock() {
            cache.insert(user.to_owned(), digest);
        }
        Some(account.identity.clone())
    }

    /// Check a `Proxy-Authorization` header value (`Basic <base64(user:password)>`).
    pub fn basic(&self, header: &str) -> Result<Identity, AuthError> {
        let (scheme, b64) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(AuthError::Malformed);
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| AuthError::Malformed)?;
        let text = std::str::from_utf8(&raw).map_err(|_| AuthError::Malformed)?;
        let (user, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
        self.verify(user, password).ok_or(AuthError::Rejected)
    }

    /// The proxy's identification step, in order: `Proxy-Authorization` credentials (wrong ones
    /// are never silently downgraded to the address map), then the client-address map, then
    /// anonymous — unless the file has accounts, in which case credentials are required.
    pub fn identify(&self, proxy_authorization: Option<&str>, client: IpAddr) -> Identified {
        if let Some(h) = proxy_authorization {
            return match self.basic(h) {
                Ok(id) => Identified::User(id),
                Err(e) => Identified::Challenge(Some(e)),
            };
        }
        if let Some(id) = self.by_address(client) {
            return Identified::User(id);
        }
        if self.has_accounts() { Identified::Challenge(None) } else { Identified::Anonymous }
    }

    /// The user mapped to a client address (most specific range).
    pub fn by_address(&self, ip: IpAddr) -> Option<Identity> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.addresses.iter().find(|(n, _)| n.contains(&ip)).map(|(_, id)| id.clone())
    }

    /// A user's identity by name, without a password (for `explain --user`).
    pub fn lookup(&self, user: &str) -> Option<Identity> {
        self.accounts
            .get(user)
            .map(|a| a.identity.clone())
            .or_else(|| self.addresses.iter().find(|(_, id)| &*id.user == user).map(|(_, id)| id.clone()))
    }

    /// Whether any user accounts exist (the proxy then requires authentication).
    pub fn has_accounts(&self) -> bool {
        !self.accounts.is_empty()
    }
}

/// Hash a password for the users file (Argon2id, default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| e.to_string())
}
