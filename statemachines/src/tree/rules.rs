//! Path and ACL rules, as ZooKeeper's `PathUtils.validatePath`, `PrepRequestProcessor.fixupACL`
//! and `ZooKeeperServer.checkACL` apply them.

use std::net::IpAddr;

use super::types::{Acl, Id};

/// The nodes that exist from the start and can be neither deleted nor recreated.
pub const SYSTEM_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// Whether a path is well formed: absolute, no empty, `.` or `..` segment, no trailing
/// slash, no control or private-use characters.
pub fn is_valid_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    if path == "/" {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return false;
        }
    }
    !path.chars().any(|character| {
        let code = character as u32;
        code == 0
            || (0x01..=0x1f).contains(&code)
            || (0x7f..=0x9f).contains(&code)
            || (0xd800..=0xf8ff).contains(&code)
            || (0xfff0..=0xffff).contains(&code)
    })
}

/// The parent of a path as ZooKeeper cuts it (everything before the last slash, `/` for
/// top-level nodes), or `None` when the path has no slash or holds a NUL character.
pub fn parent_of(path: &str) -> Option<&str> {
    if path.contains('\0') {
        return None;
    }
    let last_slash = path.rfind('/')?;
    Some(if last_slash == 0 {
        "/"
    } else {
        &path[..last_slash]
    })
}

/// The last segment of a path.
pub fn name_of(path: &str) -> &str {
    path.rfind('/').map_or(path, |slash| &path[slash + 1..])
}

/// Joins a parent and a child name.
pub fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// Whether an identity may appear in an ACL (the scheme's `isValid`).
fn is_valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        "world" => id.id == "anyone",
        // Java's split(":") drops trailing empty strings, so "user:" has one part.
        "digest" => {
            let parts: Vec<&str> = id.id.split(':').collect();
            parts.len() == 2 && !parts[1].is_empty()
        }
        "ip" => parse_ip_expression(&id.id).is_some(),
        _ => false,
    }
}

/// Checks and expands an ACL for a create or setACL: duplicates are dropped, an empty list
/// or an invalid id is refused, and `auth` entries become one entry per authenticated
/// identity of the caller (digest ones: an ip identity is not "authenticated").
pub fn fixup_acl(acl: &[Acl], identities: &[Id]) -> Option<Vec<Acl>> {
    let mut unique: Vec<&Acl> = Vec::new();
    for entry in acl {
        if !unique.contains(&entry) {
            unique.push(entry);
        }
    }
    if unique.is_empty() {
        return None;
    }
    let mut fixed = Vec::new();
    for entry in unique {
        if entry.id.scheme == "auth" {
            let authenticated: Vec<&Id> = identities
                .iter()
                .filter(|identity| identity.scheme == "digest")
                .collect();
            if authenticated.is_empty() {
                return None;
            }
            for identity in authenticated {
                fixed.push(Acl {
                    perms: entry.perms,
                    id: identity.clone(),
                });
            }
        } else if is_valid_id(&entry.id) {
            fixed.push(entry.clone());
        } else {
            return None;
        }
    }
    Some(fixed)
}

/// Whether the caller's identities grant `perm` under `acl`. The super identity passes
/// everything; an empty ACL grants everything (as ZooKeeper's checkACL).
pub fn is_permitted(acl: &[Acl], perm: u32, identities: &[Id], is_super: bool) -> bool {
    if is_super || acl.is_empty() {
        return true;
    }
    acl.iter()
        .filter(|entry| entry.perms & perm != 0)
        .any(|entry| match entry.id.scheme.as_str() {
            "world" => entry.id.id == "anyone",
            "digest" => identities.contains(&entry.id),
            "ip" => identities
                .iter()
                .filter(|identity| identity.scheme == "ip")
                .any(|identity| ip_matches(&identity.id, &entry.id.id)),
            _ => false,
        })
}

/// Parses `address[/bits]` into the address bytes and the prefix length.
fn parse_ip_expression(expression: &str) -> Option<(Vec<u8>, usize)> {
    let (address, bits) = match expression.split_once('/') {
        Some((address, bits)) => (address, Some(bits)),
        None => (expression, None),
    };
    let bytes = ip_bytes(address)?;
    let bits_max = bytes.len() * 8;
    let bits = match bits {
        Some(bits) => bits
            .parse::<usize>()
            .ok()
            .filter(|&bits| bits <= bits_max)?,
        None => bits_max,
    };
    Some((bytes, bits))
}

