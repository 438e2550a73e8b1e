//! Meta-commands: `\d`, `\dc`, `\timing`, `\format`, `\i`, `\o`, `\maxrows`...

use std::path::PathBuf;
use std::str::FromStr;

use crate::print::Format;

/// Every meta-command with its help line.
pub const META_COMMANDS: &[(&str, &str)] = &[
    ("\\?", "this help"),
    ("\\q", "quit (also Ctrl-D)"),
    ("\\d [NAME]", "list tables, or the columns of one"),
    (
        "\\dc",
        "list checkpoints with size and age (also \\checkpoints)",
    ),
    ("\\checkpoints", "list checkpoints with size and age"),
    ("\\timing [on|off]", "print how long each statement took"),
    (
        "\\format FORMAT",
        "table, csv, tsv, json, ndjson or markdown",
    ),
    ("\\i FILE", "run the statements in FILE"),
    (
        "\\o [FILE]",
        "send results to FILE; without FILE, back to the terminal",
    ),
    (
        "\\maxrows N|all",
        "rows a table shows before it says how many it hid",
    ),
];

/// A parsed meta-command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Quit,
    ListTables,
    Describe(String),
    Checkpoints,
    /// `None` toggles.
    Timing(Option<bool>),
    Format(Format),
    Include(PathBuf),
    /// `None` sends results back to the terminal.
    Output(Option<PathBuf>),
    /// `None` shows every row.
    MaxRows(Option<usize>),
}

impl FromStr for Command {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, String> {
        let line = line.trim().trim_end_matches(';').trim();
        let (name, arg) = match line.split_once(char::is_whitespace) {
            Some((name, arg)) => (name, Some(arg.trim())),
            None => (line, None),
        };
        let need = |what: &str| {
            arg.filter(|a| !a.is_empty())
                .map(str::to_string)
                .ok_or_else(|| format!("{name} needs {what}; \\? lists the commands"))
        };
        Ok(match name {
            "\\?" | "\\h" | "\\help" => Command::Help,
            "\\q" | "\\quit" => Command::Quit,
            "\\d" => match arg {
                Some(a) if !a.is_empty() => Command::Describe(a.to_string()),
                _ => Command::ListTables,
            },
            "\\dc" | "\\checkpoints" => Command::Checkpoints,
            "\\timing" => Command::Timing(match arg {
                None | Some("") => None,
                Some("on") => Some(true),
                Some("off") => Some(false),
                Some(other) => return Err(format!("\\timing takes on or off, not '{other}'")),
            }),
            "\\format" => Command::Format(need("a format")?.parse()?),
            "\\i" => Command::Include(PathBuf::from(need("a file name")?)),
            "\\o" => Command::Output(arg.filter(|a| !a.is_empty()).map(PathBuf::from)),
            "\\maxrows" => {
                let n = need("a number or all")?;
                if n.eq_ignore_ascii_case("all") {
                    Command::MaxRows(None)
                } else {
                    let n: usize = n
                        .parse()
                        .map_err(|_| format!("\\maxrows takes a number or all, not '{n}'"))?;
                    Command::MaxRows(Some(n))
                }
            }
            other => return Err(format!("unknown command '{other}'; \\? lists the commands")),
        })
    }
}

/// The text of `\?`.
pub fn help() -> String {
    let mut text = String::from(
        "Statements end with ';' and may span lines. Besides DataFusion's SQL:\n\
         \n\
         \x20 CHECKPOINT [OR REPLACE] [LAZY] TABLE name AS query;   LOCAL CHECKPOINT TABLE ...;\n\
         \x20 SELECT ... FROM CHECKPOINT(SELECT ...) AS t;           SHOW CHECKPOINTS;\n\
         \x20 REFRESH CHECKPOINT name;   EXPLAIN LINEAGE name;   DROP CHECKPOINT [IF EXISTS] name;\n\
         \x20 VACUUM CHECKPOINTS;   SET cairn.checkpoint_dir = '...';   SHOW cairn.checkpoint_dir;\n\
         \n\
         Commands:\n",
    );
    for (command, what) in META_COMMANDS {
        text.push_str(&format!("  {command:<18} {what}\n"));
    }
    text.push_str("\nCtrl-C cancels the running statement; Ctrl-R searches the history.\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_their_arguments() {
        assert_eq!("\\d".parse(), Ok(Command::ListTables));
        assert_eq!("\\d ranks".parse(), Ok(Command::Describe("ranks".into())));
        assert_eq!("\\checkpoints".parse(), Ok(Command::Checkpoints));
        assert_eq!("\\timing".parse(), Ok(Command::Timing(None)));
        assert_eq!("\\timing off".parse(), Ok(Command::Timing(Some(false))));
        assert_eq!("\\format CSV".parse(), Ok(Command::Format(Format::Csv)));
        assert_eq!("\\maxrows all".parse(), Ok(Command::MaxRows(None)));
        assert_eq!("\\maxrows 5;".parse(), Ok(Command::MaxRows(Some(5))));
        assert_eq!("\\o".parse(), Ok(Command::Output(None)));
        assert_eq!(
            "\\o out.csv".parse(),
            Ok(Command::Output(Some("out.csv".into())))
        );
    }

    #[test]
    fn bad_commands_say_what_to_do() {
        let err = |s: &str| s.parse::<Command>().unwrap_err();
        assert_eq!(err("\\x"), "unknown command '\\x'; \\? lists the commands");
        assert!(err("\\format").contains("\\format needs a format"));
        assert!(err("\\format yaml").contains("unknown format 'yaml'"));
        assert!(err("\\maxrows many").contains("takes a number or all"));
        assert!(err("\\timing maybe").contains("takes on or off"));
    }
}
