//! Cairn's settings: one declaration of each `cairn.*` key, kept in
//! DataFusion's config as a [`ConfigExtension`], so that `SET` and `SHOW`
//! take DataFusion's own path, the keys appear in `SHOW ALL` and
//! `information_schema.df_settings`, and the settings travel with a
//! session's config to other processes.
//!
//! These are values only. The live checkpoint store a session writes to
//! is kept outside them (see [`crate::store::SessionStores`]).

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ConfigOptions, ExtensionOptions};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::config::SessionConfig;
use datafusion::parquet::basic::Compression;

/// How a set [`Secret`] is shown.
const MASK: &str = "********";

/// A credential: shown as `********` everywhere, compared by value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that signs requests with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// How to reach S3; what is `None` comes from the `AWS_*` environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct S3Options {
    /// An S3-compatible server, e.g. `http://127.0.0.1:9000` (`AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    /// `AWS_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<Secret>,
    /// `AWS_SESSION_TOKEN`, for temporary credentials.
    pub session_token: Option<Secret>,
    /// Allows `http://` endpoints; on by default when the endpoint is one.
    pub allow_http: Option<bool>,
}

/// What to do with a damaged checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnCorrupt {
    /// Fail, naming the checkpoint, the file and what is wrong.
    #[default]
    Error,
    /// Rebuild it from its lineage and go on.
    Recompute,
}

impl fmt::Display for OnCorrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnCorrupt::Error => "error",
            OnCorrupt::Recompute => "recompute",
        })
    }
}

impl FromStr for OnCorrupt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(OnCorrupt::Error),
            "recompute" => Ok(OnCorrupt::Recompute),
            other => Err(format!(
                "'{other}' is not a policy; use 'error' or 'recompute'"
            )),
        }
    }
}

/// How checkpoints are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// The Parquet codec of every data file.
    pub compression: Compression,
    /// This process keeps the batches of the reliable checkpoints it writes,
    /// up to this many bytes in all (0: none), and reads them instead of
    /// their files, which stay the durable copy. Nothing is kept under a
    /// memory limit: kept batches cannot yet be given back on demand.
    pub write_through: u64,
    /// When a reliable checkpoint commits: before its statement returns,
    /// or after, in the background.
    pub commit: CommitMode,
}

/// When a reliable checkpoint commits (`cairn.checkpoint_commit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// The statement returns once the checkpoint is committed.
    #[default]
    Sync,
    /// The statement returns once the files are written; they are made
    /// durable and committed while the next statement runs. A crash loses
    /// the checkpoints not yet committed; a failed commit fails the
    /// session's next statement.
    Async,
}

impl fmt::Display for CommitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommitMode::Sync => "sync",
            CommitMode::Async => "async",
        })
    }
}

impl FromStr for CommitMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "sync" => Ok(CommitMode::Sync),
            "async" => Ok(CommitMode::Async),
            other => Err(format!(
                "'{other}' is not a commit mode; use 'sync' (the statement returns once \
                 committed) or 'async' (it commits in the background)"
            )),
        }
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        // Chosen by measurement (cairn-bench checkpoint-io): cheap to encode
        // and decode, and exact like every Parquet codec.
        Self {
            compression: Compression::LZ4_RAW,
            write_through: 1 << 30,
            commit: CommitMode::Sync,
        }
    }
}

/// When unnamed checkpoints and orphaned directories expire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Unnamed checkpoints: time since last use.
    pub retention: Duration,
    /// Directories without a manifest: time since their newest file.
    pub orphan_grace: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

/// Where Cairn places checkpoints of its own (`cairn.auto_checkpoint`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AutoCheckpoint {
    /// Never across actions (sub-plans one query reads twice are still
    /// computed once while `cairn.reuse_subplans` is on).
    Off,
    /// In memory, for the rest of the session.
    #[default]
    Local,
    /// In the checkpoint dir: a rerun of the same job reuses them.
    Reliable,
}

impl fmt::Display for AutoCheckpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AutoCheckpoint::Off => "off",
            AutoCheckpoint::Local => "local",
            AutoCheckpoint::Reliable => "reliable",
        })
    }
}

impl FromStr for AutoCheckpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "false" => Ok(AutoCheckpoint::Off),
            "local" => Ok(AutoCheckpoint::Local),
            "reliable" => Ok(AutoCheckpoint::Reliable),
            other => Err(format!(
                "'{other}' is not a mode; use 'off', 'local' or 'reliable'"
            )),
        }
    }
}

