//! The actions of Table E.1-1 and their application to a data set, recursively.
//!
//! Combined actions (PS3.15 E.1.1) depend on the attribute's type in the IOD, which Lucent does
//! not model. For an attribute that is present we take the member that keeps the object
//! conformant whatever that type is, and never the original value:
//! - `X/Z` → `Z` (an empty value is legal for Type 2 and Type 3);
//! - `X/D`, `Z/D`, `X/Z/D` → `D` (a dummy value is legal for Type 1, 2 and 3);
//! - `X/Z/U*` (reference sequences) → keep the sequence and process its items, which replaces
//!   the UIDs inside them (`U`) and applies the table to everything else in them.
//!
//! When several enabled options name an attribute, `C` wins over `K` (the stricter one).

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_object::mem::{InMemDicomObject, InMemElement};

use super::table::{Entry, EXACT, PATTERNS};
use super::{dates, uid};
use crate::security::Secret;

/// A Basic Profile action as written in Table E.1-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basic {
    D,
    Z,
    X,
    K,
    C,
    U,
    ZD,
    XZ,
    XD,
    XZD,
    XZU,
}

/// What is done to one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Keep,
    Remove,
    /// Zero-length value (an empty sequence for SQ).
    Empty,
    /// A dummy value of the same VR; for SQ, every value inside is replaced too.
    Dummy,
    /// Consistent keyed-hash UID replacement.
    Uid,
    /// Clean a descriptor (see [`clean_text`]); for SQ, every text value inside is cleaned.
    Clean,
    /// Shift a DA/DT by the patient's date shift (TM is unchanged by a whole-day shift).
    Shift,
    /// Keep a reference sequence and process its items.
    Items,
}

impl Basic {
    /// The action for an attribute that is present, under the Basic Profile alone.
    pub fn resolve(self) -> Action {
        match self {
            Basic::D | Basic::XD | Basic::ZD | Basic::XZD => Action::Dummy,
            Basic::Z | Basic::XZ => Action::Empty,
            Basic::X => Action::Remove,
            Basic::K => Action::Keep,
            Basic::C => Action::Clean,
            Basic::U => Action::Uid,
            Basic::XZU => Action::Items,
        }
    }
}

/// The profile options Lucent implements (columns of Table E.1-1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Retain Longitudinal Temporal Information with Modified Dates (column `rtnLongModifDatesOpt`).
    pub long_modified_dates: bool,
    /// Retain Patient Characteristics (`rtnPatCharsOpt`).
    pub patient_characteristics: bool,
    /// Retain Device Identity (`rtnDevIdOpt`).
    pub device_identity: bool,
    /// Clean Descriptors (`cleanDescOpt`).
    pub clean_descriptors: bool,
}

const COL_LONG_MODIF: usize = 1;
const COL_PAT_CHARS: usize = 2;
const COL_DEV_ID: usize = 3;
const COL_CLEAN_DESC: usize = 4;

/// The Table E.1-1 row for `tag`, if any (private tags match the "Private Attributes" row).
pub fn lookup(tag: Tag) -> Option<&'static Entry> {
    let key = (tag.group(), tag.element());
    if let Ok(i) = EXACT.binary_search_by_key(&key, |e| (e.group, e.element)) {
        return Some(&EXACT[i]);
    }
    PATTERNS.iter().find(|e| tag.group() & e.group_mask == e.group && tag.element() & e.element_mask == e.element)
}

