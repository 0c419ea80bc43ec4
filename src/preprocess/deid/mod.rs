//! De-identification per DICOM PS3.15 Annex E, Basic Application Level Confidentiality
//! Profile, with the options Retain Longitudinal Temporal Information with Modified Dates,
//! Retain Patient Characteristics, Retain Device Identity and Clean Descriptors.
//!
//! Owns: the generated Table E.1-1 ([`table`], from `scripts/gen_deid_table.py`), the actions
//! and their recursive application ([`actions`]), keyed UID replacement ([`uid`]), per-patient
//! date shifts ([`dates`]), burned-in annotation detection and masking ([`burned_in`]), and the
//! de-identified object's attributes and file meta group.
//! Must not: read the configuration file (it receives mask rules), keep a mapping table, or
//! write anywhere but the output folder it is given. Keys come from [`crate::security`].
//!
//! What is done, in order: burned-in check (flagged images are left out unless a mask rule
//! covers them); every attribute of the data set, recursively through sequences, gets its
//! Table E.1-1 action under the chosen options (attributes outside the table are kept, private
//! attributes removed); Patient Identity Removed, De-identification Method and its code
//! sequence, and Longitudinal Temporal Information Modified are set; masking if a rule applies;
//! a fresh file meta group (Media Storage SOP Instance UID = the new SOP Instance UID).

pub mod actions;
pub mod burned_in;
pub mod dates;
#[rustfmt::skip]
pub mod table;
pub mod uid;

use std::path::{Path, PathBuf};

use dicom_core::header::Header;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{DefaultDicomObject, OpenFileOptions};

pub use actions::{Action, Options};

use crate::config::MaskRule;
use crate::dicom::instance::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};
use crate::security::Secret;

#[derive(Debug, thiserror::Error)]
pub enum DeidError {
    #[error("not a readable DICOM Part 10 file: {0}")]
    Read(String),
    #[error("lacks {0}")]
    Missing(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot mask burned-in annotation: {0}")]
    Mask(String),
    #[error("cannot write the de-identified file: {0}")]
    Write(String),
}

/// The result of de-identifying one object.
#[derive(Debug)]
pub enum Verdict {
    /// De-identified (and masked, when `masked`), ready to write.
    Ready { object: Box<DefaultDicomObject>, sop_uid: String, masked: bool },
    /// Likely to hold identifiers in its pixels and no mask rule covers it: leave it out.
    Flagged(String),
}

/// What one input file became.
#[derive(Debug)]
pub enum Outcome {
    Written { path: PathBuf, masked: bool },
    Flagged(String),
}

/// De-identifies objects with one secret, one set of options and one set of mask rules.
pub struct Deidentifier {
    secret: Secret,
    options: Options,
    masks: Vec<MaskRule>,
}

/// PS3.16 CID 7050 code of the Basic Profile and of each option, with meaning and LO text.
const CODES: [(&str, &str); 5] = [
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
    ("113109", "Retain Device Identity Option"),
    ("113105", "Clean Descriptors Option"),
];

/// Tags whose values are identifiers that Clean Descriptors redacts from free text.
const IDENTIFIERS: [Tag; 15] = [
    tags::PATIENT_ID,
    Tag(0x0010, 0x1000), // Other Patient IDs (retired)
    tags::ISSUER_OF_PATIENT_ID,
    tags::ACCESSION_NUMBER,
    tags::STUDY_ID,
    tags::INSTITUTION_NAME,
    tags::INSTITUTION_ADDRESS,
    tags::INSTITUTIONAL_DEPARTMENT_NAME,
    tags::PATIENT_ADDRESS,
    tags::PATIENT_TELEPHONE_NUMBERS,
    Tag(0x0010, 0x1090), // Medical Record Locator (retired)
    tags::STATION_NAME,
    tags::DEVICE_SERIAL_NUMBER,
    tags::REFERRING_PHYSICIAN_ADDRESS,
    tags::MILITARY_RANK,
];

impl Deidentifier {
    pub fn new(secret: Secret, options: Options, masks: Vec<MaskRule>) -> Deidentifier {
        Deidentifier { secret, options, masks }
    }