/// Checkpoints Cairn places itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReuseOptions {
    /// A sub-plan one query reads more than once is computed once.
    pub subplans: bool,
    /// Lineage grown long across actions is cut: where, and how.
    pub auto: AutoCheckpoint,
    /// A plan standing for more nodes than this (a sub-plan read twice
    /// counts twice) is cut before it runs.
    pub auto_nodes: u64,
    /// A query over checkpoints only, planned again with other checkpoints
    /// of the same shape (a loop's next step), reuses its optimized plan.
    pub plans: bool,
}

impl Default for ReuseOptions {
    fn default() -> Self {
        Self {
            subplans: true,
            auto: AutoCheckpoint::default(),
            auto_nodes: 2000,
            plans: true,
        }
    }
}

/// Every `cairn.*` setting of a session, as values.
#[derive(Debug, Clone, PartialEq)]
pub struct CairnOptions {
    /// Where reliable checkpoints go, as a URL; empty means
    /// [`default_checkpoint_dir`].
    pub checkpoint_dir: String,
    /// How checkpoint files are encoded.
    pub write: WriteOptions,
    /// How long unnamed checkpoints and abandoned directories are kept.
    pub lifetimes: Lifetimes,
    /// What happens when a committed checkpoint is found damaged.
    pub on_corrupt: OnCorrupt,
    /// How S3 is reached, for checkpoint dirs and `s3://` data.
    pub s3: S3Options,
    /// Checkpoints Cairn places itself.
    pub reuse: ReuseOptions,
    /// The filters hash joins derive from their build side also drop the
    /// probe side's rows where it is scanned, not just its row groups.
    pub join_filters_on_rows: bool,
    /// Decimal `+`, `-` and `*` skip arrow's per-row overflow checks where
    /// the operands show that no row can overflow.
    pub decimal_fast_path: bool,
    /// Filters test what compares fixed-width values before strings.
    pub cheap_filters_first: bool,
    /// Each condition of a filter reads only the rows the earlier ones kept.
    pub filter_narrowing: bool,
    /// Aggregations grouped by one integer column whose values span a
    /// small range find groups by value, without hashing.
    pub dense_group_by: bool,
}

/// One `cairn.<key>`: its doc, its default, and how it is read and set.
struct Setting {
    key: &'static str,
    doc: &'static str,
    default: &'static str,
    /// A credential: `SHOW` and `df_settings` say whether it is set, never its value.
    secret: bool,
    get: fn(&CairnOptions) -> String,
    set: fn(&mut CairnOptions, &str) -> Result<(), String>,
}

