//! Roles and what each may do. The web route table names, for every route, the roles allowed
//! on it; this file defines the roles and the groups that route table uses.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Hospital IT: users, destinations, models, jobs, system. No patient data.
    Admin,
    /// Reads studies, edits and signs reports, records agreement with AI findings.
    Radiologist,
    /// Acquires studies: sees the worklist and images, checks arrivals; writes no reports.
    Technologist,
    /// Referring clinician: sees studies and signed reports.
    Referrer,
    /// Reviews who did what: system and model pages, read-only.
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Radiologist, Role::Technologist, Role::Referrer, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Radiologist => "radiologist",
            Role::Technologist => "technologist",
            Role::Referrer => "referrer",
            Role::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s.trim().to_ascii_lowercase()).ok_or_else(|| {
            format!(
                "unknown role `{s}`; roles are {}",
                Role::ALL.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )
        })
    }
}

/// Everyone with an account.
pub const ANY: &[Role] = &Role::ALL;
/// Staff who see patient images and studies.
pub const CLINICAL: &[Role] = &[Role::Radiologist, Role::Technologist, Role::Referrer];
/// Staff who write and sign reports and judge AI findings.
pub const READERS: &[Role] = &[Role::Radiologist];
/// Administration pages.
pub const ADMIN: &[Role] = &[Role::Admin];
/// System and model pages (read-only for auditors).
pub const OVERSIGHT: &[Role] = &[Role::Admin, Role::Auditor];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_is_explained() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert_eq!("Radiologist".parse::<Role>().unwrap(), Role::Radiologist);
        let e = "nurse".parse::<Role>().unwrap_err();
        assert!(e.contains("admin, radiologist, technologist, referrer, auditor"), "{e}");
    }
}
