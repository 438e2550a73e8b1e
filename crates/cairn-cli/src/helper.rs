//! Line editing: statements continue until `;`, tab completes keywords,
//! meta-commands, tables, columns and checkpoints, and SQL is highlighted.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use datafusion::sql::sqlparser::keywords::ALL_KEYWORDS;
use rustyline::completion::{Completer, Pair};
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Helper};

use crate::command::META_COMMANDS;

/// Words of Cairn's statements, completed like keywords.
const CAIRN_WORDS: &[&str] = &[
    "CHECKPOINT",
    "CHECKPOINTS",
    "LAZY",
    "LOCAL",
    "LINEAGE",
    "REFRESH",
    "VACUUM",
];

/// Names the completer offers, refreshed by the shell after each statement.
#[derive(Debug, Default)]
pub struct Names {
    /// The tables of the session (named checkpoints of the dir included),
    /// each with its columns.
    pub tables: Vec<(String, Vec<String>)>,
    /// Named checkpoints.
    pub checkpoints: Vec<String>,
    /// Settings, `cairn.*` and `datafusion.*`.
    pub settings: Vec<String>,
}

impl Names {
    /// The columns of the tables `line` names, or of every table when it
    /// names none yet (`SELECT sr` before its `FROM`).
    fn columns_for(&self, line: &str) -> Vec<&String> {
        let words: Vec<String> = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let named: Vec<&(String, Vec<String>)> = self
            .tables
            .iter()
            .filter(|(t, _)| words.contains(&t.to_lowercase()))
            .collect();
        let tables = if named.is_empty() {
            self.tables.iter().collect()
        } else {
            named
        };
        tables.into_iter().flat_map(|(_, c)| c).collect()
    }
}

/// Where a setting's name starts, when the line so far is `SET `, `SHOW `
/// or `RESET ` and the name being typed (dots included).
fn setting_start(before: &str) -> Option<usize> {
    let trimmed = before.trim_start();
    let (word, rest) = trimmed.split_once(char::is_whitespace)?;
    if !["set", "show", "reset"].contains(&word.to_lowercase().as_str()) {
        return None;
    }
    let rest = rest.trim_start();
    if rest.contains(char::is_whitespace) {
        return None;
    }
    Some(before.len() - rest.len())
}

/// Whether the word being typed names a checkpoint: after `DROP
/// CHECKPOINT`, `REFRESH CHECKPOINT` or `EXPLAIN LINEAGE`.
fn names_a_checkpoint(before: &str) -> bool {
    let words: Vec<String> = before.split_whitespace().map(str::to_lowercase).collect();
    matches!(
        words.as_slice(),
        [.., a, b] if (a == "drop" || a == "refresh") && b == "checkpoint"
            || a == "explain" && b == "lineage"
            || a == "exists" && words.len() >= 4 && words[words.len() - 4] == "drop"
    )
}

/// Cairn's rustyline helper.
#[derive(Debug, Default, Clone)]
pub struct CairnHelper {
    names: Arc<RwLock<Names>>,
    color: bool,
}

impl CairnHelper {
    pub fn new(color: bool) -> Self {
        Self {
            names: Arc::default(),
            color,
        }
    }

    /// Where the shell puts fresh names.
    pub fn names(&self) -> Arc<RwLock<Names>> {
        Arc::clone(&self.names)
    }

    /// Completion candidates for the word `prefix` on a line starting with
    /// `line_start`; `line` is the whole statement being typed.
    pub fn candidates(&self, line_start: &str, prefix: &str, line: &str) -> Vec<String> {
        if line_start.trim().is_empty() && prefix.starts_with('\\') {
            return META_COMMANDS
                .iter()
                .map(|(c, _)| c.split_whitespace().next().unwrap_or(c).to_string())
                .filter(|c| c.starts_with(prefix))
                .collect();
        }
        let names = self.names.read().expect("names poisoned");
        if setting_start(line_start).is_some() {
            let lower = prefix.to_lowercase();
            return names
                .settings
                .iter()
                .filter(|s| s.starts_with(&lower))
                .cloned()
                .collect();
        }
        if names_a_checkpoint(line_start) {
            return names
                .checkpoints
                .iter()
                .filter(|c| c.starts_with(prefix))
                .cloned()
                .collect();
        }
        if prefix.is_empty() {
            return Vec::new();
        }
        let upper = prefix.to_ascii_uppercase();
        let lower_typed = prefix.chars().all(|c| !c.is_ascii_uppercase());
        let mut out: Vec<String> = Vec::new();
        let tables = names.tables.iter().map(|(t, _)| t);
        for name in tables
            .chain(&names.checkpoints)
            .chain(names.columns_for(line))
        {
            if name.starts_with(prefix) && !out.contains(name) {
                out.push(name.clone());
            }
        }
        // A name the session has wins over keywords that share its start
        // (`sr` is `src`, not SRID); keywords come when no name fits.
        if !out.is_empty() {
            return out;
        }
        for word in ALL_KEYWORDS
            .iter()
            .copied()
            .chain(CAIRN_WORDS.iter().copied())
        {
            if word.starts_with(&upper) {
                let word = if lower_typed {
                    word.to_ascii_lowercase()
                } else {
                    word.to_string()
                };
                if !out.contains(&word) {
                    out.push(word);
                }
            }
        }
        out
    }
}

