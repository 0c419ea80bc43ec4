//! Association negotiation: turns an A-ASSOCIATE-RQ into an A-ASSOCIATE-AC or -RJ.
//! Pure functions of the request, the peer address and the settings, so they are unit-tested
//! without sockets.

use std::net::IpAddr;

use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::pdu::{
    AssociationAC, AssociationRJ, AssociationRJResult, AssociationRJServiceProviderASCEReason,
    AssociationRJServiceUserReason, AssociationRJSource, AssociationRQ, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem,
};

use super::instance::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
use super::sop_classes::STORAGE_SOP_CLASSES;

pub const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
pub const VERIFICATION: &str = "1.2.840.10008.1.1";

/// A calling AE allowed to associate, optionally only from some addresses.
#[derive(Debug, Clone)]
pub struct AllowedPeer {
    pub ae_title: String,
    /// `None`: from any address.
    pub addresses: Option<Vec<IpAddr>>,
}

/// What negotiation needs from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ae_title: String,
    pub check_called_ae: bool,
    /// Empty: anyone may associate.
    pub allowed_peers: Vec<AllowedPeer>,
    /// Our maximum P-DATA PDU length.
    pub max_pdu: u32,
}

/// An accepted presentation context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// The outcome of a successful negotiation.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub ac: AssociationAC,
    pub contexts: Vec<Accepted>,
    /// The peer's maximum PDU length (0: unlimited).
    pub peer_max_pdu: u32,
}

pub fn is_storage_sop_class(uid: &str) -> bool {
    STORAGE_SOP_CLASSES.binary_search_by(|(u, _)| (*u).cmp(uid)).is_ok()
}

fn transfer_syntax_supported(uid: &str) -> bool {
    TransferSyntaxRegistry.get(uid).is_some_and(|ts| ts.can_decode_dataset())
}

fn reject(result: AssociationRJResult, source: AssociationRJSource) -> AssociationRJ {
    AssociationRJ { result, source }
}