/// The action for a present attribute with row `entry` under `opts`.
pub fn effective(entry: &Entry, opts: &Options) -> Action {
    let col = |i: usize| entry.opts.as_bytes().get(i).copied().unwrap_or(b'-');
    let mut keep = false;
    let mut clean = None;
    for (on, i) in [
        (opts.long_modified_dates, COL_LONG_MODIF),
        (opts.patient_characteristics, COL_PAT_CHARS),
        (opts.device_identity, COL_DEV_ID),
        (opts.clean_descriptors, COL_CLEAN_DESC),
    ] {
        if !on {
            continue;
        }
        match col(i) {
            b'K' => keep = true,
            b'C' if i == COL_LONG_MODIF => clean = Some(Action::Shift),
            b'C' => clean = clean.or(Some(Action::Clean)),
            _ => {}
        }
    }
    match (clean, keep) {
        (Some(a), _) => a,
        (None, true) => Action::Keep,
        (None, false) => entry.basic.resolve(),
    }
}

/// How attributes that are not in the table are treated while walking a data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Top level, or inside a kept sequence: attributes outside the table are kept.
    Profile,
    /// Inside a sequence being replaced by a dummy: every text, date and UID is replaced.
    Dummy,
    /// Inside a sequence being cleaned: every text is cleaned, names replaced.
    Clean,
}

/// Everything the walk needs besides the data set.
pub struct Ctx<'a> {
    pub secret: &'a Secret,
    pub opts: Options,
    /// The patient's date shift in days, when dates are shifted.
    pub shift: Option<i64>,
    /// Identifying strings of this data set (lower case), redacted by [`clean_text`].
    pub known: Vec<String>,
}

/// The dummy text written for `D` on text attributes.
pub const DUMMY_TEXT: &str = "ANONYMIZED";

/// Applies the profile to every attribute of `obj`, recursively.
pub fn process(obj: &mut InMemDicomObject, ctx: &Ctx, mode: Mode) {
    let tags: Vec<Tag> = obj.tags().collect();
    for tag in tags {
        if let Some(elem) = obj.take(tag) {
            if let Some(new) = apply(elem, ctx, mode) {
                obj.put(new);
            }
        }
    }
}

fn apply(elem: InMemElement, ctx: &Ctx, mode: Mode) -> Option<InMemElement> {
    let tag = elem.tag();
    let vr = elem.vr();
    // Private attributes (odd groups), group lengths, and stray command/meta elements go.
    if tag.group() % 2 == 1 || tag.element() == 0 || tag.group() <= 0x0002 {
        return None;
    }
    if tag == dicom_dictionary_std::tags::PIXEL_DATA {
        return Some(elem);
    }
    let action = match lookup(tag) {
        Some(e) => effective(e, &ctx.opts),
        None => outside_table(vr, mode, &elem),
    };
    // An empty value hides nothing: it stays empty rather than gaining an invented dummy.
    let empty = elem.value().primitive().is_some_and(|p| p.calculate_byte_len() == 0);
    if empty && action != Action::Remove {
        return Some(DataElement::empty(tag, vr));
    }
    match action {
        Action::Keep => recurse(elem, ctx, mode),
        Action::Remove => None,
        Action::Empty if vr == VR::SQ => Some(seq(tag, Vec::new())),
        Action::Empty => Some(DataElement::empty(tag, vr)),
        Action::Dummy if vr == VR::SQ => recurse(elem, ctx, Mode::Dummy),
        Action::Dummy => Some(dummy(&elem, ctx)),
        Action::Uid => replace_uids(elem, ctx),
        Action::Clean => clean(elem, ctx),
        Action::Shift => shift(elem, ctx),
        Action::Items if vr == VR::SQ => recurse(elem, ctx, Mode::Profile),
        Action::Items => Some(DataElement::empty(tag, vr)),
    }
}

fn is_text(vr: VR) -> bool {
    matches!(vr, VR::AE | VR::AS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UT | VR::UR)
}