/// The settings, each declared once.
const SETTINGS: &[Setting] = &[
    Setting {
        key: "checkpoint_dir",
        doc: "where reliable checkpoints go: a path, file://, memory:// or s3://bucket/prefix",
        default: "",
        secret: false,
        get: |o| o.checkpoint_dir.clone(),
        // Checked by opening it (CairnContext::set_options), which says
        // what is wrong with a dir that cannot be used.
        set: |o, v| {
            o.checkpoint_dir = v.trim().to_string();
            Ok(())
        },
    },
    Setting {
        key: "checkpoint_compression",
        doc: "Parquet codec of checkpoint files: lz4_raw, uncompressed, snappy, zstd(N)",
        default: "lz4_raw",
        secret: false,
        get: |o| compression_name(o.write.compression),
        set: |o, v| {
            o.write.compression =
                v.trim().to_ascii_lowercase().parse().map_err(|e| {
                    format!("{e}; use lz4_raw, uncompressed, snappy or zstd(1..22)")
                })?;
            Ok(())
        },
    },
    Setting {
        key: "checkpoint_write_through",
        doc: "how much of the reliable checkpoints this process writes it keeps in memory to read them from there, e.g. '1G', or 'off' (none is kept under a memory limit)",
        default: "1G",
        secret: false,
        get: |o| match o.write.write_through {
            0 => "off".to_string(),
            bytes => format_size(bytes),
        },
        set: |o, v| {
            o.write.write_through = match v.trim().to_ascii_lowercase().as_str() {
                "off" | "0" => 0,
                _ => parse_size(v)? as u64,
            };
            Ok(())
        },
    },
    Setting {
        key: "checkpoint_commit",
        doc: "'sync': a reliable checkpoint's statement returns once it is committed; 'async': once its files are written, committing in the background (a crash loses what was not committed; a failed commit fails the next statement)",
        default: "sync",
        secret: false,
        get: |o| o.write.commit.to_string(),
        set: |o, v| {
            o.write.commit = v.parse()?;
            Ok(())
        },
    },
    Setting {
        key: "checkpoint_retention",
        doc: "how long unnamed checkpoints live after their last use, e.g. '7 days'",
        default: "7 days",
        secret: false,
        get: |o| format_duration(o.lifetimes.retention),
        set: |o, v| {
            o.lifetimes.retention = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        key: "checkpoint_orphan_grace",
        doc: "how long VACUUM leaves directories without a manifest (and files no manifest lists), e.g. '1 hour'",
        default: "1 hour",
        secret: false,
        get: |o| format_duration(o.lifetimes.orphan_grace),
        set: |o, v| {
            o.lifetimes.orphan_grace = parse_duration(v)?;
            Ok(())
        },
    },
    Setting {
        key: "checkpoint_on_corrupt",
        doc: "a damaged checkpoint is an 'error', or is rebuilt from its lineage ('recompute')",
        default: "error",
        secret: false,
        get: |o| o.on_corrupt.to_string(),
        set: |o, v| {
            o.on_corrupt = v.parse()?;
            Ok(())
        },
    },
    Setting {
        key: "reuse_subplans",
        doc: "'on': a sub-plan one query reads more than once (a CTE or view used twice) is computed once",
        default: "on",
        secret: false,
        get: |o| on_off(o.reuse.subplans),
        set: |o, v| {
            o.reuse.subplans = parse_on_off(v)?;
            Ok(())
        },
    },
    Setting {
        key: "reuse_plans",
        doc: "'on': a query that reads only checkpoints reuses the optimized plan of an earlier query of the same shape (a loop's next step)",
        default: "on",
        secret: false,
        get: |o| on_off(o.reuse.plans),
        set: |o, v| {
            o.reuse.plans = parse_on_off(v)?;
            Ok(())
        },
    },
    Setting {
        key: "auto_checkpoint",
        doc: "checkpoints Cairn places where lineage grows long across actions: 'off', 'local' (memory) or 'reliable' (the checkpoint dir)",
        default: "local",
        secret: false,
        get: |o| o.reuse.auto.to_string(),
        set: |o, v| {
            o.reuse.auto = v.parse()?;
            Ok(())
        },
    },
    Setting {
        key: "auto_checkpoint_nodes",
        doc: "a plan that stands for more nodes than this (a part read twice counts twice) gets an automatic checkpoint",
        default: "2000",
        secret: false,
        get: |o| o.reuse.auto_nodes.to_string(),
        set: |o, v| {
            o.reuse.auto_nodes = v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("use a whole number of nodes, at least 1")?;
            Ok(())
        },
    },
    Setting {
        key: "join_filters_on_rows",
        doc: "'on': the filter a hash join derives from its build side drops the probe side's rows as they are scanned (not only row groups)",
        default: "on",
        secret: false,
        get: |o| on_off(o.join_filters_on_rows),
        set: |o, v| {
            o.join_filters_on_rows = parse_on_off(v)?;
            Ok(())
        },
    },
    Setting {
        key: "decimal_fast_path",
        doc: "'on': decimal +, - and * run without a per-row overflow check where no row can overflow (same answers and errors)",
        default: "on",
        secret: false,
        get: |o| on_off(o.decimal_fast_path),
        set: |o, v| {
            o.decimal_fast_path = parse_on_off(v)?;
            Ok(())
        },
    },
    Setting {
        key: "cheap_filters_first",
        doc: "'on': a filter tests the conditions that compare numbers and dates before those that compare strings",
        default: "on",
        secret: false,
        get: |o| on_off(o.cheap_filters_first),
        set: |o, v| {
            o.cheap_filters_first = parse_on_off(v)?;
            Ok(())
        },
    },
    Setting {
        key: "filter_narrowing",
        doc: "'on': each condition of a filter reads only the rows the earlier conditions kept, and only its columns",
        default: "on",
        secret: false,
        get: |o| on_off(o.filter_narrowing),
        set: |o, v| {
            o.filter_narrowing = parse_on_off(v)?;
            Ok(())
        },
    },
    Setting {
        key: "dense_group_by",
        doc: "'on': a GROUP BY on one integer column whose values span a small range finds each row's group by its value, without hashing (same answers)",
        default: "on",
        secret: false,
        get: |o| on_off(o.dense_group_by),
        set: |o, v| {
            o.dense_group_by = parse_on_off(v)?;
            Ok(())
        },
    },
    Setting {
        key: "s3.endpoint",
        doc: "an S3-compatible server, e.g. 'http://127.0.0.1:9000' (default: AWS_ENDPOINT or AWS)",
        default: "",
        secret: false,
        get: |o| o.s3.endpoint.clone().unwrap_or_default(),
        set: |o, v| {
            o.s3.endpoint = given(v);
            Ok(())
        },
    },
    Setting {
        key: "s3.region",
        doc: "the S3 region (default: AWS_REGION or us-east-1)",
        default: "",
        secret: false,
        get: |o| o.s3.region.clone().unwrap_or_default(),
        set: |o, v| {
            o.s3.region = given(v);
            Ok(())
        },
    },
    Setting {
        key: "s3.access_key_id",
        doc: "the S3 access key id (default: AWS_ACCESS_KEY_ID)",
        default: "",
        secret: false,
        get: |o| o.s3.access_key_id.clone().unwrap_or_default(),
        set: |o, v| {
            o.s3.access_key_id = given(v);
            Ok(())
        },
    },
    Setting {
        key: "s3.secret_access_key",
        doc: "the S3 secret key (default: AWS_SECRET_ACCESS_KEY); never shown",
        default: "",
        secret: true,
        get: |o| shown(o.s3.secret_access_key.as_ref()),
        set: |o, v| {
            o.s3.secret_access_key = given_secret(v);
            Ok(())
        },
    },
    Setting {
        key: "s3.session_token",
        doc: "a temporary S3 session token (default: AWS_SESSION_TOKEN); never shown",
        default: "",
        secret: true,
        get: |o| shown(o.s3.session_token.as_ref()),
        set: |o, v| {
            o.s3.session_token = given_secret(v);
            Ok(())
        },
    },
    Setting {
        key: "s3.allow_http",
        doc: "'true' to allow an http:// endpoint (default: true when the endpoint is http://)",
        default: "",
        secret: false,
        get: |o| o.s3.allow_http.map(|b| b.to_string()).unwrap_or_default(),
        set: |o, v| {
            o.s3.allow_http = match v.trim().to_ascii_lowercase().as_str() {
                "" => None,
                "true" | "on" => Some(true),
                "false" | "off" => Some(false),
                _ => return Err("use true or false".into()),
            };
            Ok(())
        },
    },
];

impl Default for CairnOptions {
    fn default() -> Self {
        let mut options = Self {
            checkpoint_dir: String::new(),
            write: WriteOptions::default(),
            lifetimes: Lifetimes::default(),
            on_corrupt: OnCorrupt::default(),
            s3: S3Options::default(),
            reuse: ReuseOptions::default(),
            join_filters_on_rows: true,
            decimal_fast_path: true,
            cheap_filters_first: true,
            filter_narrowing: true,
            dense_group_by: true,
        };
        for s in SETTINGS {
            (s.set)(&mut options, s.default).expect("every default is a valid value");
        }
        options
    }
}

impl CairnOptions {
    /// The settings of a session; `None` if it is not a Cairn session.
    pub fn of(config: &SessionConfig) -> Option<&CairnOptions> {
        Self::in_options(config.options())
    }

    /// The settings among a session's options, as optimizer rules get them.
    pub fn in_options(options: &ConfigOptions) -> Option<&CairnOptions> {
        options.extensions.get::<CairnOptions>()
    }

    /// Every key, with `cairn.` in front, and its description.
    pub fn keys() -> impl Iterator<Item = (String, &'static str)> {
        SETTINGS.iter().map(|s| (format!("cairn.{}", s.key), s.doc))
    }

    /// Whether `cairn.<key>` holds a credential, whose value is never shown.
    pub fn is_secret(key: &str) -> bool {
        SETTINGS.iter().any(|s| s.secret && s.key == key)
    }

    /// Whether `cairn.<key>` is a setting.
    pub fn is_known(key: &str) -> bool {
        SETTINGS.iter().any(|s| s.key == key)
    }

    /// The value of `cairn.<key>` as `SHOW` gives it (a secret as `********`).
    pub fn get(&self, key: &str) -> crate::error::Result<String> {
        match SETTINGS.iter().find(|s| s.key == key) {
            Some(s) => Ok((s.get)(self)),
            None => Err(unknown_setting(key)),
        }
    }

    /// Sets `cairn.<key>`; a bad value is an error that changes nothing,
    /// and an error about a secret does not repeat its value.
    pub fn set_value(&mut self, key: &str, value: &str) -> crate::error::Result<()> {
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            return Err(unknown_setting(key));
        };
        let mut next = self.clone();
        (setting.set)(&mut next, value).map_err(|why| {
            let shown = if setting.secret {
                String::new()
            } else {
                format!(" to '{value}'")
            };
            crate::error::Error::Config(format!("cannot set cairn.{key}{shown}: {why}"))
        })?;
        *self = next;
        Ok(())
    }

    /// The checkpoint dir to use: the setting, or the default dir.
    pub fn checkpoint_dir(&self) -> String {
        if self.checkpoint_dir.is_empty() {
            default_checkpoint_dir().display().to_string()
        } else {
            self.checkpoint_dir.clone()
        }
    }
}

