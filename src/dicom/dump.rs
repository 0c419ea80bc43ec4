//! A human-readable attribute listing of a Part 10 object, in the spirit of dcmdump:
//! one line per element (tag, VR, value, length, keyword), sequences indented.

use std::fmt::Write;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::HasLength;
use dicom_core::value::Value;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use dicom_object::mem::InMemDicomObject;
use dicom_object::DefaultDicomObject;

/// Longest value text shown before it is cut with "...".
const MAX_VALUE: usize = 64;

/// The listing: the file meta group, then the data set.
pub fn dump(obj: &DefaultDicomObject) -> String {
    let mut out = String::new();
    let m = obj.meta();
    out.push_str("# File meta information\n");
    let meta = [
        ((0x0002, 0x0001), "OB", "00\\01".to_string(), "FileMetaInformationVersion"),
        ((0x0002, 0x0002), "UI", m.media_storage_sop_class_uid().to_string(), "MediaStorageSOPClassUID"),
        ((0x0002, 0x0003), "UI", m.media_storage_sop_instance_uid().to_string(), "MediaStorageSOPInstanceUID"),
        ((0x0002, 0x0010), "UI", m.transfer_syntax().to_string(), "TransferSyntaxUID"),
        ((0x0002, 0x0012), "UI", m.implementation_class_uid().to_string(), "ImplementationClassUID"),
    ];
    for ((g, e), vr, v, name) in meta {
        let v = v.trim_end_matches(['\0', ' ']);
        let _ = writeln!(out, "({g:04X},{e:04X}) {vr} [{v}]{:pad$} # {name}", "", pad = 1);
    }
    out.push_str("\n# Data set\n");
    dump_object(obj, 0, &mut out);
    out
}

fn keyword(tag: Tag) -> &'static str {
    if tag.group() % 2 == 1 {
        return "(private)";
    }
    StandardDataDictionary.by_tag(tag).map(|e| e.alias()).unwrap_or("(unknown)")
}

fn dump_object(obj: &InMemDicomObject, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    for e in obj.iter() {
        let tag = e.header().tag;
        let vr = e.header().vr();
        let len = e.header().length();
        let len_text = if len.is_undefined() { "u/l".to_string() } else { len.0.to_string() };
        match e.value() {
            Value::Sequence(seq) => {
                let _ = writeln!(
                    out,
                    "{indent}({:04X},{:04X}) SQ ({} items) # {}, {}",
                    tag.group(),
                    tag.element(),
                    seq.items().len(),
                    len_text,
                    keyword(tag)
                );
                for (i, item) in seq.items().iter().enumerate() {
                    let _ = writeln!(out, "{indent}  (FFFE,E000) item {}", i + 1);
                    dump_object(item, depth + 2, out);
                }
            }
            Value::PixelSequence(px) => {
                let sizes: Vec<String> = px.fragments().iter().map(|f| f.len().to_string()).collect();
                let _ = writeln!(
                    out,
                    "{indent}({:04X},{:04X}) {} (encapsulated: {} offset table entries, {} fragments of {} bytes) # {}",
                    tag.group(),
                    tag.element(),
                    vr,
                    px.offset_table().len(),
                    sizes.len(),
                    sizes.join(", "),
                    keyword(tag)
                );
            }
            Value::Primitive(p) => {
                let text = if matches!(vr, VR::OB | VR::OW | VR::OF | VR::OD | VR::OL | VR::OV | VR::UN) {
                    format!("({} bytes)", p.to_bytes().len())
                } else {
                    let s = p.to_str();
                    let s = s.trim_end_matches(['\0', ' ']);
                    let s: String = s.chars().map(|c| if c.is_control() { '.' } else { c }).collect();
                    if s.chars().count() > MAX_VALUE {
                        format!("[{}...]", s.chars().take(MAX_VALUE).collect::<String>())
                    } else {
                        format!("[{s}]")
                    }
                };
                let _ = writeln!(
                    out,
                    "{indent}({:04X},{:04X}) {} {} # {}, {}",
                    tag.group(),
                    tag.element(),
                    vr,
                    text,
                    len_text,
                    keyword(tag)
                );
            }
        }
    }
}
