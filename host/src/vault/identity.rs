//! Whom Vault knows rotor's token as: what an audit trail records beside the operating-system
//! user.

use std::fmt;

use super::error::{VaultError, decode};

/// Whom Vault knows rotor's token as, from `auth/token/lookup-self`. Holds no secret (never the
/// token or its accessor); `Display` gives one line, e.g. `approle (AppRole role rotor-runner,
/// entity 5f1…, policies rotor-runner)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VaultIdentity {
    /// The token's display name (`token`, `approle`, `ldap-alice`, ...).
    pub display_name: String,
    /// The identity entity the token belongs to; `None` for tokens without one (root, orphans
    /// made by `token create`).
    pub entity_id: Option<String>,
    /// The AppRole role that logged in (the token's `role_name` metadata), if it came from AppRole.
    pub role_name: Option<String>,
    /// The token's policies.
    pub policies: Vec<String>,
}

impl VaultIdentity {
    /// From a lookup-self answer. Only the fields named here are read: the answer also holds the
    /// token itself (`id`), which is never kept.
    pub(super) fn from_lookup(route: &str, body: &[u8]) -> Result<VaultIdentity, VaultError> {
        #[derive(serde::Deserialize)]
        struct Lookup {
            data: Data,
        }
        #[derive(serde::Deserialize)]
        struct Data {
            #[serde(default)]
            display_name: Option<String>,
            #[serde(default)]
            entity_id: Option<String>,
            #[serde(default)]
            meta: Option<std::collections::BTreeMap<String, Option<String>>>,
            #[serde(default)]
            policies: Option<Vec<String>>,
        }
        let data = decode::<Lookup>(route, body)?.data;
        let clean = |text: String| -> Option<String> {
            let text: String = text.chars().filter(|c| !c.is_control()).collect();
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_owned())
        };
        Ok(VaultIdentity {
            display_name: data.display_name.and_then(clean).unwrap_or_else(|| "unnamed token".to_owned()),
            entity_id: data.entity_id.and_then(clean),
            role_name: data.meta.and_then(|mut meta| meta.remove("role_name")).flatten().and_then(clean),
            policies: data.policies.unwrap_or_default().into_iter().filter_map(clean).collect(),
        })
    }
}

impl fmt::Display for VaultIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(role) = &self.role_name {
            parts.push(format!("AppRole role {role}"));
        }
        if let Some(entity) = &self.entity_id {
            parts.push(format!("entity {entity}"));
        }
        if !self.policies.is_empty() {
            parts.push(format!("policies {}", self.policies.join(", ")));
        }
        f.write_str(&self.display_name)?;
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keeps_who_not_the_token() {
        let body = br#"{"data": {"id": "s.SECRETTOKEN", "accessor": "acc", "display_name": "approle",
            "entity_id": "f511535c", "meta": {"role_name": "rotor-runner"}, "policies": ["default", "rotor-runner"]}}"#;
        let identity = VaultIdentity::from_lookup("auth/token/lookup-self", body).unwrap();
        assert_eq!(
            identity.to_string(),
            "approle (AppRole role rotor-runner, entity f511535c, policies default, rotor-runner)"
        );
        assert!(!format!("{identity:?}").contains("SECRETTOKEN"));
        let root = br#"{"data": {"id": "root", "display_name": "token", "entity_id": "", "meta": null, "policies": ["root"]}}"#;
        let identity = VaultIdentity::from_lookup("auth/token/lookup-self", root).unwrap();
        assert_eq!((identity.entity_id.clone(), identity.role_name.clone()), (None, None));
        assert_eq!(identity.to_string(), "token (policies root)");
    }

    #[test]
    fn a_malformed_lookup_is_refused_without_quoting_it() {
        // serde_json's own message would quote the string: "invalid type: string \"hvs.LEAKED\"".
        let body = br#"{"data": {"id": "s.SECRETTOKEN", "policies": "hvs.LEAKED"}}"#;
        let err = VaultIdentity::from_lookup("auth/token/lookup-self", body).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, VaultError::Decode { .. }), "{text}");
        assert!(text.starts_with("unexpected response from Vault for auth/token/lookup-self"), "{text}");
        assert!(!text.contains("LEAKED") && !text.contains("SECRETTOKEN"), "{text}");
    }
}
