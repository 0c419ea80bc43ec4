//! Typed configuration: defaults, loading `<data-dir>/config.toml`, validation, and the
//! `config get/set` editing used by the CLI.
//!
//! Owns: the `Config` types and the only code that reads or writes the config file.
//! Must not: start services or touch the database. Other modules receive a `Config` value.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The documented default configuration, embedded so that a bare `lucent serve` works.
pub const DEFAULT_TOML: &str = include_str!("../config/lucent.toml");

/// File name of the configuration inside the data directory.
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub dicom: DicomConfig,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    pub deid: DeidConfig,
    pub ml: MlConfig,
    pub web: WebConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DicomConfig {
    pub ae_title: String,
    pub bind: String,
    pub port: u16,
    pub max_associations: u32,
    pub max_pdu: u32,
    pub check_called_ae: bool,
    pub allowed_peers: Vec<String>,
    pub idle_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub overwrite_duplicates: bool,
    pub min_free_mb: u64,
}

/// De-identification (`lucent dicom deid`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeidConfig {
    /// Masking rules for images likely to carry burned-in identifiers.
    pub masks: Vec<MaskRule>,
}

/// One `[[deid.masks]]` rule: images of this modality (and manufacturer and model, when given)
/// and exactly this size get the rectangles blacked out, and may then leave Lucent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRule {
    /// Modality (0008,0060), e.g. "US"; an image without Modality matches "OT".
    pub modality: String,
    /// Manufacturer (0008,0070); any manufacturer when absent. Compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// Manufacturer's Model Name (0008,1090); any model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Rows (0028,0010) and Columns (0028,0011) the rule is for.
    pub rows: u32,
    pub columns: u32,
    /// Rectangles `[x, y, width, height]` in pixels, origin top left; at least one.
    pub rects: Vec<[u32; 4]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub bind: String,
    pub port: u16,
    pub frame_cache_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Minutes without a request after which a session ends.
    pub session_idle_minutes: u64,
    /// Hours after login after which a session ends however busy it is.
    pub session_max_hours: u64,
    /// Consecutive wrong passwords that lock an account.
    pub login_max_failures: u32,
    /// Minutes an account stays locked.
    pub lockout_minutes: u64,
    /// Login attempts one client address may make per minute.
    pub login_attempts_per_minute: u32,
    /// Mark cookies Secure (set when Lucent is reached over HTTPS, e.g. behind a TLS proxy).
    pub secure_cookies: bool,
    /// Studies per worklist page.
    pub worklist_page_size: u32,
    /// Seconds between live refreshes of the worklist.
    pub worklist_refresh_seconds: u32,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            session_idle_minutes: 15,
            session_max_hours: 12,
            login_max_failures: 5,
            lockout_minutes: 15,
            login_attempts_per_minute: 20,
            secure_cookies: false,
            worklist_page_size: 50,
            worklist_refresh_seconds: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MlConfig {
    /// "auto", "cpu" or "gpu" (see `ml::device`).
    pub device: String,
    /// Largest inference batch the queue forms.
    pub max_batch: u32,
    /// Milliseconds the queue waits to fill a batch after the first request.
    pub max_wait_ms: u32,
    /// Requests that may wait in the inference queue; more are refused until it drains.
    pub queue_capacity: u32,
}

impl Default for MlConfig {
    fn default() -> Self {
        MlConfig { device: "auto".into(), max_batch: 32, max_wait_ms: 5, queue_capacity: 256 }
    }
}