fn ip_bytes(address: &str) -> Option<Vec<u8>> {
    match address.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => Some(v4.octets().to_vec()),
        IpAddr::V6(v6) => Some(v6.octets().to_vec()),
    }
}

/// Whether a client address lies in an ACL's `address/bits` network.
pub fn ip_matches(client: &str, expression: &str) -> bool {
    let Some((network, bits)) = parse_ip_expression(expression) else {
        return false;
    };
    let Some(client) = ip_bytes(client) else {
        return false;
    };
    if client.len() != network.len() {
        return false;
    }
    (0..bits).all(|bit| {
        let mask = 0x80u8 >> (bit % 8);
        client[bit / 8] & mask == network[bit / 8] & mask
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::types::perms;

    #[test]
    fn paths_are_validated_as_zookeeper_does() {
        for good in ["/", "/a", "/a/b", "/a.b", "/...", "/a/.b", "/zookeeper"] {
            assert!(is_valid_path(good), "{good}");
        }
        for bad in [
            "", "a", "/a/", "//a", "/a//b", "/.", "/a/..", "/a\u{0}b", "/a\u{1}", "/\u{7f}",
        ] {
            assert!(!is_valid_path(bad), "{bad:?}");
        }
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("a"), None);
        assert_eq!(name_of("/a/b"), "b");
        assert_eq!(child_path("/", "a"), "/a");
        assert_eq!(child_path("/a", "b"), "/a/b");
    }

    #[test]
    fn fixup_expands_auth_and_refuses_invalid_ids() {
        let digest = Id::new("digest", "user:hash=");
        let auth = Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        };
        assert_eq!(fixup_acl(std::slice::from_ref(&auth), &[]), None);
        assert_eq!(
            fixup_acl(
                &[auth.clone(), auth],
                &[Id::new("ip", "1.2.3.4"), digest.clone()]
            ),
            Some(vec![Acl {
                perms: perms::ALL,
                id: digest
            }])
        );
        assert_eq!(fixup_acl(&[], &[]), None);
        let bad = |scheme: &str, id: &str| {
            fixup_acl(
                &[Acl {
                    perms: 1,
                    id: Id::new(scheme, id),
                }],
                &[],
            )
        };
        assert!(bad("world", "someone").is_none());
        assert!(bad("digest", "nocolon").is_none());
        assert!(bad("digest", "user:").is_none());
        assert!(bad("ip", "10.0.0.0/33").is_none());
        assert!(bad("unknown", "x").is_none());
        assert!(bad("ip", "10.0.0.0/8").is_some());
        assert!(bad("ip", "::1").is_some());
    }

    #[test]
    fn permission_checks_match_each_scheme() {
        let acl = vec![
            Acl {
                perms: perms::READ,
                id: Id::new("ip", "10.1.0.0/16"),
            },
            Acl {
                perms: perms::WRITE,
                id: Id::new("digest", "alice:x="),
            },
        ];
        let from_network = [Id::new("ip", "10.1.200.3")];
        assert!(is_permitted(&acl, perms::READ, &from_network, false));
        assert!(!is_permitted(&acl, perms::WRITE, &from_network, false));
        assert!(!is_permitted(
            &acl,
            perms::READ,
            &[Id::new("ip", "10.2.0.1")],
            false
        ));
        let alice = [Id::new("digest", "alice:x=")];
        assert!(is_permitted(&acl, perms::WRITE, &alice, false));
        assert!(!is_permitted(&acl, perms::READ, &alice, false));
        assert!(is_permitted(&acl, perms::ADMIN, &[], true));
        assert!(is_permitted(&Acl::read_only(), perms::READ, &[], false));
        assert!(!is_permitted(&Acl::read_only(), perms::WRITE, &[], false));
    }

    #[test]
    fn ip_prefixes_compare_only_the_masked_bits() {
        assert!(ip_matches("192.168.1.7", "192.168.1.0/24"));
        assert!(!ip_matches("192.168.2.7", "192.168.1.0/24"));
        assert!(ip_matches("192.168.1.7", "192.168.1.7"));
        assert!(ip_matches("1.2.3.4", "0.0.0.0/0"));
        assert!(!ip_matches("::1", "0.0.0.0/0"));
        assert!(ip_matches("fe80::1", "fe80::/10"));
    }
}
