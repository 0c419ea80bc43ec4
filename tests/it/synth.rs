//! Synthetic but valid DICOM instances (CT Image Storage, Explicit VR Little Endian), for tests
//! and benchmarks. Shared with `benches/ingest.rs` through `#[path]`.

use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{meta::FileMetaTableBuilder, InMemDicomObject};

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// One synthetic CT study layout: `patients` × `per_patient` instances of `size`×`size` pixels.
pub struct Spec {
    pub patients: usize,
    pub per_patient: usize,
    pub size: u16,
    /// Distinguishes runs so that UIDs never collide across calls.
    pub run: u64,
}

/// Writes the instances into `dir` and returns their paths (patient-major order).
pub fn write_ct_series(dir: &Path, spec: &Spec) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let root = format!("2.25.{}", 1_000_000 + spec.run);
    let mut out = Vec::new();
    for p in 0..spec.patients {
        let study = format!("{root}.{p}.1");
        let series = format!("{root}.{p}.1.1");
        for i in 0..spec.per_patient {
            let sop = format!("{root}.{p}.1.1.{i}");
            let path = dir.join(format!("p{p:03}_i{i:04}.dcm"));
            ct_instance(&sop, &study, &series, &format!("PAT{p:03}"), i, spec.size).write_to_file(&path).unwrap();
            out.push(path);
        }
    }
    out
}

fn ct_instance(
    sop: &str,
    study: &str,
    series: &str,
    patient: &str,
    index: usize,
    size: u16,
) -> dicom_object::DefaultDicomObject {
    let n = size as usize * size as usize;
    // A deterministic, instance-specific pattern, so that mixed-up files would be noticed.
    let pixels: Vec<u16> = (0..n).map(|k| ((k * 31 + index * 977) % 4096) as u16).collect();
    let text = |tag, vr, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let obj = InMemDicomObject::from_element_iter([
        text(tags::SOP_CLASS_UID, VR::UI, CT_IMAGE_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, sop),
        text(tags::STUDY_DATE, VR::DA, "20260115"),
        text(tags::STUDY_TIME, VR::TM, "101500"),
        text(tags::ACCESSION_NUMBER, VR::SH, &format!("ACC{patient}")),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::STUDY_DESCRIPTION, VR::LO, "CT CHEST"),
        text(tags::PATIENT_NAME, VR::PN, &format!("Synthetic^{patient}")),
        text(tags::PATIENT_ID, VR::LO, patient),
        text(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101"),
        text(tags::PATIENT_SEX, VR::CS, "O"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, study),
        text(tags::SERIES_INSTANCE_UID, VR::UI, series),
        text(tags::SERIES_NUMBER, VR::IS, "1"),
        text(tags::INSTANCE_NUMBER, VR::IS, &(index + 1).to_string()),
        us(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, size),
        us(tags::COLUMNS, size),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, 12),
        us(tags::HIGH_BIT, 11),
        us(tags::PIXEL_REPRESENTATION, 0),
        text(tags::RESCALE_INTERCEPT, VR::DS, "-1024"),
        text(tags::RESCALE_SLOPE, VR::DS, "1"),
        DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::U16(pixels.into())),
    ]);
    obj.with_meta(
        FileMetaTableBuilder::new()
            .transfer_syntax(EXPLICIT_VR_LE)
            .media_storage_sop_class_uid(CT_IMAGE_STORAGE)
            .media_storage_sop_instance_uid(sop),
    )
    .unwrap()
}