    /// Reads a Part 10 file. Truncated or malformed files are errors, never panics.
    pub fn read(path: &Path) -> Result<DefaultDicomObject, DeidError> {
        OpenFileOptions::new().open_file(path).map_err(|e| DeidError::Read(e.to_string()))
    }

    /// De-identifies `obj` (see the module documentation for the steps).
    pub fn deidentify(&self, mut obj: DefaultDicomObject) -> Result<Verdict, DeidError> {
        let sop_class = str_of(&obj, tags::SOP_CLASS_UID).ok_or(DeidError::Missing("SOP Class UID"))?;
        let old_sop = str_of(&obj, tags::SOP_INSTANCE_UID).ok_or(DeidError::Missing("SOP Instance UID"))?;
        if !uid::is_valid_uid(&sop_class) {
            return Err(DeidError::Invalid(format!("SOP Class UID `{sop_class}` is not a valid UID")));
        }
        let rule = match burned_in::assess(&obj) {
            Some(reason) => match burned_in::find_rule(&obj, &self.masks) {
                Some(rule) => Some(rule),
                None => return Ok(Verdict::Flagged(format!("{reason}; no [[deid.masks]] rule covers it"))),
            },
            None => None,
        };

        let shift = self.options.long_modified_dates.then(|| dates::shift_days(&self.secret, &patient_key(&obj)));
        let ctx = actions::Ctx { secret: &self.secret, opts: self.options, shift, known: known_identifiers(&obj) };
        {
            let data: &mut InMemDicomObject = &mut obj;
            actions::process(data, &ctx, actions::Mode::Profile);
            self.mark(data, shift.is_some());
            // A SOP Class UID that arrived as UN leaves as UI.
            data.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, sop_class.as_str()));
        }
        let masked = match rule {
            Some(rule) => {
                burned_in::mask(&mut obj, rule)?;
                true
            }
            None => false,
        };

        let sop_uid = uid::replace_uid(&self.secret, &old_sop);
        let ts = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']).to_string();
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(sop_class)
            .media_storage_sop_instance_uid(sop_uid.as_str())
            .transfer_syntax(ts)
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
            .build()
            .map_err(|e| DeidError::Write(format!("file meta: {e}")))?;
        let object = Box::new(obj.into_inner().with_exact_meta(meta));
        Ok(Verdict::Ready { object, sop_uid, masked })
    }

    /// Reads `input`, de-identifies it and writes `<out_dir>/<new SOP Instance UID>.dcm`
    /// (through a temporary file, fsynced, then renamed).
    pub fn process_file(&self, input: &Path, out_dir: &Path) -> Result<Outcome, DeidError> {
        let obj = Self::read(input)?;
        match self.deidentify(obj)? {
            Verdict::Flagged(reason) => Ok(Outcome::Flagged(reason)),
            Verdict::Ready { object, sop_uid, masked } => {
                let path = out_dir.join(format!("{sop_uid}.dcm"));
                write_durably(&object, &path)?;
                Ok(Outcome::Written { path, masked })
            }
        }
    }

    /// Patient Identity Removed, De-identification Method (and code sequence), Longitudinal
    /// Temporal Information Modified.
    fn mark(&self, obj: &mut InMemDicomObject, shifted: bool) {
        obj.put(DataElement::new(tags::PATIENT_IDENTITY_REMOVED, VR::CS, "YES"));
        let o = self.options;
        let used: Vec<&(&str, &str)> = CODES
            .iter()
            .zip([true, o.long_modified_dates, o.patient_characteristics, o.device_identity, o.clean_descriptors])
            .filter_map(|(c, on)| on.then_some(c))
            .collect();
        let method: Vec<String> = std::iter::once(format!("Lucent PS3.15 E.1-1 ({})", table::EDITION))
            .chain(used.iter().map(|(_, meaning)| meaning.chars().take(64).collect()))
            .collect();
        obj.put(DataElement::new(
            tags::DEIDENTIFICATION_METHOD,
            VR::LO,
            PrimitiveValue::Strs(method.into_iter().collect()),
        ));
        let items: Vec<InMemDicomObject> = used
            .iter()
            .map(|(code, meaning)| {
                InMemDicomObject::from_element_iter([
                    DataElement::new(tags::CODE_VALUE, VR::SH, *code),
                    DataElement::new(tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
                    DataElement::new(tags::CODE_MEANING, VR::LO, *meaning),
                ])
            })
            .collect();
        obj.put(DataElement::new(
            tags::DEIDENTIFICATION_METHOD_CODE_SEQUENCE,
            VR::SQ,
            DataSetSequence::new(items, Length::UNDEFINED),
        ));
        let ltim = if shifted { "MODIFIED" } else { "REMOVED" };
        obj.put(DataElement::new(tags::LONGITUDINAL_TEMPORAL_INFORMATION_MODIFIED, VR::CS, ltim));
    }
}

