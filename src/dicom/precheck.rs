//! A bounded structural walk of an encoded data set, run before the full parser sees it.
//!
//! dicom-object trusts element lengths: a 674-byte file whose undefined-length UN element holds
//! garbage made it allocate 3.6 GB and spend 90 s before failing. This walk checks, without
//! allocating, that every element header fits, that every defined length fits inside its
//! enclosing value, that undefined lengths appear only where the standard allows them (SQ, UN,
//! encapsulated Pixel Data, items), and that nesting stays shallow. Only a data set that passes
//! is handed to the parser, so a hostile or broken one costs time linear in its size.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const MAX_DEPTH: usize = 32;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQUENCE_END: (u16, u16) = (0xFFFE, 0xE0DD);

/// How the data set is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub explicit_vr: bool,
    pub big_endian: bool,
}

/// Walks `data` and reports the first structural error, with its byte offset.
pub fn check(data: &[u8], enc: Encoding) -> Result<(), String> {
    let mut w = Walker { data, enc };
    let mut pos = 0;
    match w.elements(&mut pos, data.len(), 0, false)? {
        Stop::End => Ok(()),
        Stop::ItemEnd | Stop::SequenceEnd => Err(format!("stray delimiter at offset {pos}")),
    }
}

enum Stop {
    /// Reached the end of the enclosing defined length.
    End,
    ItemEnd,
    SequenceEnd,
}

struct Walker<'a> {
    data: &'a [u8],
    enc: Encoding,
}

impl Walker<'_> {
    fn u16_at(&self, pos: usize, be: bool) -> u16 {
        let b = [self.data[pos], self.data[pos + 1]];
        if be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn u32_at(&self, pos: usize, be: bool) -> u32 {
        let b = [self.data[pos], self.data[pos + 1], self.data[pos + 2], self.data[pos + 3]];
        if be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Elements from `pos` up to `end`; with `in_undefined_item`, until an Item Delimitation.
    fn elements(&mut self, pos: &mut usize, end: usize, depth: usize, implicit_un: bool) -> Result<Stop, String> {
        let explicit = self.enc.explicit_vr && !implicit_un;
        // Content of an undefined-length UN is implicit VR little endian (PS3.5 6.2.2).
        let be = self.enc.big_endian && !implicit_un;
        while *pos < end {
            let at = *pos;
            if end - at < 8 {
                return Err(format!("element header cut short at offset {at} (truncated)"));
            }
            let tag = (self.u16_at(at, be), self.u16_at(at + 2, be));
            if tag.0 == 0xFFFE {
                let len = self.u32_at(at + 4, be);
                *pos = at + 8;
                return match tag {
                    ITEM_END if len == 0 => Ok(Stop::ItemEnd),
                    SEQUENCE_END if len == 0 => Ok(Stop::SequenceEnd),
                    _ => Err(format!("unexpected item tag ({:04X},{:04X}) at offset {at}", tag.0, tag.1)),
                };
            }
            let (vr, len, header) = if explicit {
                let vr = VR::from_binary([self.data[at + 4], self.data[at + 5]])
                    .ok_or_else(|| format!("invalid VR at offset {at}"))?;
                if long_length(vr) {
                    if end - at < 12 {
                        return Err(format!("element header cut short at offset {at} (truncated)"));
                    }
                    (Some(vr), self.u32_at(at + 8, be), 12)
                } else {
                    (Some(vr), u32::from(self.u16_at(at + 6, be)), 8)
                }
            } else {
                (None, self.u32_at(at + 4, be), 8)
            };
            *pos = at + header;
            let vr = vr.or_else(|| dictionary_vr(Tag(tag.0, tag.1)));
            if len == UNDEFINED {
                match vr {
                    Some(VR::SQ) | None => self.sequence(pos, end, None, depth + 1, implicit_un)?,
                    // Well formed (CP-246: its content is implicit VR little endian), but
                    // dicom-object 0.10 takes it for a 4 GiB value and allocates it.
                    Some(VR::UN) => {
                        return Err(format!(
                            "element ({:04X},{:04X}) at offset {at} is UN with undefined length (CP-246), \
                             which this version cannot parse safely",
                            tag.0, tag.1
                        ))
                    }
                    Some(VR::OB | VR::OW) if tag == (0x7FE0, 0x0010) => self.fragments(pos, end)?,
                    Some(vr) => {
                        return Err(format!(
                            "undefined length on a {vr:?} element ({:04X},{:04X}) at offset {at}",
                            tag.0, tag.1
                        ))
                    }
                }
                continue;
            }
            let len = len as usize;
            if len > end - *pos {
                return Err(format!(
                    "element ({:04X},{:04X}) at offset {at} claims {len} bytes, {} remain (truncated or corrupt)",
                    tag.0,
                    tag.1,
                    end - *pos
                ));
            }
            if vr == Some(VR::SQ) && len > 0 {
                self.sequence(pos, *pos + len, Some(*pos + len), depth + 1, implicit_un)?;
            }
            *pos = at + header + len;
        }
        Ok(Stop::End)
    }

    /// Items of a sequence, up to `defined_end`, or until a Sequence Delimitation.
    fn sequence(
        &mut self,
        pos: &mut usize,
        end: usize,
        defined_end: Option<usize>,
        depth: usize,
        implicit_un: bool,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("sequences nested deeper than {MAX_DEPTH}"));
        }
        let be = self.enc.big_endian && !implicit_un;
        let end = defined_end.unwrap_or(end);
        loop {
            let at = *pos;
            if defined_end == Some(at) {
                return Ok(());
            }
            if end - at < 8 {
                return Err(format!("sequence item cut short at offset {at} (truncated)"));
            }
            let tag = (self.u16_at(at, be), self.u16_at(at + 2, be));
            let len = self.u32_at(at + 4, be);
            *pos = at + 8;
            match tag {
                SEQUENCE_END if defined_end.is_none() => return Ok(()),
                ITEM if len == UNDEFINED => match self.elements(pos, end, depth, implicit_un)? {
                    Stop::ItemEnd => {}
                    _ => return Err(format!("item at offset {at} has no delimiter")),
                },
                ITEM => {
                    let len = len as usize;
                    if len > end - *pos {
                        return Err(format!(
                            "item at offset {at} claims {len} bytes, {} remain (truncated or corrupt)",
                            end - *pos
                        ));
                    }
                    let item_end = *pos + len;
                    match self.elements(pos, item_end, depth, implicit_un)? {
                        Stop::End => {}
                        _ => return Err(format!("delimiter inside the defined-length item at offset {at}")),
                    }
                }
                _ => return Err(format!("expected an item at offset {at}, found ({:04X},{:04X})", tag.0, tag.1)),
            }
        }
    }

    /// The fragments of encapsulated Pixel Data, up to the Sequence Delimitation.
    fn fragments(&mut self, pos: &mut usize, end: usize) -> Result<(), String> {
        let be = self.enc.big_endian;
        loop {
            let at = *pos;
            if end - at < 8 {
                return Err(format!("pixel data fragment cut short at offset {at} (truncated)"));
            }
            let tag = (self.u16_at(at, be), self.u16_at(at + 2, be));
            let len = self.u32_at(at + 4, be) as usize;
            *pos = at + 8;
            match tag {
                SEQUENCE_END => return Ok(()),
                ITEM if len <= end - *pos => *pos += len,
                ITEM => {
                    return Err(format!(
                        "fragment at offset {at} claims {len} bytes, {} remain (truncated or corrupt)",
                        end - *pos
                    ))
                }
                _ => return Err(format!("expected a fragment at offset {at}")),
            }
        }
    }
}

