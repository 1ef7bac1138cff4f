//! Who may use the page: the password (kept only as its argon2id hash), sessions in `HttpOnly`
//! `SameSite=Strict` cookies, a login rate limit, a forward-auth header believed only from the
//! configured proxies (failing closed), the `Host` allowlist against DNS rebinding, and the CSRF
//! check of every change (its origin and the session's token).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::HeaderMap;

use crate::config::{Secret, Web};

/// The session cookie's name.
pub const COOKIE: &str = "bs_session";
/// How long a session lasts.
const SESSION_LIFE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed logins from one address within [`FAILURE_WINDOW`] before it must wait.
const MAX_FAILURES: u32 = 5;
/// The window of [`MAX_FAILURES`], and the wait after it.
const FAILURE_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Someone the page serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Their name: `admin` for the password, the proxy's name otherwise.
    pub name: String,
    /// The session's CSRF token, for its forms (the forward-auth user's is per process).
    pub csrf: String,
}

struct Session {
    user: User,
    until: Instant,
}

/// The page's access control.
pub struct Auth {
    hash: Option<String>,
    header: Option<String>,
    proxies: Vec<crate::config::Network>,
    hosts: Vec<String>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// The forward-auth users' CSRF token: they have no session of ours.
    proxied_csrf: String,
}

/// 32 random bytes as hex.
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id hash of `password` (OWASP's baseline parameters, argon2's defaults).
pub fn hash(password: &Secret) -> String {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).expect("the system's random source");
    let salt = SaltString::encode_b64(&salt).expect("a 16-byte salt encodes");
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .expect("argon2 hashes a password")
        .to_string()
}

/// Whether the `Host` header names one of `hosts` (its port aside).
fn host_allowed(hosts: &[String], headers: &HeaderMap) -> bool {
    let Some(host) = headers.get("host").and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let name = match host.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or("")),
        None => host.split(':').next().unwrap_or("").to_string(),
    };
    hosts.contains(&name)
}

impl Auth {
    /// Access control from the page's settings; the password (taken out of them before the
    /// configuration was copied) is hashed here and dropped.
    pub fn new(web: &Web, password: Option<Secret>) -> Auth {
        Auth {
            hash: password.map(|p| hash(&p)),
            header: web.auth_header.clone(),
            proxies: web.trusted_proxies.clone(),
            hosts: web.hosts.clone(),
            sessions: Mutex::default(),
            failures: Mutex::default(),
            proxied_csrf: token(),
        }
    }

    /// Whether the request names a host the page answers to.
    pub fn host_allowed(&self, headers: &HeaderMap) -> bool {
        host_allowed(&self.hosts, headers)
    }

    /// The host names the page answers to, for the refusal's message.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether a password login exists.
    pub fn has_password(&self) -> bool {
        self.hash.is_some()
    }

    /// Who sends this request: a live session's user, or the user a trusted proxy names. Nobody
    /// when neither, and when the page has no way of logging in at all (loopback only, no
    /// password), everyone is `admin`.
    pub fn user(&self, headers: &HeaderMap, peer: IpAddr) -> Option<User> {
        if let Some(header) = &self.header
            && self.proxies.iter().any(|p| p.contains(peer))
        {
            let named = headers
                .get(header.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty());
            if let Some(name) = named {
                return Some(User {
                    name: name.to_string(),
                    csrf: self.proxied_csrf.clone(),
                });
            }
        }
        if let Some(session) = cookie(headers, COOKIE) {
            let mut sessions = self.sessions.lock().expect("sessions");
            sessions.retain(|_, s| s.until > Instant::now());
            if let Some(s) = sessions.get(&session) {
                return Some(s.user.clone());
            }
        }
        if self.hash.is_none() && self.header.is_none() {
            // Only reachable on loopback (the configuration refuses otherwise).
            return Some(User {
                name: "admin".into(),
                csrf: self.proxied_csrf.clone(),
            });
        }
        None
    }

    /// Checks a password from `peer`: a new session's cookie value, or why not. After
    /// [`MAX_FAILURES`] failures in [`FAILURE_WINDOW`] the address waits out the window.
    pub async fn login(&self, peer: IpAddr, password: String) -> Result<String, String> {
        let Some(hash) = self.hash.clone() else {
            return Err("this page has no password login".into());
        };
        {
            let mut failures = self.failures.lock().expect("failures");
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if failures.get(&peer).is_some_and(|(n, _)| *n >= MAX_FAILURES) {
                return Err("too many failed logins from this address: wait five minutes".into());
            }
        }
        let good = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).is_ok_and(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if !good {
            let mut failures = self.failures.lock().expect("failures");
            let entry = failures.entry(peer).or_insert((0, Instant::now()));
            entry.0 += 1;
            return Err("wrong password".into());
        }
        let session = token();
        self.sessions.lock().expect("sessions").insert(
            session.clone(),
            Session {
                user: User {
                    name: "admin".into(),
                    csrf: token(),
                },
                until: Instant::now() + SESSION_LIFE,
            },
        );
        Ok(session)
    }

