//! Who is connecting: SCRAM-SHA-256 against verifiers (RFC 5802 / 7677, as PostgreSQL does
//! it), so the server never holds a password, only what can check one.
//!
//! A verifier is `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64), the
//! format of PostgreSQL's `pg_authid.rolpassword`: one can be copied between the two.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use basin_core::serve::UserConfig;
use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

use crate::Error;

/// The iteration count of verifiers Basin makes (PostgreSQL's default).
pub const ITERATIONS: u32 = 4096;

#[derive(Clone)]
pub struct Verifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(…)")
    }
}

impl Verifier {
    /// A verifier for `password` with a fresh random salt.
    pub fn new(password: &str) -> Verifier {
        let mut salt = vec![0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut salt).expect("the system's random source");
        Verifier::with_salt(password, salt, ITERATIONS)
    }

    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Verifier {
        let mut salted = [0u8; 32];
        let n = NonZeroU32::new(iterations.max(1)).expect("at least 1");
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, &salt, password.as_bytes(), &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Verifier {
            iterations,
            salt,
            stored_key: digest::digest(&digest::SHA256, &client_key).as_ref().to_vec(),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    pub fn parse(text: &str) -> Option<Verifier> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let v = Verifier {
            iterations: iterations.parse().ok().filter(|i| *i > 0)?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?,
            server_key: B64.decode(server).ok()?,
        };
        (v.stored_key.len() == 32 && v.server_key.len() == 32).then_some(v)
    }

    /// Check a client's proof over `auth_message`; the server's signature when it holds.
    pub fn verify(&self, auth_message: &[u8], proof: &[u8]) -> Option<Vec<u8>> {
        if proof.len() != 32 {
            return None;
        }
        let signature = hmac_sha256(&self.stored_key, auth_message);
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let stored = digest::digest(&digest::SHA256, &client_key);
        same(stored.as_ref(), &self.stored_key).then_some(())?;
        Some(hmac_sha256(&self.server_key, auth_message))
    }
}

impl std::fmt::Display for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }
}

/// Equal bytes, compared in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref().to_vec()
}

/// The users who may connect, each with a verifier and a role.
#[derive(Debug, Clone, Default)]
pub struct Users {
    users: BTreeMap<String, (Verifier, String)>,
    /// A salt for users that do not exist, so that their exchange looks like a real one.
    decoy_salt: Vec<u8>,
}