fn outside_table(vr: VR, mode: Mode, elem: &InMemElement) -> Action {
    match mode {
        Mode::Profile => Action::Keep,
        _ if vr == VR::SQ => Action::Keep,
        Mode::Dummy if is_text(vr) || matches!(vr, VR::DA | VR::DT | VR::TM) => Action::Dummy,
        Mode::Clean if vr == VR::PN => Action::Dummy,
        Mode::Clean if is_text(vr) => Action::Clean,
        Mode::Clean if matches!(vr, VR::DA | VR::DT) => Action::Shift,
        _ if vr == VR::UI => {
            // Registered DICOM UIDs (SOP classes, coding schemes) identify nobody.
            let registered = elem.to_str().map(|s| s.trim().starts_with("1.2.840.10008.")).unwrap_or(false);
            if registered {
                Action::Keep
            } else {
                Action::Uid
            }
        }
        _ => Action::Keep,
    }
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::new(items, Length::UNDEFINED))
}

/// Processes a sequence's items in `mode`; other values pass through.
fn recurse(elem: InMemElement, ctx: &Ctx, mode: Mode) -> Option<InMemElement> {
    let tag = elem.tag();
    match elem.into_parts() {
        (_, Value::Sequence(s)) => {
            let mut items: Vec<InMemDicomObject> = s.into_items().into_iter().collect();
            for item in &mut items {
                process(item, ctx, mode);
            }
            Some(seq(tag, items))
        }
        (header, value) => Some(DataElement::new(header.tag, header.vr, value)),
    }
}

/// The values of a text element; an element read as bytes (VR UN, e.g. from implicit VR with an
/// unknown tag or a file that wrote UN) is decoded as ASCII text.
pub fn strings(elem: &InMemElement) -> Vec<String> {
    match elem.value().primitive() {
        Some(PrimitiveValue::U8(bytes)) => String::from_utf8_lossy(bytes)
            .trim_end_matches(['\0', ' '])
            .split('\\')
            .map(|v| v.trim_end_matches(['\0', ' ']).to_string())
            .collect(),
        _ => elem.to_multi_str().map(|v| v.to_vec()).unwrap_or_default(),
    }
}

fn text(tag: Tag, vr: VR, values: Vec<String>) -> InMemElement {
    if values.is_empty() {
        return DataElement::empty(tag, vr);
    }
    DataElement::new(tag, vr, PrimitiveValue::Strs(values.into_iter().collect()))
}

/// A dummy value of the element's VR (non-empty, so Type 1 stays satisfied).
fn dummy(elem: &InMemElement, ctx: &Ctx) -> InMemElement {
    let (tag, vr) = (elem.tag(), elem.vr());
    if tag == dicom_dictionary_std::tags::PATIENT_ID {
        // A keyed pseudonym keeps the files of one patient together without revealing the ID.
        let id = elem.to_str().map(|s| s.trim().to_string()).unwrap_or_default();
        let mac = ctx.secret.derive("lucent/deid/patient-id/v1", id.as_bytes());
        let hex: String = mac[..8].iter().map(|b| format!("{b:02X}")).collect();
        return text(tag, vr, vec![format!("LUCENT-{hex}")]);
    }
    let s = |v: &str| text(tag, vr, vec![v.to_string()]);
    match vr {
        VR::DA => s("19000101"),
        VR::DT => s("19000101000000"),
        VR::TM => s("000000"),
        VR::AS => s("000D"),
        VR::DS | VR::IS => s("0"),
        VR::CS => s(DUMMY_TEXT),
        VR::UI => {
            let v = strings(elem);
            let first = v.first().map(String::as_str).unwrap_or("");
            s(&uid::replace_uid(ctx.secret, first))
        }
        VR::US => DataElement::new(tag, vr, PrimitiveValue::from(0u16)),
        VR::SS => DataElement::new(tag, vr, PrimitiveValue::from(0i16)),
        VR::UL | VR::OL => DataElement::new(tag, vr, PrimitiveValue::from(0u32)),
        VR::SL => DataElement::new(tag, vr, PrimitiveValue::from(0i32)),
        VR::UV | VR::OV => DataElement::new(tag, vr, PrimitiveValue::from(0u64)),
        VR::SV => DataElement::new(tag, vr, PrimitiveValue::from(0i64)),
        VR::FL | VR::OF => DataElement::new(tag, vr, PrimitiveValue::from(0f32)),
        VR::FD | VR::OD => DataElement::new(tag, vr, PrimitiveValue::from(0f64)),
        VR::AT => DataElement::new(tag, vr, PrimitiveValue::Tags([Tag(0, 0)].into_iter().collect())),
        VR::OW => DataElement::new(tag, vr, PrimitiveValue::from(0u16)),
        VR::OB | VR::UN => DataElement::new(tag, vr, PrimitiveValue::U8([0u8, 0].into_iter().collect())),
        _ => s(DUMMY_TEXT),
    }
}