    /// Ends the session of this request.
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(session) = cookie(headers, COOKIE) {
            self.sessions.lock().expect("sessions").remove(&session);
        }
    }

    /// Whether a change comes from the page itself: the browser says so (`Sec-Fetch-Site`), or
    /// its `Origin` names a host the page answers to. A request with neither is refused too: every
    /// browser this page supports sends one of them with a POST.
    pub fn same_origin(&self, headers: &HeaderMap) -> bool {
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            return site == "same-origin";
        }
        let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let host = origin
            .split_once("://")
            .map_or(origin, |(_, rest)| rest)
            .trim_end_matches('/');
        let mut as_host = HeaderMap::new();
        match host.parse() {
            Ok(value) => {
                as_host.insert("host", value);
                host_allowed(&self.hosts, &as_host)
            }
            Err(_) => false,
        }
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether two tokens are equal, in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Network;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn web(password: Option<&str>, header: Option<&str>) -> Web {
        Web {
            addr: "0.0.0.0:8080".parse().unwrap(),
            password: password.map(|p| Secret::new(p.into())),
            auth_header: header.map(String::from),
            trusted_proxies: vec![Network {
                addr: "10.0.0.2".parse().unwrap(),
                bits: 32,
            }],
            hosts: vec!["nas.lan".into(), "127.0.0.1".into(), "[::1]".into()],
        }
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 9));

    #[tokio::test]
    async fn a_password_makes_a_session_and_guessing_stops() {
        let mut settings = web(Some("correct horse"), None);
        let password = settings.password.take();
        let auth = Auth::new(&settings, password);
        assert!(auth.user(&HeaderMap::new(), PEER).is_none());
        let session = auth.login(PEER, "correct horse".into()).await.unwrap();
        let with = headers(&[("cookie", &format!("a=b; {COOKIE}={session}"))]);
        let user = auth.user(&with, PEER).unwrap();
        assert_eq!(user.name, "admin");
        assert_eq!(user.csrf.len(), 64);
        auth.logout(&with);
        assert!(auth.user(&with, PEER).is_none());
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                auth.login(PEER, "guess".into()).await.unwrap_err(),
                "wrong password"
            );
        }
        let blocked = auth.login(PEER, "correct horse".into()).await.unwrap_err();
        assert!(blocked.contains("too many"), "{blocked}");
        // Another address is not held up.
        let other = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 10));
        assert!(auth.login(other, "correct horse".into()).await.is_ok());
        assert!(
            auth.user(&headers(&[("cookie", "bs_session=forged")]), PEER)
                .is_none()
        );
    }

    #[test]
    fn a_forward_auth_header_counts_only_from_the_proxy_and_fails_closed() {
        let auth = Auth::new(&web(None, Some("remote-user")), None);
        let named = headers(&[("remote-user", "alice")]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(auth.user(&named, proxy).unwrap().name, "alice");
        assert!(auth.user(&named, PEER).is_none(), "only the proxy vouches");
        assert!(
            auth.user(&headers(&[("remote-user", " ")]), proxy)
                .is_none()
        );
        assert!(auth.user(&HeaderMap::new(), proxy).is_none());
    }

    #[test]
    fn only_the_pages_own_hosts_and_origins() {
        let mut settings = web(Some("correct horse"), None);
        let password = settings.password.take();
        let auth = Auth::new(&settings, password);
        assert!(auth.host_allowed(&headers(&[("host", "NAS.lan:8080")])));
        assert!(auth.host_allowed(&headers(&[("host", "[::1]:8080")])));
        assert!(!auth.host_allowed(&headers(&[("host", "evil.example")])));
        assert!(!auth.host_allowed(&HeaderMap::new()));
        assert!(auth.same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!auth.same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(auth.same_origin(&headers(&[("origin", "http://nas.lan:8080")])));
        assert!(!auth.same_origin(&headers(&[("origin", "http://evil.example")])));
        assert!(!auth.same_origin(&headers(&[("origin", "null")])));
        assert!(!auth.same_origin(&HeaderMap::new()));
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("a", "ab"));
    }

    #[test]
    fn the_stored_hash_is_argon2id() {
        let hash = hash(&Secret::new("correct horse".into()));
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct"));
    }
}