fn unknown_setting(key: &str) -> crate::error::Error {
    let known: Vec<String> = CairnOptions::keys().map(|(k, _)| k).collect();
    crate::error::Error::Config(format!(
        "unknown setting 'cairn.{key}'; the settings are {}",
        known.join(", ")
    ))
}

impl ConfigExtension for CairnOptions {
    const PREFIX: &'static str = "cairn";
}

impl ExtensionOptions for CairnOptions {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    /// Sets `key` (without `cairn.`); a bad value is an error that changes nothing.
    fn set(&mut self, key: &str, value: &str) -> DfResult<()> {
        self.set_value(key, value)
            .map_err(|e| DataFusionError::Configuration(e.to_string()))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        SETTINGS
            .iter()
            .map(|s| ConfigEntry {
                key: format!("cairn.{}", s.key),
                value: Some((s.get)(self)),
                description: s.doc,
            })
            .collect()
    }
}

/// The persistent dir used when none is given: `$CAIRN_CHECKPOINT_DIR`, else
/// `$XDG_DATA_HOME/cairn/checkpoints`, else `~/.local/share/cairn/checkpoints`.
pub fn default_checkpoint_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAIRN_CHECKPOINT_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("cairn").join("checkpoints")
}

/// A switch as `SHOW` gives it.
fn on_off(on: bool) -> String {
    if on { "on" } else { "off" }.to_string()
}