fn replace_uids(elem: InMemElement, ctx: &Ctx) -> Option<InMemElement> {
    let (tag, vr) = (elem.tag(), elem.vr());
    if vr == VR::SQ {
        return recurse(elem, ctx, Mode::Profile);
    }
    let values = strings(&elem);
    if values.is_empty() && elem.value().primitive().is_none_or(|p| p.calculate_byte_len() != 0) {
        return None; // not readable as text: drop it rather than keep an identifier
    }
    let mapped: Vec<String> = values
        .iter()
        .map(|u| u.trim_end_matches(['\0', ' ']))
        .filter(|u| !u.is_empty())
        .map(|u| uid::replace_uid(ctx.secret, u))
        .collect();
    Some(text(tag, if vr == VR::UN { VR::UI } else { vr }, mapped))
}

fn clean(elem: InMemElement, ctx: &Ctx) -> Option<InMemElement> {
    let (tag, vr) = (elem.tag(), elem.vr());
    match vr {
        VR::SQ => recurse(elem, ctx, Mode::Clean),
        VR::PN => Some(dummy(&elem, ctx)),
        VR::DA | VR::DT => shift(elem, ctx),
        _ if is_text(vr) => {
            let values = strings(&elem).iter().map(|v| clean_text(v, &ctx.known)).collect();
            Some(text(tag, vr, values))
        }
        _ => Some(elem),
    }
}

fn shift(elem: InMemElement, ctx: &Ctx) -> Option<InMemElement> {
    let (tag, vr) = (elem.tag(), elem.vr());
    let Some(days) = ctx.shift else {
        return Some(dummy(&elem, ctx));
    };
    let f: fn(&str, i64) -> Option<String> = match vr {
        VR::DA => dates::shift_da,
        VR::DT => dates::shift_dt,
        VR::TM => return Some(elem),
        VR::SQ => return recurse(elem, ctx, Mode::Profile),
        _ => return clean(elem, ctx),
    };
    let values: Option<Vec<String>> =
        strings(&elem).iter().filter(|v| !v.trim().is_empty()).map(|v| f(v, days)).collect();
    match values {
        Some(v) => Some(text(tag, vr, v)),
        None => Some(dummy(&elem, ctx)), // not a date we can shift: do not keep it
    }
}

/// Clean Descriptors, as Lucent does it: every occurrence (case-insensitive) of an identifying
/// string of the same data set (names and their parts, IDs, accession and study numbers,
/// institution, station and address values) becomes `*`, and so does every run of two or more
/// digits (dates, ages, phone and record numbers). Free text naming someone who appears nowhere
/// else in the header survives: this cannot prove a descriptor free of PHI.
pub fn clean_text(value: &str, known: &[String]) -> String {
    let chars: Vec<char> = value.chars().collect();
    let folded: Vec<char> = chars.iter().map(|&c| fold_char(c)).collect();
    let mut redact = vec![false; chars.len()];
    for k in known {
        let k: Vec<char> = k.chars().collect();
        if k.len() < 3 || k.len() > folded.len() {
            continue;
        }
        for start in 0..=folded.len() - k.len() {
            if folded[start..start + k.len()] == k[..] {
                redact[start..start + k.len()].iter_mut().for_each(|r| *r = true);
            }
        }
    }
    // Digit runs of two or more.
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if i - start >= 2 {
            redact[start..i].iter_mut().for_each(|r| *r = true);
        }
        i = i.max(start + 1);
    }
    let mut out = String::with_capacity(value.len());
    for (j, &c) in chars.iter().enumerate() {
        if !redact[j] {
            out.push(c);
        } else if j == 0 || !redact[j - 1] {
            out.push('*');
        }
    }
    out
}

