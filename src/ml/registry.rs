//! The model registry: cards and weights shipped inside the binary, plus versions imported
//! into `<data-dir>/models/`, and which version of each name is active.
//!
//! File-based on purpose (no SQL): `<data-dir>/models/<name>-<version>.toml` and `.bpk`, and
//! `<data-dir>/models/active.toml` mapping a name to its active version. Every load checks
//! the weights' sha256 against the card before the weights are used.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use super::card::ModelCard;
use super::infer::{load_nets, Classifier};
use super::MlError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_models.rs"));
}

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Weights and the validation predictions CSV, when shipped.
    Embedded(&'static [u8], Option<&'static str>),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub card: ModelCard,
    pub source: Source,
}

impl Entry {
    pub fn origin(&self) -> String {
        match &self.source {
            Source::Embedded(..) => format!("{} (embedded)", self.card.id()),
            Source::File(p) => p.display().to_string(),
        }
    }

    pub fn weights(&self) -> Result<Cow<'static, [u8]>, MlError> {
        match &self.source {
            Source::Embedded(b, _) => Ok(Cow::Borrowed(b)),
            Source::File(card) => {
                let p = card.with_file_name(&self.card.weights);
                std::fs::read(&p).map(Cow::Owned).map_err(|e| MlError::Io(format!("{}: {e}", p.display())))
            }
        }
    }

    /// The validation predictions stored with the model (calibrated probability, label), from
    /// `<id>.predictions.csv` beside the card; `None` when there are none.
    pub fn predictions(&self) -> Result<Option<Vec<(f64, bool)>>, MlError> {
        let text = match &self.source {
            Source::Embedded(_, p) => p.map(Cow::Borrowed),
            Source::File(card) => {
                let p = card.with_file_name(predictions_file(&self.card.id()));
                match std::fs::read_to_string(&p) {
                    Ok(t) => Some(Cow::Owned(t)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(MlError::Io(format!("{}: {e}", p.display()))),
                }
            }
        };
        text.map(|t| parse_predictions(&t)).transpose()
    }

    /// Loads the model onto `device` (checksum and shapes checked).
    pub fn load(&self, device: &Device) -> Result<Classifier, MlError> {
        Classifier::new(self.card.clone(), &self.weights()?, device, &self.origin())
    }
}

/// Reads a card file and the weights beside it, checking both (used by `import` and by
/// `--model PATH`).
pub fn entry_from_card_file(path: &Path) -> Result<Entry, MlError> {
    let text = std::fs::read_to_string(path).map_err(|e| MlError::Io(format!("{}: {e}", path.display())))?;
    let card = ModelCard::parse(&text, &path.display().to_string())?;
    Ok(Entry { card, source: Source::File(path.to_path_buf()) })
}

pub fn embedded() -> Result<Vec<Entry>, MlError> {
    embedded::MODELS
        .iter()
        .map(|(name, card, weights, preds)| {
            let card = ModelCard::parse(card, &format!("embedded {name}"))?;
            Ok(Entry { card, source: Source::Embedded(weights, *preds) })
        })
        .collect()
}

/// File name of a model's validation predictions.
pub fn predictions_file(id: &str) -> String {
    format!("{id}.predictions.csv")
}

/// Writes validation predictions as CSV: a header, then `probability,label` (label 0 or 1).
pub fn predictions_csv(probs: &[f64], labels: &[bool]) -> String {
    let mut out = String::from("probability,label\n");
    for (p, l) in probs.iter().zip(labels) {
        out.push_str(&format!("{p:.6},{}\n", u8::from(*l)));
    }
    out
}

fn parse_predictions(text: &str) -> Result<Vec<(f64, bool)>, MlError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || MlError::Card(format!("predictions line {}: expected `probability,label`", i + 1));
        let (p, l) = line.split_once(',').ok_or_else(bad)?;
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        let l = match l.trim() {
            "0" => false,
            "1" => true,
            _ => return Err(bad()),
        };
        out.push((p, l));
    }
    Ok(out)
}

/// Orders versions numerically where they are numbers (`1.10.0` after `1.9.0`).
fn version_key(v: &str) -> Vec<(u64, String)> {
    v.split(['.', '_']).map(|p| (p.parse::<u64>().unwrap_or(0), p.to_string())).collect()
}

pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn new(data_dir: &Path) -> Registry {
        Registry { dir: data_dir.join("models") }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn imported(&self) -> Result<Vec<Entry>, MlError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(MlError::Io(format!("{}: {e}", self.dir.display()))),
        };
        let mut paths: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml") && p.file_name().is_some_and(|n| n != "active.toml"))
            .collect();
        paths.sort();
        for p in paths {
            out.push(entry_from_card_file(&p)?);
        }
        Ok(out)
    }

    /// Every known model: embedded first, then imported (an imported copy of an embedded id
    /// replaces it).
    pub fn all(&self) -> Result<Vec<Entry>, MlError> {
        let mut by_id: BTreeMap<String, Entry> = BTreeMap::new();
        for e in embedded()?.into_iter().chain(self.imported()?) {
            by_id.insert(e.card.id(), e);
        }
        let mut v: Vec<Entry> = by_id.into_values().collect();
        v.sort_by(|a, b| {
            (a.card.name.clone(), version_key(&a.card.version))
                .cmp(&(b.card.name.clone(), version_key(&b.card.version)))
        });
        Ok(v)
    }

    fn active_file(&self) -> PathBuf {
        self.dir.join("active.toml")
    }

    fn active_map(&self) -> Result<BTreeMap<String, String>, MlError> {
        let p = self.active_file();
        match std::fs::read_to_string(&p) {
            Ok(t) => toml::from_str(&t).map_err(|e| MlError::Card(format!("{}: {}", p.display(), e.message()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(MlError::Io(format!("{}: {e}", p.display()))),
        }
    }

    /// The active version of `name`: the one set with `activate`, else the embedded one,
    /// else the newest.
    pub fn active(&self, name: &str) -> Result<Entry, MlError> {
        let all: Vec<Entry> = self.all()?.into_iter().filter(|e| e.card.name == name).collect();
        if let Some(v) = self.active_map()?.get(name) {
            return all.into_iter().find(|e| &e.card.version == v).ok_or_else(|| {
                MlError::NotFound(format!(
                    "{} names {name}-{v} as active, but it is not installed",
                    self.active_file().display()
                ))
            });
        }
        let embedded = all.iter().rposition(|e| matches!(e.source, Source::Embedded(..)));
        match embedded.or(all.len().checked_sub(1)) {
            Some(i) => Ok(all[i].clone()),
            None => Err(MlError::NotFound(format!(
                "no model named `{name}` (embedded or in {}); train one with `lucent train`",
                self.dir.display()
            ))),
        }
    }

    pub fn is_active(&self, e: &Entry) -> bool {
        self.active(&e.card.name).map(|a| a.card.id() == e.card.id()).unwrap_or(false)
    }

    /// Resolves `NAME` (its active version), `NAME-VERSION`, or a path to a card file.
    pub fn resolve(&self, spec: &str) -> Result<Entry, MlError> {
        if spec.ends_with(".toml") || spec.contains('/') {
            return entry_from_card_file(Path::new(spec));
        }
        if let Some(e) = self.all()?.into_iter().find(|e| e.card.id() == spec) {
            return Ok(e);
        }
        self.active(spec)
    }

    /// Copies a card and its weights into the registry after checking that they load.
    pub fn import(&self, card_path: &Path) -> Result<Entry, MlError> {
        let e = entry_from_card_file(card_path)?;
        let weights = e.weights()?;
        load_nets(&e.card, &weights, &Device::flex(), &e.origin())?;
        std::fs::create_dir_all(&self.dir).map_err(|err| MlError::Io(format!("{}: {err}", self.dir.display())))?;
        let dest_card = self.dir.join(format!("{}.toml", e.card.id()));
        write_atomic(&self.dir.join(&e.card.weights), &weights)?;
        write_atomic(&dest_card, e.card.to_toml().as_bytes())?;
        Ok(Entry { card: e.card, source: Source::File(dest_card) })
    }

    /// Makes `NAME-VERSION` the active version of its name.
    pub fn activate(&self, id: &str) -> Result<Entry, MlError> {
        let e = self
            .all()?
            .into_iter()
            .find(|e| e.card.id() == id)
            .ok_or_else(|| MlError::NotFound(format!("no model `{id}`; see `lucent models list`")))?;
        // Refuse to activate something that does not load.
        load_nets(&e.card, &e.weights()?, &Device::flex(), &e.origin())?;
        let mut map = self.active_map()?;
        map.insert(e.card.name.clone(), e.card.version.clone());
        std::fs::create_dir_all(&self.dir).map_err(|err| MlError::Io(format!("{}: {err}", self.dir.display())))?;
        let text = format!(
            "# Active model versions (lucent models activate)\n{}",
            toml::to_string(&map).expect("map serialises")
        );
        write_atomic(&self.active_file(), text.as_bytes())?;
        Ok(e)
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MlError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| MlError::Io(format!("{}: {e}", path.display()));
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
