//! Template-based report drafts: the study context and the AI findings put into the
//! structure radiologists use (clinical details, technique, findings, impression), with every
//! AI statement marked as such. The radiologist edits the draft; nothing here is final.

use crate::store::db::{Finding, StudyDetail};

/// Wording of a calibrated probability, so that a number is never read as certainty.
pub fn likelihood(p: f64) -> &'static str {
    match p {
        p if p >= 0.9 => "very likely",
        p if p >= 0.7 => "likely",
        p if p >= 0.3 => "possible",
        p if p >= 0.1 => "unlikely",
        _ => "very unlikely",
    }
}

/// A finding's sentence: "Pneumonia: likely (calibrated probability 0.82; model threshold
/// 0.37) [AI: classifier 1.0.0]".
pub fn finding_sentence(f: &Finding) -> String {
    let f = &f.result;
    format!(
        "{}: {} (calibrated probability {:.2}; model threshold {:.2}) [AI: {} {}]",
        f.label,
        likelihood(f.probability),
        f.probability,
        f.threshold,
        f.model_name,
        f.model_version
    )
}

/// The first draft of a study's report.
pub fn draft(study: &StudyDetail, findings: &[Finding]) -> String {
    let mut out = String::new();
    let modalities: Vec<&str> = {
        let mut m: Vec<&str> = study.series.iter().map(|s| s.modality.as_str()).filter(|m| !m.is_empty()).collect();
        m.dedup();
        m
    };
    let images: usize = study.series.iter().map(|s| s.instances.len()).sum();
    let what = if study.description.is_empty() { "Imaging study".to_string() } else { study.description.clone() };
    out.push_str(&format!("EXAMINATION: {what}"));
    if !modalities.is_empty() {
        out.push_str(&format!(" ({})", modalities.join(", ")));
    }
    if study.study_date.len() == 8 {
        let d = &study.study_date;
        out.push_str(&format!(", {}-{}-{}", &d[..4], &d[4..6], &d[6..]));
    }
    out.push_str(".\n\nCLINICAL DETAILS: \n\n");
    out.push_str(&format!(
        "TECHNIQUE: {} series, {} image{}.\n\nFINDINGS:\n",
        study.series.len(),
        images,
        if images == 1 { "" } else { "s" }
    ));
    let positive: Vec<&Finding> = findings.iter().filter(|f| f.result.probability >= f.result.threshold).collect();
    if findings.is_empty() {
        out.push_str("No AI analysis is available for this study.\n");
    } else {
        out.push_str("AI analysis (to be verified by the reporting radiologist):\n");
        for f in findings {
            out.push_str(&format!("- {}\n", finding_sentence(f)));
        }
    }
    out.push_str("\nIMPRESSION:\n");
    if findings.is_empty() {
        out.push('\n');
    } else if positive.is_empty() {
        out.push_str("No AI-flagged abnormality; radiologist review required.\n");
    } else {
        let labels: Vec<&str> = positive.iter().map(|f| f.result.label.as_str()).collect();
        out.push_str(&format!("AI flags: {}. Radiologist confirmation required.\n", labels.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::{NewFinding, SeriesDetail};

    fn study() -> StudyDetail {
        StudyDetail {
            study_uid: "1.2".into(),
            patient_name: "DOE^JANE".into(),
            patient_id: "P1".into(),
            birth_date: String::new(),
            sex: "F".into(),
            accession: "A1".into(),
            study_date: "20261204".into(),
            study_time: String::new(),
            description: "Chest PA".into(),
            referring_physician: String::new(),
            ai_status: "done".into(),
            ai_priority: 2,
            ai_detail: String::new(),
            series: vec![SeriesDetail {
                series_uid: "1.2.3".into(),
                modality: "DX".into(),
                number: Some(1),
                description: String::new(),
                body_part: "CHEST".into(),
                instances: vec![],
                enhanced: None,
            }],
        }
    }

    fn finding(p: f64) -> Finding {
        Finding {
            id: 1,
            result: NewFinding {
                sop_uid: "1.2.3.4".into(),
                model_name: "classifier".into(),
                model_version: "1.0.0".into(),
                label: "pneumonia".into(),
                probability: p,
                threshold: 0.37,
                ..Default::default()
            },
            created_at: String::new(),
            feedback: vec![],
        }
    }

    #[test]
    fn draft_states_context_and_marks_ai_statements() {
        let d = draft(&study(), &[finding(0.82)]);
        assert!(d.starts_with("EXAMINATION: Chest PA (DX), 2026-12-04."), "{d}");
        assert!(d.contains(
            "- pneumonia: likely (calibrated probability 0.82; model threshold 0.37) [AI: classifier 1.0.0]"
        ));
        assert!(d.contains("AI flags: pneumonia. Radiologist confirmation required."));
        let neg = draft(&study(), &[finding(0.05)]);
        assert!(neg.contains("very unlikely") && neg.contains("No AI-flagged abnormality"), "{neg}");
        assert!(draft(&study(), &[]).contains("No AI analysis is available"));
    }
}