/// Case folding one character to one character, so positions in folded text match the original.
pub fn fold_char(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::super::table::ROWS;
    use super::*;

    #[test]
    fn table_is_complete_sorted_and_unique() {
        assert_eq!(EXACT.len() + PATTERNS.len(), ROWS);
        assert!(EXACT.windows(2).all(|w| (w[0].group, w[0].element) < (w[1].group, w[1].element)));
        assert!(EXACT.iter().chain(PATTERNS.iter()).all(|e| e.opts.len() == 10));
    }

    #[test]
    fn lookup_exact_repeating_and_private() {
        assert_eq!(lookup(Tag(0x0010, 0x0010)).unwrap().name, "Patient's Name");
        assert_eq!(lookup(Tag(0x5002, 0x3000)).unwrap().name, "Curve Data");
        assert_eq!(lookup(Tag(0x6004, 0x3000)).unwrap().name, "Overlay Data");
        assert_eq!(lookup(Tag(0x0009, 0x1001)).unwrap().name, "Private Attributes");
        assert!(lookup(Tag(0x6000, 0x0010)).is_none()); // Overlay Rows is not in the table
        assert!(lookup(Tag(0x0028, 0x0010)).is_none()); // Rows
    }

    #[test]
    fn combined_actions_and_options() {
        let none = Options::default();
        let e = |g, el| lookup(Tag(g, el)).unwrap();
        assert_eq!(effective(e(0x0010, 0x0010), &none), Action::Empty); // Z
        assert_eq!(effective(e(0x0010, 0x0020), &none), Action::Dummy); // Z/D
        assert_eq!(effective(e(0x0008, 0x0080), &none), Action::Dummy); // X/Z/D
        assert_eq!(effective(e(0x0008, 0x1140), &none), Action::Items); // X/Z/U*
        assert_eq!(effective(e(0x0020, 0x000D), &none), Action::Uid);
        assert_eq!(effective(e(0x0010, 0x1010), &none), Action::Remove); // age: X
        let all = Options {
            long_modified_dates: true,
            patient_characteristics: true,
            device_identity: true,
            clean_descriptors: true,
        };
        assert_eq!(effective(e(0x0008, 0x0020), &all), Action::Shift); // study date
        assert_eq!(effective(e(0x0010, 0x1010), &all), Action::Keep); // age
        assert_eq!(effective(e(0x0018, 0x1000), &all), Action::Keep); // device serial
        assert_eq!(effective(e(0x0008, 0x1030), &all), Action::Clean); // study description
        assert_eq!(effective(e(0x0010, 0x2110), &all), Action::Clean); // allergies: C and C
        assert_eq!(effective(e(0x0010, 0x0010), &all), Action::Empty); // name stays Z
    }

    #[test]
    fn cleaning_redacts_known_identifiers_and_numbers() {
        let known = vec!["simpson".to_string(), "springfield".to_string()];
        assert_eq!(clean_text("CT BRAIN WO IVCON", &known), "CT BRAIN WO IVCON");
        assert_eq!(clean_text("Simpson seen at Springfield 2023-01-05", &known), "* seen at * *-*-*");
        assert_eq!(clean_text("SEQ 4.8 H31s", &known), "SEQ 4.8 H*s");
        assert_eq!(clean_text("Müller SIMPSONÉ", &["müller".into(), "simpson".into()]), "* *É");
    }
}
