//! Consistent UID replacement: `2.25.<decimal>` UIDs derived from the original UID by a keyed
//! hash (HMAC-SHA256 with the appliance secret), so that the same input always gives the same
//! output on one appliance and no mapping table has to be kept.

use crate::security::Secret;

const CONTEXT: &str = "lucent/deid/uid/v1";

/// The replacement for `uid`: 128 bits of HMAC-SHA256(secret, uid), shaped as an RFC 9562
/// version 8 (custom) UUID and written under the `2.25` arc (ISO/IEC 9834-8), at most 44
/// characters. Trailing NUL or space padding of the input is ignored.
pub fn replace_uid(secret: &Secret, uid: &str) -> String {
    let uid = uid.trim_end_matches(['\0', ' ']).trim();
    let mac = secret.derive(CONTEXT, uid.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&mac[..16]);
    b[6] = (b[6] & 0x0F) | 0x80; // version 8
    b[8] = (b[8] & 0x3F) | 0x80; // RFC 9562 variant
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// True for a syntactically valid UID (PS3.5 9.1): 1 to 64 characters, dot-separated
/// components of digits without leading zeros.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_input_same_output_valid_and_keyed() {
        let k = Secret::from_bytes(&[1; 32]);
        let a = replace_uid(&k, "1.2.840.113619.2.55.3");
        assert_eq!(a, replace_uid(&k, "1.2.840.113619.2.55.3\0"));
        assert!(a.starts_with("2.25.") && is_valid_uid(&a) && a.len() <= 44, "{a}");
        assert_ne!(a, replace_uid(&k, "1.2.840.113619.2.55.4"));
        assert_ne!(a, replace_uid(&Secret::from_bytes(&[2; 32]), "1.2.840.113619.2.55.3"));
    }

    #[test]
    fn uid_syntax() {
        assert!(is_valid_uid("1.2.840.10008.1.2"));
        assert!(is_valid_uid("2.25.0"));
        assert!(!is_valid_uid("1.02.3"));
        assert!(!is_valid_uid("1..2"));
        assert!(!is_valid_uid("1.2a"));
        assert!(!is_valid_uid(""));
    }
}