/// A switch as `SET` takes it.
fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err("use on or off".into()),
    }
}

/// An empty value goes back to the environment's.
fn given(value: &str) -> Option<String> {
    Some(value.to_string()).filter(|v| !v.is_empty())
}

/// A secret; its mask is no value (a session's settings, sent to the
/// servers of a cluster, carry secrets masked: they use their own).
fn given_secret(value: &str) -> Option<Secret> {
    given(value).filter(|v| v != MASK).map(Secret::new)
}

/// A secret as `SHOW` gives it: whether it is set, never its value.
fn shown(secret: Option<&Secret>) -> String {
    secret.map(|s| s.to_string()).unwrap_or_default()
}

/// A codec as it is written in `SET cairn.checkpoint_compression`.
pub fn compression_name(c: Compression) -> String {
    match c {
        Compression::GZIP(l) => format!("gzip({})", l.compression_level()),
        Compression::BROTLI(l) => format!("brotli({})", l.compression_level()),
        Compression::ZSTD(l) => format!("zstd({})", l.compression_level()),
        other => other.to_string().to_ascii_lowercase(),
    }
}

/// A size as people write it: `512M`, `4G`, `2GiB`, `1000` (bytes).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, ""), |i| text.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size; write e.g. 512M or 4G"))?;
    let scale = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0_f64.powi(4),
        other => {
            return Err(format!(
                "unknown unit '{other}' in '{text}'; use K, M, G or T"
            ));
        }
    };
    Ok((value * scale) as usize)
}