fn word_start(line: &str, pos: usize) -> usize {
    line[..pos]
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '\\'))
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0)
}

impl Completer for CairnHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let start = setting_start(&line[..pos]).unwrap_or_else(|| word_start(line, pos));
        let candidates = self
            .candidates(&line[..start], &line[start..pos], line)
            .into_iter()
            .map(|c| Pair {
                display: c.clone(),
                replacement: c,
            })
            .collect();
        Ok((start, candidates))
    }
}

impl Hinter for CairnHelper {
    type Hint = String;
}

/// True when `input` is a whole statement: a meta-command, or SQL whose
/// last non-blank character, outside quotes and comments, is `;`.
pub fn is_complete(input: &str) -> bool {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.starts_with('\\') {
        return true;
    }
    let mut quote: Option<char> = None;
    let mut last = None;
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    last = Some(c);
                }
                '-' if chars.peek() == Some(&'-') => {
                    // A comment runs to the end of its line.
                    for c in chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                c if c.is_whitespace() => {}
                c => last = Some(c),
            },
        }
    }
    quote.is_none() && last == Some(';')
}

/// Whether `line` may hold a credential (`SET cairn.s3.secret_access_key`,
/// a session token, or any other `secret`/`password`/`token` setting).
pub fn mentions_a_secret(line: &str) -> bool {
    let line = line.to_lowercase();
    ["secret", "session_token", "password"]
        .iter()
        .any(|word| line.contains(word))
}

impl Validator for CairnHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

const KEYWORD: &str = "\x1b[1;34m";
const STRING: &str = "\x1b[32m";
const NUMBER: &str = "\x1b[33m";
const COMMENT: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// `line` with keywords, strings, numbers and comments colored.
pub fn highlight_sql(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut i = 0;
    let text = |a: usize, b: usize| &line[chars[a].0..chars.get(b).map_or(line.len(), |c| c.0)];
    while i < chars.len() {
        let c = chars[i].1;
        let start = i;
        if c == '\'' || c == '"' {
            i += 1;
            while i < chars.len() && chars[i].1 != c {
                i += 1;
            }
            i = (i + 1).min(chars.len());
            let color = if c == '\'' { STRING } else { "" };
            out.push_str(color);
            out.push_str(text(start, i));
            if !color.is_empty() {
                out.push_str(RESET);
            }
        } else if c == '-' && chars.get(i + 1).is_some_and(|n| n.1 == '-') {
            while i < chars.len() && chars[i].1 != '\n' {
                i += 1;
            }
            out.push_str(COMMENT);
            out.push_str(text(start, i));
            out.push_str(RESET);
        } else if c.is_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].1.is_alphanumeric() || chars[i].1 == '_') {
                i += 1;
            }
            let word = text(start, i);
            let upper = word.to_ascii_uppercase();
            if ALL_KEYWORDS.binary_search(&upper.as_str()).is_ok()
                || CAIRN_WORDS.contains(&upper.as_str())
            {
                out.push_str(KEYWORD);
                out.push_str(word);
                out.push_str(RESET);
            } else {
                out.push_str(word);
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].1.is_ascii_digit() || chars[i].1 == '.') {
                i += 1;
            }
            out.push_str(NUMBER);
            out.push_str(text(start, i));
            out.push_str(RESET);
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

impl Highlighter for CairnHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if self.color && !line.trim_start().starts_with('\\') {
            Cow::Owned(highlight_sql(line))
        } else {
            Cow::Borrowed(line)
        }
    }

    fn highlight_char(&self, _line: &str, _pos: usize, _kind: CmdKind) -> bool {
        self.color
    }
}

