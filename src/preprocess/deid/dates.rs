//! Retain Longitudinal Temporal Information with Modified Dates: every DA and DT value of a
//! patient moves back by the same whole number of days, derived from the patient's identity by
//! a keyed hash, so intervals between a patient's studies survive and files of one patient
//! agree without a lookup table. A whole-day shift leaves times of day unchanged, so TM values
//! stay as they are and DT keeps its time part and UTC offset.

use chrono::{Datelike, Duration, NaiveDate};

use crate::security::Secret;

const CONTEXT: &str = "lucent/deid/date-shift/v1";
/// Shifts are drawn from 1..=MAX_SHIFT_DAYS days into the past (about ten years).
pub const MAX_SHIFT_DAYS: u64 = 3652;

/// The shift, in days (negative: into the past), for the patient identified by `patient_key`
/// (Patient ID with its issuer, or a fallback the caller chooses).
pub fn shift_days(secret: &Secret, patient_key: &str) -> i64 {
    let mac = secret.derive(CONTEXT, patient_key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&mac[..8]);
    -((u64::from_be_bytes(b) % MAX_SHIFT_DAYS) as i64 + 1)
}

/// Shifts one DA value (`YYYYMMDD`, or the old `YYYY.MM.DD`). `None` when it is not a date.
pub fn shift_da(value: &str, days: i64) -> Option<String> {
    let v = value.trim();
    let digits: String = if v.len() == 10 && v.as_bytes()[4] == b'.' && v.as_bytes()[7] == b'.' {
        v.replace('.', "")
    } else {
        v.to_string()
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d = NaiveDate::parse_from_str(&digits, "%Y%m%d").ok()?;
    let s = d.checked_add_signed(Duration::days(days))?;
    (s.year() >= 0).then(|| s.format("%Y%m%d").to_string())
}

/// Shifts one DT value (`YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]`), keeping its precision, time
/// part and offset. A year-only or year-month value moves by the shift applied to its first
/// day, truncated back to the same precision. `None` when it is not a date-time.
pub fn shift_dt(value: &str, days: i64) -> Option<String> {
    let v = value.trim();
    if !v.is_ascii() {
        return None;
    }
    let (main, offset) = match v.find(['+', '-']) {
        Some(i) if i >= 4 => (&v[..i], &v[i..]),
        _ => (v, ""),
    };
    let date_len = main.len().min(8);
    let (date, rest) = main.split_at(date_len);
    if !matches!(date.len(), 4 | 6 | 8) || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match date.len() {
        4 => format!("{date}0101"),
        6 => format!("{date}01"),
        _ => date.to_string(),
    };
    let shifted = shift_da(&full, days)?;
    Some(format!("{}{rest}{offset}", &shifted[..date.len()]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_is_per_patient_consistent_and_nonzero() {
        let k = Secret::from_bytes(&[3; 32]);
        let a = shift_days(&k, "PAT1");
        assert_eq!(a, shift_days(&k, "PAT1"));
        assert!((-(MAX_SHIFT_DAYS as i64)..=-1).contains(&a), "{a}");
        let others: Vec<i64> = (0..20).map(|i| shift_days(&k, &format!("P{i}"))).collect();
        assert!(others.iter().any(|&d| d != a), "shifts should vary between patients");
    }

    #[test]
    fn dates_and_datetimes_shift_by_whole_days() {
        assert_eq!(shift_da("20230101", -1).as_deref(), Some("20221231"));
        assert_eq!(shift_da("2024.03.01", -1).as_deref(), Some("20240229"));
        assert_eq!(shift_da("2023011", -1), None);
        assert_eq!(shift_da("ABCDEFGH", -1), None);
        assert_eq!(shift_dt("20230101011721.621000", -1).as_deref(), Some("20221231011721.621000"));
        assert_eq!(shift_dt("20230101120000+0100", -2).as_deref(), Some("20221230120000+0100"));
        assert_eq!(shift_dt("2023", -1).as_deref(), Some("2022"));
        assert_eq!(shift_dt("202303", -1).as_deref(), Some("202302"));
        assert_eq!(shift_dt("20x3", -1), None);
        assert_eq!(shift_dt("2023010é", -1), None);
    }
}