fn str_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let values = actions::strings(obj.get(tag)?);
    Some(values.join("\\").trim().to_string()).filter(|s| !s.is_empty())
}

/// What identifies the patient for the date shift: Patient ID with its issuer; without an ID,
/// the name and birth date; without those, the study (so at least one study stays coherent).
fn patient_key(obj: &InMemDicomObject) -> String {
    let get = |t| str_of(obj, t).unwrap_or_default();
    match str_of(obj, tags::PATIENT_ID) {
        Some(id) => format!("id\0{id}\0{}", get(tags::ISSUER_OF_PATIENT_ID)),
        None if str_of(obj, tags::PATIENT_NAME).is_some() => {
            format!("name\0{}\0{}", get(tags::PATIENT_NAME), get(tags::PATIENT_BIRTH_DATE))
        }
        None => format!("study\0{}", get(tags::STUDY_INSTANCE_UID)),
    }
}

/// Identifying strings of the data set, lower case: every person name (whole and its parts of
/// three or more characters) anywhere in it, and the values of [`IDENTIFIERS`] and their words.
fn known_identifiers(obj: &InMemDicomObject) -> Vec<String> {
    let mut out = Vec::new();
    let mut add = |s: &str| {
        let s: String = s.trim().chars().map(actions::fold_char).collect();
        let words = s.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() >= 3).map(str::to_string);
        let words: Vec<String> = words.collect();
        if s.len() >= 3 {
            out.push(s.clone());
        }
        out.extend(words);
    };
    fn walk(obj: &InMemDicomObject, add: &mut dyn FnMut(&str)) {
        for e in obj.iter() {
            if e.vr() == VR::SQ {
                for item in e.items().unwrap_or(&[]) {
                    walk(item, add);
                }
            } else if e.vr() == VR::PN || IDENTIFIERS.contains(&e.tag()) {
                if let Ok(values) = e.to_multi_str() {
                    values.iter().for_each(|v| add(v));
                }
            }
        }
    }
    walk(obj, &mut add);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

fn write_durably(obj: &DefaultDicomObject, path: &Path) -> Result<(), DeidError> {
    let werr = |e: &dyn std::fmt::Display| DeidError::Write(format!("{}: {e}", path.display()));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let result = (|| -> Result<(), DeidError> {
        let file = std::fs::File::create(&tmp).map_err(|e| werr(&e))?;
        let mut w = std::io::BufWriter::new(file);
        obj.write_all(&mut w).map_err(|e| werr(&e))?;
        let file = w.into_inner().map_err(|e| werr(&e))?;
        file.sync_all().map_err(|e| werr(&e))?;
        std::fs::rename(&tmp, path).map_err(|e| werr(&e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
