//! `BACKUP_WEB_*`: the web page's address and who may use it.

use std::net::{IpAddr, SocketAddr};

use super::parse::parse_listen_addr;
use super::{ConfigError, RawConfig, Secret, err, split_list};

/// The web page's settings, when `BACKUP_WEB_ADDR` is set.
#[derive(Debug, Clone)]
pub struct Web {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `BACKUP_WEB_PASSWORD`: the daemon keeps only its argon2id hash, and takes this out of the
    /// configuration before anything else holds it.
    pub password: Option<Secret>,
    /// `BACKUP_WEB_AUTH_HEADER`: the header a forward-auth proxy (Authelia, Authentik) names the
    /// user in; believed only from [`Web::trusted_proxies`].
    pub auth_header: Option<String>,
    /// `BACKUP_WEB_TRUSTED_PROXIES`: the addresses (or networks, `ADDR/BITS`) of that proxy.
    pub trusted_proxies: Vec<Network>,
    /// `BACKUP_WEB_HOSTS`: the host names the page answers to (against DNS rebinding).
    pub hosts: Vec<String>,
}

/// An address and how many of its leading bits a peer must share with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// The network's address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub bits: u8,
}

impl Network {
    /// Whether `ip` is in this network (an IPv4 peer seen as IPv6-mapped counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.bits as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.bits as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn parse_network(var: &str, text: &str) -> Result<Network, ConfigError> {
    let bad = || {
        err(
            var,
            format!("{text:?} is not an IP address or ADDRESS/BITS"),
        )
    };
    let (addr, bits) = match text.split_once('/') {
        Some((addr, bits)) => (addr, Some(bits)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(bits) => bits
            .parse::<u8>()
            .ok()
            .filter(|b| *b <= max)
            .ok_or_else(bad)?,
        None => max,
    };
    Ok(Network { addr, bits })
}

/// The web page's section: `None` when `BACKUP_WEB_ADDR` is unset. A page reachable from other
/// machines without a way to log in is refused, and a forward-auth header without the proxies
/// to believe it from (it would let anyone who can reach the port name any user).
pub(super) fn web_section(raw: &RawConfig) -> Result<Option<Web>, ConfigError> {
    let Some(value) = raw.backup_web_addr.as_deref() else {
        for (var, set) in [
            ("BACKUP_WEB_PASSWORD", raw.backup_web_password.is_some()),
            (
                "BACKUP_WEB_AUTH_HEADER",
                raw.backup_web_auth_header.is_some(),
            ),
        ] {
            if set {
                return Err(err(
                    var,
                    "is set, but BACKUP_WEB_ADDR is not: no page is served",
                ));
            }
        }
        return Ok(None);
    };
    let addr = parse_listen_addr("BACKUP_WEB_ADDR", value)?;
    let password = raw
        .backup_web_password
        .clone()
        .map(|p| {
            if p.chars().count() < 8 {
                Err(err("BACKUP_WEB_PASSWORD", "is shorter than 8 characters"))
            } else {
                Ok(Secret::new(p))
            }
        })
        .transpose()?;
    let auth_header = raw
        .backup_web_auth_header
        .as_deref()
        .map(str::trim)
        .map(|h| {
            if h.is_empty()
                || !h
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                Err(err(
                    "BACKUP_WEB_AUTH_HEADER",
                    format!("{h:?} is not a header name"),
                ))
            } else {
                Ok(h.to_ascii_lowercase())
            }
        })
        .transpose()?;
    let trusted_proxies = split_list(raw.backup_web_trusted_proxies.as_deref())
        .iter()
        .map(|p| parse_network("BACKUP_WEB_TRUSTED_PROXIES", p))
        .collect::<Result<Vec<_>, _>>()?;
    if auth_header.is_some() && trusted_proxies.is_empty() {
        return Err(err(
            "BACKUP_WEB_TRUSTED_PROXIES",
            "is empty, but BACKUP_WEB_AUTH_HEADER is set: name the proxy's addresses that may \
             vouch for a user",
        ));
    }
    if !addr.ip().is_loopback() && password.is_none() && auth_header.is_none() {
        return Err(err(
            "BACKUP_WEB_ADDR",
            format!(
                "{value} can be reached from other machines, and no one could log in: set \
                 BACKUP_WEB_PASSWORD (or BACKUP_WEB_AUTH_HEADER behind a forward-auth proxy)"
            ),
        ));
    }
    let mut hosts: Vec<String> = split_list(raw.backup_web_hosts.as_deref())
        .into_iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if hosts.is_empty() {
        hosts = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
    }
    Ok(Some(Web {
        addr,
        password,
        auth_header,
        trusted_proxies,
        hosts,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(pairs: &[(&str, &str)]) -> Result<Option<Web>, ConfigError> {
        let raw = RawConfig::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .unwrap();
        web_section(&raw)
    }

    fn refused(pairs: &[(&str, &str)]) -> String {
        web(pairs).unwrap_err().variable
    }

    #[test]
    fn off_unless_asked_and_never_open_to_the_network_without_a_login() {
        assert!(web(&[]).unwrap().is_none());
        assert_eq!(
            refused(&[("BACKUP_WEB_PASSWORD", "long enough")]),
            "BACKUP_WEB_PASSWORD"
        );
        let local = web(&[("BACKUP_WEB_ADDR", "127.0.0.1:8080")])
            .unwrap()
            .unwrap();
        assert!(local.password.is_none());
        assert_eq!(local.hosts, ["localhost", "127.0.0.1", "[::1]"]);
        assert_eq!(refused(&[("BACKUP_WEB_ADDR", ":8080")]), "BACKUP_WEB_ADDR");
        assert_eq!(
            refused(&[
                ("BACKUP_WEB_ADDR", ":8080"),
                ("BACKUP_WEB_PASSWORD", "short")
            ]),
            "BACKUP_WEB_PASSWORD"
        );
        let open = web(&[
            ("BACKUP_WEB_ADDR", ":8080"),
            ("BACKUP_WEB_PASSWORD", "correct horse"),
            ("BACKUP_WEB_HOSTS", "nas.lan, Backup.Example.org"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(open.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(open.hosts, ["nas.lan", "backup.example.org"]);
        assert!(!format!("{open:?}").contains("correct horse"));
    }

    #[test]
    fn a_forward_auth_header_needs_its_proxies() {
        assert_eq!(
            refused(&[
                ("BACKUP_WEB_ADDR", ":8080"),
                ("BACKUP_WEB_AUTH_HEADER", "Remote-User")
            ]),
            "BACKUP_WEB_TRUSTED_PROXIES"
        );
        assert_eq!(
            refused(&[
                ("BACKUP_WEB_ADDR", ":8080"),
                ("BACKUP_WEB_AUTH_HEADER", "Remote User"),
                ("BACKUP_WEB_TRUSTED_PROXIES", "10.0.0.2"),
            ]),
            "BACKUP_WEB_AUTH_HEADER"
        );
        assert_eq!(
            refused(&[
                ("BACKUP_WEB_ADDR", ":8080"),
                ("BACKUP_WEB_AUTH_HEADER", "Remote-User"),
                ("BACKUP_WEB_TRUSTED_PROXIES", "10.0.0.300"),
            ]),
            "BACKUP_WEB_TRUSTED_PROXIES"
        );
        let web = web(&[
            ("BACKUP_WEB_ADDR", ":8080"),
            ("BACKUP_WEB_AUTH_HEADER", "Remote-User"),
            ("BACKUP_WEB_TRUSTED_PROXIES", "172.20.0.0/16, fd00::1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(web.auth_header.as_deref(), Some("remote-user"));
        let [net, one] = web.trusted_proxies[..] else {
            panic!("{:?}", web.trusted_proxies)
        };
        assert!(net.contains("172.20.9.9".parse().unwrap()));
        assert!(net.contains("::ffff:172.20.0.1".parse().unwrap()));
        assert!(!net.contains("172.21.0.1".parse().unwrap()));
        assert!(one.contains("fd00::1".parse().unwrap()));
        assert!(!one.contains("fd00::2".parse().unwrap()));
    }
}