fn long_length(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB
            | VR::OD
            | VR::OF
            | VR::OL
            | VR::OV
            | VR::OW
            | VR::SQ
            | VR::UC
            | VR::UN
            | VR::UR
            | VR::UT
            | VR::SV
            | VR::UV
    )
}

fn dictionary_vr(tag: Tag) -> Option<VR> {
    StandardDataDictionary.by_tag(tag).map(|e| e.vr().relaxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LE_EXPLICIT: Encoding = Encoding { explicit_vr: true, big_endian: false };
    const LE_IMPLICIT: Encoding = Encoding { explicit_vr: false, big_endian: false };

    fn explicit(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&tag.0.to_le_bytes());
        v.extend_from_slice(&tag.1.to_le_bytes());
        v.extend_from_slice(vr);
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        v.extend_from_slice(value);
        v
    }

    #[test]
    fn accepts_well_formed_and_nested_data() {
        let mut ds = explicit((0x0008, 0x0060), b"CS", b"CT");
        // An undefined-length sequence with one undefined-length item.
        ds.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
        ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        ds.extend(explicit((0x0008, 0x1155), b"UI", b"1.2\0"));
        ds.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        ds.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        ds.extend(explicit((0x0010, 0x0010), b"PN", b"DOE^J "));
        assert_eq!(check(&ds, LE_EXPLICIT), Ok(()));
    }

    #[test]
    fn rejects_lengths_that_overrun_and_stray_structure() {
        let mut ds = explicit((0x0010, 0x0010), b"PN", b"DOE^J ");
        ds.truncate(ds.len() - 2);
        assert!(check(&ds, LE_EXPLICIT).unwrap_err().contains("claims 6 bytes"));
        // Implicit VR with an absurd length.
        let ds = [0x10, 0x00, 0x10, 0x00, 0xF0, 0xFF, 0xFF, 0x7F, b'x'];
        assert!(check(&ds, LE_IMPLICIT).is_err());
        // An undefined length on a VR that cannot have one.
        let ds = [0x10, 0x00, 0x10, 0x00, b'U', b'T', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(check(&ds, LE_EXPLICIT).unwrap_err().contains("undefined length"));
        // A header cut short.
        assert!(check(&[0x10, 0x00, 0x10], LE_EXPLICIT).is_err());
        // Deep nesting of undefined-length sequences is bounded.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF]);
            deep.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        assert!(check(&deep, LE_EXPLICIT).unwrap_err().contains("deeper"));
    }
}