impl Helper for CairnHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_credentials_are_recognized() {
        assert!(mentions_a_secret("SET cairn.s3.SECRET_ACCESS_KEY = 'x';"));
        assert!(mentions_a_secret("set cairn.s3.session_token to 'x'"));
        assert!(!mentions_a_secret("SET cairn.s3.access_key_id = 'AKID';"));
    }

    #[test]
    fn statements_end_at_a_semicolon_outside_quotes_and_comments() {
        assert!(is_complete("SELECT 1;"));
        assert!(is_complete("SELECT 1;  \n"));
        assert!(is_complete("\\d"));
        assert!(!is_complete("SELECT 1"));
        assert!(!is_complete("SELECT ';'"));
        assert!(!is_complete("SELECT 'a;"));
        assert!(!is_complete("SELECT 1 -- done;"));
        assert!(is_complete("SELECT 1; -- a comment"));
    }

    #[test]
    fn completion_offers_keywords_names_and_meta_commands() {
        let helper = CairnHelper::new(false);
        {
            let names = helper.names();
            let mut names = names.write().unwrap();
            names.tables = vec![
                ("ranks".into(), vec!["rank".into()]),
                ("edges".into(), vec!["src".into(), "dst".into()]),
            ];
            names.checkpoints = vec!["ranks_v2".into()];
            names.settings = vec![
                "cairn.checkpoint_dir".into(),
                "cairn.checkpoint_retention".into(),
                "datafusion.execution.batch_size".into(),
            ];
        }
        let got = helper.candidates("SELECT * FROM ", "ra", "SELECT * FROM ra");
        assert!(
            got.contains(&"ranks".into()) && got.contains(&"ranks_v2".into()),
            "{got:?}"
        );
        // No name fits: keywords.
        let got = helper.candidates("SELECT * FROM t WHERE x ", "bet", "");
        assert_eq!(got, vec!["between".to_string()]);
        assert!(
            helper
                .candidates("", "CHECKP", "CHECKP")
                .contains(&"CHECKPOINT".into())
        );
        assert!(
            helper
                .candidates("", "checkp", "checkp")
                .contains(&"checkpoint".into())
        );
        let meta = helper.candidates("", "\\ti", "\\ti");
        assert_eq!(meta, vec!["\\timing".to_string()]);
    }

    /// Columns come from the tables the statement names, or from every
    /// table before it names one.
    #[test]
    fn columns_of_the_tables_named_so_far() {
        let helper = CairnHelper::new(false);
        helper.names().write().unwrap().tables = vec![
            ("degrees".into(), vec!["src".into(), "n".into()]),
            ("scores".into(), vec!["score".into(), "sr_id".into()]),
        ];
        let none_named = helper.candidates("SELECT ", "sr", "SELECT sr");
        assert!(
            none_named.contains(&"src".into()) && none_named.contains(&"sr_id".into()),
            "{none_named:?}"
        );
        let named = helper.candidates("SELECT ", "sr", "SELECT sr FROM degrees");
        assert!(named.contains(&"src".into()), "{named:?}");
        assert!(!named.contains(&"sr_id".into()), "{named:?}");
    }

    #[test]
    fn settings_after_set_and_checkpoints_after_drop() {
        let helper = CairnHelper::new(false);
        {
            let names = helper.names();
            let mut names = names.write().unwrap();
            names.checkpoints = vec!["ranks".into(), "rates".into()];
            names.settings = vec!["cairn.checkpoint_dir".into(), "cairn.s3.region".into()];
        }
        assert_eq!(setting_start("SET cairn.che"), Some(4));
        assert_eq!(
            helper.candidates("SET ", "cairn.ch", "SET cairn.ch"),
            vec!["cairn.checkpoint_dir".to_string()]
        );
        assert_eq!(
            helper.candidates("show ", "", "show "),
            vec![
                "cairn.checkpoint_dir".to_string(),
                "cairn.s3.region".to_string()
            ]
        );
        assert_eq!(
            helper.candidates("DROP CHECKPOINT ", "ra", "DROP CHECKPOINT ra"),
            vec!["ranks".to_string(), "rates".to_string()]
        );
        assert_eq!(
            helper.candidates("explain lineage ", "rat", "explain lineage rat"),
            vec!["rates".to_string()]
        );
    }

    #[test]
    fn highlighting_keeps_the_text() {
        let line = "select 'a;b', 42 from t -- note";
        let colored = highlight_sql(line);
        let plain: String = {
            let mut s = String::new();
            let mut skip = false;
            for c in colored.chars() {
                match (skip, c) {
                    (false, '\x1b') => skip = true,
                    (true, 'm') => skip = false,
                    (true, _) => {}
                    (false, c) => s.push(c),
                }
            }
            s
        };
        assert_eq!(plain, line);
        assert!(colored.contains("\x1b[1;34mselect"));
    }
}
