//! Tenant names: who a key, a client certificate and every stored row belong to. A name is
//! also a directory of the data directory (`<data_dir>/<tenant>/…`), so it is checked here,
//! once, before it can name a path.

/// The tenant of a server without keys, of data written before tenants existed, and of keys
/// created without `--tenant`.
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant name.
pub const MAX_TENANT_LEN: usize = 63;

/// Names that are directories of the data directory's own (the default tenant's write-ahead
/// log, alert delivery, query spill files) and so cannot be tenants.
pub const RESERVED_TENANTS: &[&str] = &["wal", "notify", "spill", "keys", "tls"];

/// Checks a tenant name: 1 to 63 lower-case ASCII letters, digits, `-` and `_`, starting
/// with a letter or digit, and not one of [`RESERVED_TENANTS`].
///
/// # Errors
/// What is wrong with the name, for the person who chose it.
pub fn check_tenant(name: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if name.is_empty() || name.len() > MAX_TENANT_LEN {
        return Err(format!(
            "tenant {name:?}: a tenant name has 1 to {MAX_TENANT_LEN} characters"
        ));
    }
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "tenant {name:?}: a tenant name has lower-case letters, digits, '-' and '_', and \
             starts with a letter or digit"
        ));
    }
    if RESERVED_TENANTS.contains(&name) {
        return Err(format!(
            "tenant {name:?}: the name is one of the data directory's own ({})",
            RESERVED_TENANTS.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_their_directory_are_refused() {
        for good in ["default", "team-a", "acme_2", "0"] {
            assert_eq!(check_tenant(good), Ok(()), "{good}");
        }
        let long = "a".repeat(MAX_TENANT_LEN + 1);
        for bad in [
            "", "..", ".", "a/b", "a\\b", "-a", "_a", "Team", "a b", "wal", "notify", "spill", "é",
            "a\0", &long,
        ] {
            assert!(check_tenant(bad).is_err(), "{bad:?} accepted");
        }
    }
}
