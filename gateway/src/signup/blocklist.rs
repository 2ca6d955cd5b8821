//! The personal-mail blocklist: the built-in data file (`gateway/data/personal-mail-domains.txt`)
//! plus `[signup] blocked_domains`. An entry is a domain (matched exactly, and its
//! subdomains) or a family `name.*` (every domain whose first label is `name`:
//! `hotmail.*` covers hotmail.com and hotmail.co.uk).

use std::collections::HashSet;

/// The built-in list.
const BUILT_IN: &str = include_str!("../../data/personal-mail-domains.txt");

/// Domains and families refused by the signup pipeline.
#[derive(Debug, Clone, Default)]
pub(crate) struct Blocklist {
    domains: HashSet<String>,
    families: HashSet<String>,
}

impl Blocklist {
    /// The built-in list plus `extra` (already validated by the config).
    pub(crate) fn new(extra: &[String]) -> Self {
        let mut list = Self::default();
        let built_in = BUILT_IN
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        for entry in built_in.chain(extra.iter().map(String::as_str)) {
            match entry.strip_suffix(".*") {
                Some(family) => list.families.insert(family.to_owned()),
                None => list.domains.insert(entry.to_owned()),
            };
        }
        list
    }

    /// The entry that blocks `domain` (lowercase), if any.
    pub(crate) fn blocks(&self, domain: &str) -> Option<String> {
        let first = domain.split('.').next().unwrap_or_default();
        if domain.contains('.') && self.families.contains(first) {
            return Some(format!("{first}.*"));
        }
        // The domain itself or any parent of it (a provider's regional subdomain).
        let mut rest = domain;
        loop {
            if self.domains.contains(rest) {
                return Some(rest.to_owned());
            }
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return None,
            }
        }
    }

    /// Number of entries.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.domains.len() + self.families.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_domains_are_matched_and_work_domains_pass() {
        let b = Blocklist::new(&["corp-mail.example".to_owned(), "mymail.*".to_owned()]);
        assert!(b.len() >= 40, "{}", b.len());
        for (d, entry) in [
            ("gmail.com", "gmail.com"),
            ("hotmail.co.uk", "hotmail.*"),
            ("yahoo.fr", "yahoo.*"),
            ("gmx.net", "gmx.*"),
            ("yandex.ru", "yandex.*"),
            ("eu.corp-mail.example", "corp-mail.example"),
            ("mymail.io", "mymail.*"),
        ] {
            assert_eq!(b.blocks(d).as_deref(), Some(entry), "{d}");
        }
        for d in ["acme.com", "gmail.acme.com", "mail.acme.de", "com"] {
            assert_eq!(b.blocks(d), None, "{d}");
        }
    }
}