pub fn negotiate(rq: &AssociationRQ, peer: IpAddr, s: &Settings) -> Result<Negotiated, AssociationRJ> {
    use AssociationRJResult::Permanent;
    if rq.protocol_version & 1 == 0 {
        return Err(reject(
            Permanent,
            AssociationRJSource::ServiceProviderASCE(
                AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
            ),
        ));
    }
    if rq.application_context_name.trim_end_matches(['\0', ' ']) != APPLICATION_CONTEXT {
        return Err(reject(
            Permanent,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::ApplicationContextNameNotSupported),
        ));
    }
    if s.check_called_ae && rq.called_ae_title.trim() != s.ae_title.trim() {
        return Err(reject(
            Permanent,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::CalledAETitleNotRecognized),
        ));
    }
    let calling = rq.calling_ae_title.trim();
    if !s.allowed_peers.is_empty()
        && !s.allowed_peers.iter().any(|p| {
            p.ae_title == calling && p.addresses.as_ref().is_none_or(|a| a.iter().any(|ip| same_ip(*ip, peer)))
        })
    {
        return Err(reject(
            Permanent,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::CallingAETitleNotRecognized),
        ));
    }

    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut contexts = Vec::new();
    for pc in &rq.presentation_contexts {
        let abs = pc.abstract_syntax.trim_end_matches(['\0', ' ']);
        let (reason, ts) = if abs != VERIFICATION && !is_storage_sop_class(abs) {
            (PresentationContextResultReason::AbstractSyntaxNotSupported, None)
        } else {
            match pc
                .transfer_syntaxes
                .iter()
                .map(|t| t.trim_end_matches(['\0', ' ']))
                .find(|t| transfer_syntax_supported(t))
            {
                Some(ts) => (PresentationContextResultReason::Acceptance, Some(ts.to_string())),
                None => (PresentationContextResultReason::TransferSyntaxesNotSupported, None),
            }
        };
        if let Some(ts) = &ts {
            contexts.push(Accepted { id: pc.id, abstract_syntax: abs.to_string(), transfer_syntax: ts.clone() });
        }
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            // A rejected context still carries a transfer syntax field; its value is ignored.
            transfer_syntax: ts.unwrap_or_else(|| "1.2.840.10008.1.2".to_string()),
        });
    }
    let peer_max_pdu = rq
        .user_variables
        .iter()
        .find_map(|v| if let UserVariableItem::MaxLength(l) = v { Some(*l) } else { None })
        .unwrap_or(0);
    let ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT.to_string(),
        presentation_contexts: results,
        user_variables: vec![
            UserVariableItem::MaxLength(s.max_pdu),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
        ],
    };
    Ok(Negotiated { ac, contexts, peer_max_pdu })
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    canon(a) == canon(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PresentationContextProposed;

    fn rq(calling: &str, called: &str, contexts: Vec<(&str, Vec<&str>)>) -> AssociationRQ {
        AssociationRQ {
            protocol_version: 1,
            calling_ae_title: calling.into(),
            called_ae_title: called.into(),
            application_context_name: APPLICATION_CONTEXT.into(),
            presentation_contexts: contexts
                .into_iter()
                .enumerate()
                .map(|(i, (a, ts))| PresentationContextProposed {
                    id: (2 * i + 1) as u8,
                    abstract_syntax: a.into(),
                    transfer_syntaxes: ts.into_iter().map(String::from).collect(),
                })
                .collect(),
            user_variables: vec![UserVariableItem::MaxLength(16384)],
        }
    }

    fn settings(allowed: Vec<AllowedPeer>) -> Settings {
        Settings { ae_title: "LUCENT".into(), check_called_ae: true, allowed_peers: allowed, max_pdu: 65536 }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn accepts_storage_and_verification_with_first_supported_syntax() {
        let r = rq(
            "CT1",
            "LUCENT",
            vec![
                ("1.2.840.10008.5.1.4.1.1.2", vec!["1.2.3.4.5", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2"]),
                (VERIFICATION, vec!["1.2.840.10008.1.2"]),
                ("1.2.840.10008.5.1.4.1.2.2.1", vec!["1.2.840.10008.1.2"]), // C-FIND model: not offered
            ],
        );
        let n = negotiate(&r, LOCAL, &settings(vec![])).unwrap();
        assert_eq!(n.peer_max_pdu, 16384);
        assert_eq!(n.contexts.len(), 2);
        assert_eq!(n.contexts[0].transfer_syntax, "1.2.840.10008.1.2.4.70");
        assert_eq!(n.ac.presentation_contexts[2].reason, PresentationContextResultReason::AbstractSyntaxNotSupported);
    }

    #[test]
    fn accepts_every_common_transfer_syntax() {
        for ts in [
            "1.2.840.10008.1.2",       // implicit VR little endian
            "1.2.840.10008.1.2.1",     // explicit VR little endian
            "1.2.840.10008.1.2.2",     // explicit VR big endian (retired, still sent)
            "1.2.840.10008.1.2.1.99",  // deflated explicit VR little endian
            "1.2.840.10008.1.2.4.50",  // JPEG baseline
            "1.2.840.10008.1.2.4.51",  // JPEG extended
            "1.2.840.10008.1.2.4.57",  // JPEG lossless, process 14
            "1.2.840.10008.1.2.4.70",  // JPEG lossless SV1
            "1.2.840.10008.1.2.4.80",  // JPEG-LS lossless
            "1.2.840.10008.1.2.4.81",  // JPEG-LS near-lossless
            "1.2.840.10008.1.2.4.90",  // JPEG 2000 lossless
            "1.2.840.10008.1.2.4.91",  // JPEG 2000
            "1.2.840.10008.1.2.4.201", // HTJ2K lossless
            "1.2.840.10008.1.2.4.203", // HTJ2K
            "1.2.840.10008.1.2.5",     // RLE lossless
        ] {
            assert!(transfer_syntax_supported(ts), "{ts}");
        }
        assert!(!transfer_syntax_supported("1.2.3.4.5.6"));
    }

    #[test]
    fn knows_every_storage_class_of_the_standard() {
        assert!(STORAGE_SOP_CLASSES.len() > 150);
        for uid in ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.77.1.6", "1.2.840.10008.5.1.4.1.1.88.33"] {
            assert!(is_storage_sop_class(uid), "{uid}");
        }
        assert!(!is_storage_sop_class("1.2.840.10008.1.3.10"));
    }

    #[test]
    fn rejects_with_the_right_reasons() {
        let wrong_called = negotiate(&rq("CT1", "OTHER", vec![]), LOCAL, &settings(vec![])).unwrap_err();
        assert_eq!(
            wrong_called.source,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        );
        let allowed = vec![AllowedPeer { ae_title: "CT1".into(), addresses: Some(vec!["10.0.0.9".parse().unwrap()]) }];
        let not_listed = negotiate(&rq("MR1", "LUCENT", vec![]), LOCAL, &settings(allowed.clone())).unwrap_err();
        assert_eq!(
            not_listed.source,
            AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        );
        assert_eq!(not_listed.result, AssociationRJResult::Permanent);
        // Right AE, wrong host.
        assert!(negotiate(&rq("CT1", "LUCENT", vec![]), LOCAL, &settings(allowed.clone())).is_err());
        assert!(negotiate(&rq("CT1", "LUCENT", vec![]), "10.0.0.9".parse().unwrap(), &settings(allowed)).is_ok());
    }
}