impl Users {
    /// Read `[users]`: verifiers as written, passwords named by `password_env` from `env`.
    pub fn from_config(
        users: &BTreeMap<String, UserConfig>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Users, Error> {
        let mut out = BTreeMap::new();
        for (name, u) in users {
            let verifier = match (&u.password, &u.password_env) {
                (Some(v), _) => Verifier::parse(v.expose()).ok_or_else(|| {
                    Error::Config(format!("users.{name}.password is not a valid SCRAM-SHA-256 verifier"))
                })?,
                (None, Some(var)) => {
                    let password = env(var).ok_or_else(|| {
                        Error::Config(format!("users.{name}.password_env names `{var}`, which is not set"))
                    })?;
                    Verifier::new(&password)
                }
                (None, None) => return Err(Error::Config(format!("user `{name}` has no password"))),
            };
            out.insert(name.clone(), (verifier, u.role.clone()));
        }
        let mut decoy_salt = vec![0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut decoy_salt).expect("the system's random source");
        Ok(Users { users: out, decoy_salt })
    }

    pub fn get(&self, user: &str) -> Option<&(Verifier, String)> {
        self.users.get(user)
    }

    /// Check a password (HTTP basic authentication); the user's role when it is right.
    pub fn check_password(&self, user: &str, password: &str) -> Option<&str> {
        let (v, role) = self.users.get(user)?;
        let candidate = Verifier::with_salt(password, v.salt.clone(), v.iterations);
        same(&candidate.stored_key, &v.stored_key).then_some(())?;
        Some(role)
    }

    pub fn decoy(&self) -> Verifier {
        Verifier {
            iterations: ITERATIONS,
            salt: self.decoy_salt.clone(),
            stored_key: vec![0; 32],
            server_key: vec![0; 32],
        }
    }
}

/// The server side of one SCRAM-SHA-256 exchange.
pub struct Exchange {
    verifier: Verifier,
    /// `None` for a user who does not exist: the exchange runs to the end and then fails.
    known: bool,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    gs2_header: String,
}

/// Why an exchange failed: a malformed message (08P01), or a wrong user or password (28P01).
#[derive(Debug, PartialEq, Eq)]
pub enum ScramError {
    Protocol(String),
    Failed,
}

impl Exchange {
    /// Take the client's first message (`n,,n=user,r=nonce`); the server's first message.
    pub fn start(
        verifier: Option<Verifier>,
        decoy: Verifier,
        client_first: &str,
    ) -> Result<(Exchange, String), ScramError> {
        let bad = |m: &str| ScramError::Protocol(format!("malformed SCRAM client-first message: {m}"));
        let (gs2_header, bare) = match client_first.splitn(3, ',').collect::<Vec<_>>()[..] {
            [cb, authzid, bare] => {
                if !(cb == "n" || cb == "y") {
                    return Err(bad("channel binding is not supported"));
                }
                (format!("{cb},{authzid},"), bare.to_string())
            }
            _ => return Err(bad("no GS2 header")),
        };
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no nonce"))?;
        let mut server_nonce = [0u8; 18];
        ring::rand::SystemRandom::new().fill(&mut server_nonce).expect("the system's random source");
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let known = verifier.is_some();
        let verifier = verifier.unwrap_or(decoy);
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&verifier.salt), verifier.iterations);
        Ok((
            Exchange {
                verifier,
                known,
                client_first_bare: bare,
                server_first: server_first.clone(),
                nonce,
                gs2_header,
            },
            server_first,
        ))
    }

    /// Take the client's final message (`c=…,r=…,p=proof`); the server's final message when
    /// the proof holds.
    pub fn finish(&self, client_final: &str) -> Result<String, ScramError> {
        let bad = |m: &str| ScramError::Protocol(format!("malformed SCRAM client-final message: {m}"));
        let (without_proof, proof) = client_final.rsplit_once(",p=").ok_or_else(|| bad("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                binding = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if binding != Some(B64.encode(&self.gs2_header).as_str()) {
            return Err(bad("channel binding does not match"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(bad("nonce does not match"));
        }
        let proof = B64.decode(proof).map_err(|_| bad("proof is not base64"))?;
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        match self.verifier.verify(auth_message.as_bytes(), &proof) {
            Some(signature) if self.known => Ok(format!("v={}", B64.encode(signature))),
            _ => Err(ScramError::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client side of the exchange, as a driver computes it.
    fn client_final(password: &str, server_first: &str, client_first_bare: &str) -> String {
        let attr = |k: &str| server_first.split(',').find_map(|a| a.strip_prefix(k)).unwrap().to_string();
        let (nonce, salt, iterations) = (attr("r="), B64.decode(attr("s=")).unwrap(), attr("i=").parse().unwrap());
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored = digest::digest(&digest::SHA256, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(stored.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn a_verifier_round_trips_and_checks_the_password() {
        let v = Verifier::new("s3cret");
        let parsed = Verifier::parse(&v.to_string()).unwrap();
        assert_eq!((parsed.salt, parsed.stored_key), (v.salt.clone(), v.stored_key.clone()));
        for bad in ["s3cret", "SCRAM-SHA-256$0:AA==$AA==:AA==", "SCRAM-SHA-256$4096:AA==$AA==:AA=="] {
            assert!(Verifier::parse(bad).is_none(), "{bad}");
        }
        let users = Users { users: [("ana".to_string(), (v, "analyst".to_string()))].into(), decoy_salt: vec![1; 16] };
        assert_eq!(users.check_password("ana", "s3cret"), Some("analyst"));
        assert_eq!(users.check_password("ana", "wrong"), None);
        assert_eq!(users.check_password("bob", "s3cret"), None);
    }

    #[test]
    fn the_exchange_accepts_the_right_password_only() {
        let v = Verifier::new("pencil");
        let decoy = Verifier::new("x");
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (ex, server_first) = Exchange::start(Some(v.clone()), decoy.clone(), &format!("n,,{bare}")).unwrap();
        let server_final = ex.finish(&client_final("pencil", &server_first, bare)).unwrap();
        assert!(server_final.starts_with("v="));
        let (ex, server_first) = Exchange::start(Some(v), decoy.clone(), &format!("n,,{bare}")).unwrap();
        assert_eq!(ex.finish(&client_final("wrong", &server_first, bare)), Err(ScramError::Failed));
        // An unknown user goes through the same steps and fails the same way.
        let (ex, server_first) = Exchange::start(None, decoy, &format!("n,,{bare}")).unwrap();
        assert_eq!(ex.finish(&client_final("pencil", &server_first, bare)), Err(ScramError::Failed));
        assert!(matches!(ex.finish("c=biws,r=other,p=AAAA"), Err(ScramError::Protocol(_))));
    }
}