impl Default for DicomConfig {
    fn default() -> Self {
        DicomConfig {
            ae_title: "LUCENT".into(),
            bind: "0.0.0.0".into(),
            port: 11112,
            max_associations: 16,
            max_pdu: 131_072,
            check_called_ae: true,
            allowed_peers: Vec::new(),
            idle_timeout_secs: 60,
            shutdown_grace_secs: 10,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { overwrite_duplicates: false, min_free_mb: 1024 }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { bind: "0.0.0.0".into(), port: 8080, frame_cache_mb: 256 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unknown key `{key}`; valid keys: {}", valid_keys().join(", "))]
    UnknownKey { key: String },
    #[error("`{key}` expects {expected}, got `{value}`")]
    BadValue { key: String, expected: &'static str, value: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// One `AE` or `AE@host` entry of `dicom.allowed_peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRule {
    pub ae_title: String,
    pub host: Option<String>,
}

impl PeerRule {
    pub fn parse(entry: &str) -> Result<PeerRule, String> {
        let (ae, host) = match entry.split_once('@') {
            Some((ae, host)) => (ae.trim(), Some(host.trim().to_string())),
            None => (entry.trim(), None),
        };
        validate_ae_title(ae)?;
        if let Some(h) = &host {
            if h.is_empty() {
                return Err(format!("`{entry}`: empty host after @"));
            }
        }
        Ok(PeerRule { ae_title: ae.to_string(), host })
    }
}

/// An AE title is 1..=16 characters of the default repertoire, no backslash or control
/// characters, and not only spaces (PS3.5 Table 6.2-1).
pub fn validate_ae_title(ae: &str) -> Result<(), String> {
    let t = ae.trim();
    if t.is_empty() || ae.len() > 16 {
        return Err(format!("AE title `{ae}` must have 1 to 16 characters"));
    }
    if ae.chars().any(|c| !c.is_ascii() || c.is_ascii_control() || c == '\\') {
        return Err(format!("AE title `{ae}` may only hold printable ASCII without backslash"));
    }
    Ok(())
}

impl Config {
    /// Checks ranges and formats that serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        validate_ae_title(&self.dicom.ae_title).map_err(ConfigError::Invalid)?;
        for p in &self.dicom.allowed_peers {
            PeerRule::parse(p).map_err(ConfigError::Invalid)?;
        }
        if !(16_384..=4_194_304).contains(&self.dicom.max_pdu) {
            return bad(format!("dicom.max_pdu must be 16384..=4194304, got {}", self.dicom.max_pdu));
        }
        if self.dicom.max_associations == 0 {
            return bad("dicom.max_associations must be at least 1".into());
        }
        if self.dicom.idle_timeout_secs == 0 {
            return bad("dicom.idle_timeout_secs must be at least 1".into());
        }
        if !matches!(self.ml.device.as_str(), "auto" | "cpu" | "gpu") {
            return bad(format!("ml.device must be \"auto\", \"cpu\" or \"gpu\", got `{}`", self.ml.device));
        }
        if self.ml.max_batch == 0 || self.ml.max_batch > 4096 {
            return bad(format!("ml.max_batch must be 1..=4096, got {}", self.ml.max_batch));
        }
        if self.ml.queue_capacity == 0 {
            return bad("ml.queue_capacity must be at least 1".into());
        }
        let w = &self.web;
        for (key, v) in [
            ("web.session_idle_minutes", w.session_idle_minutes),
            ("web.session_max_hours", w.session_max_hours),
            ("web.login_max_failures", u64::from(w.login_max_failures)),
            ("web.lockout_minutes", w.lockout_minutes),
            ("web.login_attempts_per_minute", u64::from(w.login_attempts_per_minute)),
            ("web.worklist_refresh_seconds", u64::from(w.worklist_refresh_seconds)),
        ] {
            if v == 0 {
                return bad(format!("{key} must be at least 1"));
            }
        }
        if !(5..=500).contains(&w.worklist_page_size) {
            return bad(format!("web.worklist_page_size must be 5..=500, got {}", w.worklist_page_size));
        }
        for (key, addr) in [("dicom.bind", &self.dicom.bind), ("http.bind", &self.http.bind)] {
            if addr.parse::<IpAddr>().is_err() {
                return bad(format!("{key} must be an IP address, got `{addr}`"));
            }
        }
        for (i, m) in self.deid.masks.iter().enumerate() {
            let which = format!("deid.masks[{i}] ({} {}x{})", m.modality, m.columns, m.rows);
            if m.modality.trim().is_empty() || m.rows == 0 || m.columns == 0 {
                return bad(format!("{which}: modality, rows and columns are required"));
            }
            if m.rects.is_empty() {
                return bad(format!("{which}: needs at least one rectangle in rects"));
            }
            for r in &m.rects {
                let [x, y, w, h] = *r;
                if w == 0
                    || h == 0
                    || u64::from(x) + u64::from(w) > u64::from(m.columns)
                    || u64::from(y) + u64::from(h) > u64::from(m.rows)
                {
                    return bad(format!("{which}: rectangle {r:?} is empty or outside the image"));
                }
            }
        }
        Ok(())
    }

    /// Loads `<data_dir>/config.toml`, or the embedded defaults when the file does not exist.
    pub fn load(data_dir: &Path) -> Result<Config, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_TOML.to_string(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_toml(&text, &path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("{}; valid keys: {}", e.message(), valid_keys().join(", ")),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The whole configuration as TOML (what `config show` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises")
    }

    /// The value of a dotted key, rendered as TOML.
    pub fn get(&self, key: &str) -> Result<String, ConfigError> {
        let (section, name) = split_key(key)?;
        let value = toml::Value::try_from(self).expect("config serialises");
        value
            .get(section)
            .and_then(|s| s.get(name))
            .map(render_value)
            .ok_or_else(|| ConfigError::UnknownKey { key: key.into() })
    }
}

/// Writes the default config into `data_dir` unless a config is already there.
pub fn write_default_if_missing(data_dir: &Path) -> Result<bool, ConfigError> {
    let path = data_dir.join(CONFIG_FILE);
    if path.exists() {
        return Ok(false);
    }
    write_atomic(&path, DEFAULT_TOML)?;
    Ok(true)
}

/// Sets `key` to `raw` in `<data_dir>/config.toml`, keeping comments, after checking the key
/// exists and the value has the right type and passes validation.
pub fn set(data_dir: &Path, key: &str, raw: &str) -> Result<Config, ConfigError> {
    let (section, name) = split_key(key)?;
    let defaults = toml::Value::try_from(Config::default()).expect("config serialises");
    let template =
        defaults.get(section).and_then(|s| s.get(name)).ok_or_else(|| ConfigError::UnknownKey { key: key.into() })?;
    let item = parse_like(template, raw).ok_or_else(|| ConfigError::BadValue {
        key: key.into(),
        expected: type_name(template),
        value: raw.into(),
    })?;

    let path = data_dir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DEFAULT_TOML.to_string(),
        Err(source) => return Err(ConfigError::Read { path, source }),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| ConfigError::Parse { path: path.clone(), message: e.to_string() })?;
    if !doc.contains_table(section) {
        doc[section] = toml_edit::table();
    }
    doc[section][name] = toml_edit::value(item);
    let new_text = doc.to_string();
    let cfg = Config::from_toml(&new_text, &path)?;
    write_atomic(&path, &new_text)?;
    Ok(cfg)
}

/// Every dotted key, in file order.
pub fn valid_keys() -> Vec<String> {
    let value = toml::Value::try_from(Config::default()).expect("config serialises");
    let mut keys = Vec::new();
    if let toml::Value::Table(t) = value {
        for (section, inner) in t {
            if let toml::Value::Table(inner) = inner {
                keys.extend(inner.keys().map(|k| format!("{section}.{k}")));
            }
        }
    }
    keys
}

fn split_key(key: &str) -> Result<(&str, &str), ConfigError> {
    key.split_once('.')
        .filter(|(s, n)| !s.is_empty() && !n.is_empty() && !n.contains('.'))
        .ok_or_else(|| ConfigError::UnknownKey { key: key.into() })
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a non-negative integer",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Array(_) => "a list of strings, comma-separated or as a TOML array",
        _ => "a value",
    }
}

fn render_value(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses `raw` as a value of the same type as `template`.
fn parse_like(template: &toml::Value, raw: &str) -> Option<toml_edit::Value> {
    match template {
        toml::Value::String(_) => Some(raw.into()),
        toml::Value::Integer(_) => raw.trim().parse::<u32>().ok().map(|n| i64::from(n).into()),
        toml::Value::Boolean(_) => raw.trim().parse::<bool>().ok().map(Into::into),
        toml::Value::Array(_) => {
            let raw = raw.trim();
            let items: Vec<String> = if raw.starts_with('[') {
                let parsed: toml::Value = toml::from_str(&format!("v = {raw}")).ok()?;
                parsed.get("v")?.as_array()?.iter().map(|v| v.as_str().map(str::to_string)).collect::<Option<_>>()?
            } else {
                raw.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
            };
            Some(toml_edit::Value::Array(items.into_iter().collect()))
        }
        _ => None,
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ConfigError> {
    let tmp = path.with_extension("toml.tmp");
    let werr = |source| ConfigError::Write { path: path.to_path_buf(), source };
    std::fs::write(&tmp, text).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_matches_code_defaults() {
        let parsed = Config::from_toml(DEFAULT_TOML, Path::new("lucent.toml")).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn get_and_set_round_trip_and_keep_comments() {
        let dir = tempfile::tempdir().unwrap();
        write_default_if_missing(dir.path()).unwrap();
        let cfg = set(dir.path(), "dicom.port", "4242").unwrap();
        assert_eq!(cfg.dicom.port, 4242);
        assert_eq!(Config::load(dir.path()).unwrap().get("dicom.port").unwrap(), "4242");
        let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        assert!(text.contains("# Our own Application Entity title"));
        let cfg = set(dir.path(), "dicom.allowed_peers", "MODALITY1, PACS@10.0.0.5").unwrap();
        assert_eq!(cfg.dicom.allowed_peers, vec!["MODALITY1", "PACS@10.0.0.5"]);
    }

    #[test]
    fn unknown_key_names_valid_keys() {
        let dir = tempfile::tempdir().unwrap();
        let err = set(dir.path(), "dicom.colour", "blue").unwrap_err().to_string();
        assert!(err.contains("unknown key `dicom.colour`"), "{err}");
        assert!(err.contains("dicom.ae_title") && err.contains("storage.min_free_mb"), "{err}");
    }

    #[test]
    fn bad_values_name_the_expected_type() {
        let dir = tempfile::tempdir().unwrap();
        let err = set(dir.path(), "dicom.port", "eleven").unwrap_err().to_string();
        assert!(err.contains("a non-negative integer"), "{err}");
        let err = set(dir.path(), "dicom.ae_title", "THIS_TITLE_IS_WAY_TOO_LONG").unwrap_err();
        assert!(err.to_string().contains("1 to 16 characters"), "{err}");
        let err = set(dir.path(), "ml.device", "tpu").unwrap_err().to_string();
        assert!(err.contains("ml.device"), "{err}");
        let err = set(dir.path(), "dicom.max_pdu", "100").unwrap_err().to_string();
        assert!(err.contains("dicom.max_pdu"), "{err}");
        // The file is untouched by a rejected set.
        assert!(!dir.path().join(CONFIG_FILE).exists());
    }

    #[test]
    fn mask_rules_parse_and_validate() {
        let text = format!(
            "{}\n[[deid.masks]]\nmodality = \"US\"\nmanufacturer = \"Acme\"\nrows = 768\ncolumns = 1024\nrects = [[0, 0, 1024, 60]]\n",
            DEFAULT_TOML.replace("masks = []\n", "")
        );
        let cfg = Config::from_toml(&text, Path::new("t.toml")).unwrap();
        assert_eq!(cfg.deid.masks.len(), 1);
        assert_eq!(cfg.deid.masks[0].rects, vec![[0, 0, 1024, 60]]);
        assert_eq!(cfg.deid.masks[0].manufacturer.as_deref(), Some("Acme"));
        let outside = text.replace("[[0, 0, 1024, 60]]", "[[0, 0, 1025, 60]]");
        let err = Config::from_toml(&outside, Path::new("t.toml")).unwrap_err().to_string();
        assert!(err.contains("outside the image"), "{err}");
        let none = text.replace("[[0, 0, 1024, 60]]", "[]");
        assert!(Config::from_toml(&none, Path::new("t.toml")).unwrap_err().to_string().contains("at least one"));
    }

    #[test]
    fn peer_rules_parse() {
        assert_eq!(PeerRule::parse("CT1").unwrap(), PeerRule { ae_title: "CT1".into(), host: None });
        let r = PeerRule::parse("CT1@127.0.0.1").unwrap();
        assert_eq!(r.host.as_deref(), Some("127.0.0.1"));
        assert!(PeerRule::parse("@host").is_err());
    }
}