/// The shortest exact form [`parse_size`] reads back: `1G`, `512M`, `1000`.
fn format_size(bytes: u64) -> String {
    for (unit, size) in [
        ("T", 1u64 << 40),
        ("G", 1 << 30),
        ("M", 1 << 20),
        ("K", 1 << 10),
    ] {
        if bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// `'90 seconds'`, `'30 minutes'`, `'12 hours'`, `'7 days'`, `'0'`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let (number, unit) = text
        .split_once(char::is_whitespace)
        .ok_or_else(|| "write a number and a unit, e.g. '7 days'".to_string())?;
    let n: u64 = number
        .parse()
        .map_err(|_| format!("'{number}' is not a whole number"))?;
    let seconds = match unit.trim().trim_end_matches('s') {
        "second" | "sec" => 1,
        "minute" | "min" => 60,
        "hour" => 3600,
        "day" => 86_400,
        "week" => 604_800,
        other => {
            return Err(format!(
                "unknown unit '{other}'; use seconds, minutes, hours, days or weeks"
            ));
        }
    };
    n.checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("'{text}' is too long"))
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, size) in [
        ("week", 604_800),
        ("day", 86_400),
        ("hour", 3600),
        ("minute", 60),
    ] {
        if s >= size && s.is_multiple_of(size) {
            let n = s / size;
            return format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
        }
    }
    format!("{s} seconds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units_and_print_back() {
        assert_eq!(parse_size("512M"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").unwrap_err().contains("not a size"));
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(1000), "1000");
        assert!(parse_size("3X").unwrap_err().contains("unknown unit 'X'"));
    }

    #[test]
    fn durations_parse_and_print_back() {
        for (text, secs) in [
            ("7 days", 604_800),
            ("1 hour", 3600),
            ("90 seconds", 90),
            ("0", 0),
            ("2 weeks", 1_209_600),
        ] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d.as_secs(), secs, "{text}");
        }
        assert_eq!(format_duration(Duration::from_secs(604_800)), "1 week");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2 hours");
        assert!(
            parse_duration("soon")
                .unwrap_err()
                .contains("number and a unit")
        );
        assert!(
            parse_duration("3 fortnights")
                .unwrap_err()
                .contains("unknown unit 'fortnight'")
        );
        assert!(parse_duration("99999999999999999 weeks").is_err());
    }

    #[test]
    fn policies_parse_and_print() {
        assert_eq!("Recompute".parse(), Ok(OnCorrupt::Recompute));
        assert_eq!(" error ".parse(), Ok(OnCorrupt::Error));
        assert!(
            "retry"
                .parse::<OnCorrupt>()
                .unwrap_err()
                .contains("'retry'")
        );
        assert_eq!(OnCorrupt::Recompute.to_string(), "recompute");
    }

    /// What `entries` shows can be set again: how settings travel to
    /// another process.
    #[test]
    fn every_shown_value_sets_back_to_itself() {
        let mut options = CairnOptions::default();
        for (key, value) in [
            ("checkpoint_compression", "zstd(3)"),
            ("checkpoint_retention", "2 days"),
            ("checkpoint_on_corrupt", "recompute"),
            ("s3.allow_http", "false"),
            ("s3.region", "eu-west-1"),
        ] {
            options.set_value(key, value).unwrap();
        }
        let mut copy = CairnOptions::default();
        for entry in options.entries() {
            let key = entry.key.strip_prefix("cairn.").unwrap();
            if !CairnOptions::is_secret(key) {
                copy.set_value(key, entry.value.as_deref().unwrap())
                    .unwrap();
            }
        }
        assert_eq!(copy, options);
        assert_eq!(options.get("checkpoint_compression").unwrap(), "zstd(3)");
    }

    #[test]
    fn secrets_never_show_and_failed_sets_change_nothing() {
        let mut options = CairnOptions::default();
        options
            .set_value("s3.secret_access_key", "very-secret")
            .unwrap();
        let shown = format!("{options:?} {:?}", options.entries());
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(shown.contains("********"), "{shown}");
        let before = options.clone();
        let e = options
            .set_value("checkpoint_retention", "soon")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot set cairn.checkpoint_retention to 'soon'"),
            "{e}"
        );
        let e = options.set_value("nope", "1").unwrap_err().to_string();
        assert!(
            e.contains("unknown setting 'cairn.nope'") && e.contains("cairn.checkpoint_dir"),
            "{e}"
        );
        assert!(!e.contains("cannot checkpoint"), "{e}");
        assert_eq!(options, before);
    }
}
