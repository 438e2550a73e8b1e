//! Cairn's statements on top of DataFusion's parser: a script is split into
//! statements; Cairn's own are recognized by their leading words, and
//! everything else goes to DataFusion's `DFParser` unchanged.
//!
//! ```sql
//! SET cairn.checkpoint_dir = 'file:///data/ckpt';      SHOW cairn.checkpoint_dir;
//! [LOCAL] CHECKPOINT [OR REPLACE] [LAZY] TABLE name AS <query>;
//! SHOW CHECKPOINTS;   REFRESH CHECKPOINT name;   EXPLAIN LINEAGE [FORMAT DOT] name;
//! DROP CHECKPOINT [IF EXISTS] name;   VACUUM CHECKPOINTS;
//! ```

use std::fmt;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, Query, Value};
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer};

/// One statement of a script.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Anything that is not Cairn's: DataFusion plans and runs it.
    DataFusion(Box<DFStatement>),
    /// `[LOCAL] CHECKPOINT [OR REPLACE] [LAZY] TABLE name AS query`
    CheckpointTable {
        /// The name, normalized as DataFusion normalizes table names.
        name: String,
        /// `OR REPLACE`: an existing table of that name is replaced.
        replace: bool,
        /// `LAZY`: written by the first query that reads it.
        lazy: bool,
        /// `LOCAL`: kept in memory, not durable.
        local: bool,
        /// The query checkpointed.
        query: Box<Query>,
    },
    /// `SHOW CHECKPOINTS`
    ShowCheckpoints,
    /// `REFRESH CHECKPOINT name`
    Refresh {
        /// The checkpoint.
        name: String,
    },
    /// `EXPLAIN LINEAGE [FORMAT TEXT | DOT] name`
    ExplainLineage {
        /// The checkpoint.
        name: String,
        /// `FORMAT DOT`: the chain as a Graphviz graph.
        dot: bool,
    },
    /// `DROP CHECKPOINT [IF EXISTS] name`
    Drop {
        /// The checkpoint.
        name: String,
        /// `IF EXISTS`: no error if there is none.
        if_exists: bool,
    },
    /// `VACUUM CHECKPOINTS`
    Vacuum,
    /// `SET cairn.<key> = <value>`
    SetOption {
        /// The key, without `cairn.`.
        key: String,
        /// The value.
        value: String,
    },
    /// `SHOW cairn.<key>`
    ShowOption {
        /// The key, without `cairn.`.
        key: String,
    },
}

/// A statement with where it stands in the script.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    /// What the statement is.
    pub statement: Statement,
    /// Its text, as written.
    pub text: String,
    /// Where it starts (1-based line and column).
    pub start: Location,
}

impl fmt::Display for ParsedStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl ParsedStatement {
    /// The statement as sqlparser prints it back: equal for equal trees.
    pub fn statement_text(&self) -> String {
        match &self.statement {
            Statement::DataFusion(s) => s.to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// `CHECKPOINT(SELECT ...)` as `CHECKPOINT((SELECT ...))`, which parses to
/// the same tree. sqlparser tries a function argument as a named argument
/// (`name VALUE arg`) before anything else, and `SELECT value * 2 ...` fits
/// that reading up to its `*` (taken for a wildcard argument) with no
/// dialect hook on the way to refuse it; inside parentheses the argument is
/// a plain subquery. The added tokens take the spans of the parentheses
/// they stand next to, so error positions are unchanged.
fn parenthesize_checkpoint_queries(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .collect();
    let is_word = |i: usize, word: &str| {
        matches!(&tokens[i].token, Token::Word(w)
            if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    };
    // (after this open parenthesis, before this close one)
    let mut opens = Vec::new();
    let mut closes = Vec::new();
    for (n, window) in significant.windows(3).enumerate() {
        let [name, open, first] = [window[0], window[1], window[2]];
        let in_from = n > 0
            && (matches!(tokens[significant[n - 1]].token, Token::Comma)
                || ["from", "join", "lateral"]
                    .iter()
                    .any(|w| is_word(significant[n - 1], w)));
        if !(in_from
            && is_word(name, "checkpoint")
            && tokens[open].token == Token::LParen
            && (is_word(first, "select") || is_word(first, "with")))
        {
            continue;
        }
        let mut depth = 0usize;
        let close = significant[n + 1..].iter().copied().find(|&i| {
            match tokens[i].token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            depth == 0
        });
        if let Some(close) = close {
            opens.push(open);
            closes.push(close);
        }
    }
    if opens.is_empty() {
        return tokens;
    }
    let mut out = Vec::with_capacity(tokens.len() + 2 * opens.len());
    for (i, token) in tokens.into_iter().enumerate() {
        for _ in closes.iter().filter(|&&c| c == i) {
            out.push(TokenWithSpan::new(Token::RParen, token.span));
        }
        let span = token.span;
        out.push(token);
        for _ in opens.iter().filter(|&&o| o == i) {
            out.push(TokenWithSpan::new(Token::LParen, span));
        }
    }
    out
}

/// Splits `sql` into statements and parses each.
pub fn parse_script(sql: &str, dialect: &dyn Dialect) -> Result<Vec<ParsedStatement>> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(ParserError::from)?;
    let mut parser = DFParserBuilder::new(parenthesize_checkpoint_queries(tokens))
        .with_dialect(dialect)
        .build()?;
    let lines = LineIndex::new(sql);
    let mut out = Vec::new();
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {}
        let first = parser.parser.peek_token();
        if first.token == Token::EOF {
            break;
        }
        let statement = match parse_cairn(&mut parser.parser).map_err(parse_error)? {
            Some(s) => s,
            None => Statement::DataFusion(Box::new(parser.parse_statement()?)),
        };
        // The statement ends with its last token that is not whitespace
        // (the parser may stand on whitespace it peeked past).
        let mut last = parser.parser.get_current_index();
        while last > 0 && matches!(parser.parser.token_at(last).token, Token::Whitespace(_)) {
            last -= 1;
        }
        let end = parser.parser.token_at(last).span.end;
        let next = parser.parser.peek_token();
        if next.token != Token::EOF && next.token != Token::SemiColon {
            return Err(parse_error(expected("end of statement", &next)));
        }
        // Not trimmed: a token can end in whitespace (sqlparser 0.62 reads
        // `@\r` as one word).
        let text = lines.slice(sql, first.span.start, end);
        let text = if end.line == 0 { text.trim_end() } else { text };
        out.push(ParsedStatement {
            statement,
            text: text.to_string(),
            start: first.span.start,
        });
    }
    Ok(out)
}

fn parse_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}

fn expected(what: &str, found: &TokenWithSpan) -> ParserError {
    ParserError::ParserError(format!(
        "Expected: {what}, found: {found}{}",
        found.span.start
    ))
}

/// The unquoted word at `n` tokens ahead, upper-cased.
fn word_at(parser: &Parser, n: usize) -> Option<String> {
    match &parser.peek_nth_token_ref(n).token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

fn words_ahead(parser: &Parser, words: &[&str]) -> bool {
    words
        .iter()
        .enumerate()
        .all(|(i, w)| word_at(parser, i).as_deref() == Some(*w))
}

fn skip(parser: &mut Parser, n: usize) {
    for _ in 0..n {
        parser.next_token();
    }
}

/// Parses a Cairn statement if one starts here; leaves the parser
/// untouched otherwise.
fn parse_cairn(parser: &mut Parser) -> Result<Option<Statement>, ParserError> {
    let local = words_ahead(parser, &["LOCAL", "CHECKPOINT"]);
    let checkpoint_table = word_at(parser, 0).as_deref() == Some("CHECKPOINT")
        && matches!(word_at(parser, 1).as_deref(), Some("TABLE" | "OR" | "LAZY"));
    if local || checkpoint_table {
        skip(parser, if local { 2 } else { 1 });
        return parse_checkpoint_table(parser, local).map(Some);
    }
    if words_ahead(parser, &["SHOW", "CHECKPOINTS"]) {
        skip(parser, 2);
        return Ok(Some(Statement::ShowCheckpoints));
    }
    if words_ahead(parser, &["VACUUM", "CHECKPOINTS"]) {
        skip(parser, 2);
        return Ok(Some(Statement::Vacuum));
    }
    if words_ahead(parser, &["REFRESH", "CHECKPOINT"]) {
        skip(parser, 2);
        let name = parse_name(parser)?;
        return Ok(Some(Statement::Refresh { name }));
    }
    if words_ahead(parser, &["EXPLAIN", "LINEAGE"]) {
        skip(parser, 2);
        let mut dot = false;
        if word_at(parser, 0).as_deref() == Some("FORMAT") {
            skip(parser, 1);
            dot = match word_at(parser, 0).as_deref() {
                Some("DOT") => true,
                Some("TEXT") => false,
                _ => return Err(expected("DOT or TEXT after FORMAT", &parser.peek_token())),
            };
            skip(parser, 1);
        }
        let name = parse_name(parser)?;
        return Ok(Some(Statement::ExplainLineage { name, dot }));
    }
    if words_ahead(parser, &["DROP", "CHECKPOINT"]) {
        skip(parser, 2);
        let if_exists = parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = parse_name(parser)?;
        return Ok(Some(Statement::Drop { name, if_exists }));
    }
    let cairn_option = |n: usize| {
        word_at(parser, n).as_deref() == Some("CAIRN")
            && parser.peek_nth_token_ref(n + 1).token == Token::Period
    };
    if word_at(parser, 0).as_deref() == Some("SET") && cairn_option(1) {
        skip(parser, 3);
        let key = option_key(parser)?;
        if !parser.consume_token(&Token::Eq) && !parser.parse_keyword(Keyword::TO) {
            return Err(expected("= or TO", &parser.peek_token()));
        }
        let value = option_value(parser, cairn_core::CairnOptions::is_secret(&key))?;
        return Ok(Some(Statement::SetOption { key, value }));
    }
    if word_at(parser, 0).as_deref() == Some("SHOW") && cairn_option(1) {
        skip(parser, 3);
        let key = option_key(parser)?;
        return Ok(Some(Statement::ShowOption { key }));
    }
    Ok(None)
}

fn parse_checkpoint_table(parser: &mut Parser, local: bool) -> Result<Statement, ParserError> {
    let replace = parser.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    let lazy = word_at(parser, 0).as_deref() == Some("LAZY");
    if lazy {
        skip(parser, 1);
    }
    if !parser.parse_keyword(Keyword::TABLE) {
        return Err(expected("TABLE", &parser.peek_token()));
    }
    let name = parse_name(parser)?;
    if !parser.parse_keyword(Keyword::AS) {
        return Err(expected("AS followed by a query", &parser.peek_token()));
    }
    let query = parser.parse_query()?;
    Ok(Statement::CheckpointTable {
        name,
        replace,
        lazy,
        local,
        query,
    })
}

/// A checkpoint name: one identifier, normalized as DataFusion normalizes
/// table names (unquoted names are lower-cased).
fn parse_name(parser: &mut Parser) -> Result<String, ParserError> {
    let at = parser.peek_token();
    if matches!(&at.token, Token::Word(w) if w.quote_style.is_none() && w.keyword == Keyword::AS) {
        return Err(expected("a checkpoint name", &at));
    }
    let name = parser
        .parse_object_name(false)
        .map_err(|_| expected("a checkpoint name", &at))?;
    let [part] = name.0.as_slice() else {
        return Err(ParserError::ParserError(format!(
            "checkpoint names have one part, found '{name}'{}",
            at.span.start
        )));
    };
    let ident = part
        .as_ident()
        .ok_or_else(|| expected("a checkpoint name", &at))?;
    Ok(match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    })
}

/// `checkpoint_dir`, `s3.endpoint`: words joined by dots.
fn option_key(parser: &mut Parser) -> Result<String, ParserError> {
    let mut key = String::new();
    loop {
        let at = parser.peek_token();
        let Token::Word(w) = at.token else {
            return Err(expected("an option name after 'cairn.'", &at));
        };
        parser.next_token();
        key.push_str(&w.value.to_lowercase());
        if !parser.consume_token(&Token::Period) {
            return Ok(key);
        }
        key.push('.');
    }
}

/// The value of `SET cairn.<key>`; an error about a secret's value does
/// not repeat it.
fn option_value(parser: &mut Parser, secret: bool) -> Result<String, ParserError> {
    let at = parser.peek_token();
    let found = |text: String| {
        if secret {
            "a value that is not quoted".into()
        } else {
            text
        }
    };
    let expr = match parser.parse_expr() {
        Ok(expr) => expr,
        Err(_) if secret => return Err(expected_value(&found(String::new()), &at)),
        Err(e) => return Err(e),
    };
    match expr {
        SqlExpr::Value(v) => match v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Ok(s),
            Value::Number(n, _) => Ok(n),
            Value::Boolean(b) => Ok(b.to_string()),
            other => Err(expected_value(&found(other.to_string()), &at)),
        },
        SqlExpr::Identifier(id) => Ok(id.value),
        other => Err(expected_value(&found(other.to_string()), &at)),
    }
}

fn expected_value(found: &str, at: &TokenWithSpan) -> ParserError {
    ParserError::ParserError(format!(
        "Expected: a quoted value, found: {found}{}",
        at.span.start
    ))
}

/// Maps 1-based line/column locations to byte offsets.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn offset(&self, text: &str, at: Location) -> usize {
        if at.line == 0 {
            return text.len();
        }
        let line_start = self
            .starts
            .get(at.line as usize - 1)
            .copied()
            .unwrap_or(text.len());
        let line = &text[line_start..];
        let column: usize = line
            .chars()
            .take(at.column.saturating_sub(1) as usize)
            .map(char::len_utf8)
            .sum();
        line_start + column
    }

    fn slice<'a>(&self, text: &'a str, start: Location, end: Location) -> &'a str {
        let (a, b) = (self.offset(text, start), self.offset(text, end));
        if a <= b { &text[a..b] } else { "" }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::CairnDialect;
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    fn parse(sql: &str) -> Result<Vec<ParsedStatement>> {
        parse_script(sql, &CairnDialect::new(Box::new(GenericDialect {})))
    }

    /// Found by the statement_parser fuzz target: the text of a statement
    /// lost the `\r` that ends its last token, and no longer parsed alone.
    #[test]
    fn a_statement_text_keeps_whitespace_inside_its_last_token() {
        let script = "SELECT a, r\r\r@\r\r\r";
        let parsed = parse(script).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].text, "SELECT a, r\r\r@\r");
        let again = parse(&parsed[0].text).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].text, parsed[0].text);
    }

    #[test]
    fn splits_scripts_and_keeps_each_statement_text() {
        let script = "SET cairn.checkpoint_dir = 'memory://x';\n\
                      CHECKPOINT OR REPLACE LAZY TABLE Ranks AS SELECT 1 AS a;\n\
                      select * from ranks ;;  SHOW CHECKPOINTS";
        let parsed = parse(script).unwrap();
        let texts: Vec<&str> = parsed.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "SET cairn.checkpoint_dir = 'memory://x'",
                "CHECKPOINT OR REPLACE LAZY TABLE Ranks AS SELECT 1 AS a",
                "select * from ranks",
                "SHOW CHECKPOINTS"
            ]
        );
        assert!(
            matches!(&parsed[0].statement, Statement::SetOption { key, value }
            if key == "checkpoint_dir" && value == "memory://x")
        );
        assert!(
            matches!(&parsed[1].statement, Statement::CheckpointTable { name, replace: true, lazy: true, local: false, .. }
            if name == "ranks")
        );
        assert!(matches!(parsed[2].statement, Statement::DataFusion(_)));
        assert_eq!(parsed[2].start.line, 3);
    }

    #[test]
    fn every_statement_form_parses() {
        let cases = [
            ("local checkpoint table t as select 1", "local"),
            (
                "CHECKPOINT TABLE \"Mixed Case\" AS WITH a AS (SELECT 1) SELECT * FROM a",
                "quoted",
            ),
            ("REFRESH CHECKPOINT r", "refresh"),
            ("EXPLAIN LINEAGE r", "lineage"),
            ("EXPLAIN LINEAGE FORMAT DOT r", "lineage as a graph"),
            ("DROP CHECKPOINT IF EXISTS r", "drop"),
            ("VACUUM CHECKPOINTS", "vacuum"),
            ("SHOW cairn.checkpoint_dir", "show"),
            ("SET cairn.checkpoint_retention TO '1 day'", "set"),
            ("SELECT * FROM CHECKPOINT(SELECT 1 AS a) AS t", "inline"),
            (
                "SELECT * FROM CHECKPOINT((SELECT 1 AS a)) AS t",
                "inline, parenthesized",
            ),
        ];
        for (sql, what) in cases {
            let parsed = parse(sql).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(parsed.len(), 1, "{what}");
        }
        let Statement::CheckpointTable { name, .. } =
            &parse("CHECKPOINT TABLE \"Mixed Case\" AS SELECT 1").unwrap()[0].statement
        else {
            panic!("not a checkpoint table");
        };
        assert_eq!(name, "Mixed Case");
    }

    #[test]
    fn both_inline_forms_give_the_same_tree() {
        let bare = parse("SELECT * FROM CHECKPOINT(SELECT 1 AS a) AS t").unwrap();
        let wrapped = parse("SELECT * FROM CHECKPOINT((SELECT 1 AS a)) AS t").unwrap();
        let (Statement::DataFusion(a), Statement::DataFusion(b)) =
            (&bare[0].statement, &wrapped[0].statement)
        else {
            panic!("not DataFusion statements");
        };
        assert_eq!(a.to_string(), b.to_string());
        // Elsewhere a bare SELECT is still not an expression.
        assert!(parse("SELECT abs(SELECT 1)").is_err());
    }

    /// sqlparser first reads `SELECT value ...` as the named argument
    /// `SELECT VALUE <arg>`: these failed with "Expected: ), found: v".
    #[test]
    fn a_checkpointed_query_may_select_value() {
        for query in [
            "SELECT value AS v FROM generate_series(1, 10)",
            "SELECT value FROM generate_series(1, 10)",
            "SELECT value",
            "WITH value AS (SELECT 1 AS x) SELECT x FROM value",
            "SELECT value.x FROM (SELECT 1 AS x) AS value",
            // Up to its `*` this fits `SELECT VALUE *`, a named argument
            // whose value is a wildcard: no dialect hook sees it.
            "SELECT value * 2 AS v FROM generate_series(1, 10)",
            "SELECT value *2, value FROM range(3)",
            "SELECT 1 AS a FROM (SELECT CHECKPOINT(1)) AS x, CHECKPOINT(SELECT value * 3) AS y",
        ] {
            let bare = parse(&format!("SELECT count(*) FROM CHECKPOINT({query}) AS t"))
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            let wrapped = parse(&format!("SELECT count(*) FROM CHECKPOINT(({query})) AS t"))
                .unwrap_or_else(|e| panic!("({query}): {e}"));
            assert_eq!(
                bare[0].statement_text(),
                wrapped[0].statement_text(),
                "{query}"
            );
        }
        // A named argument elsewhere still parses as one.
        assert!(parse("SELECT * FROM f(a VALUE 1)").is_ok());
    }

    #[test]
    fn errors_name_the_problem_and_its_position() {
        let err = |sql: &str| parse(sql).unwrap_err().to_string();
        let e = err("CHECKPOINT TABLE AS SELECT 1");
        assert!(
            e.contains("Expected: a checkpoint name") && e.contains("Line: 1, Column: 18"),
            "{e}"
        );
        let e = err("SELECT 1;\nCHECKPOINT TABLE t SELECT 1");
        assert!(
            e.contains("Expected: AS followed by a query") && e.contains("Line: 2, Column: 20"),
            "{e}"
        );
        let e = err("CHECKPOINT LAZY t AS SELECT 1");
        assert!(e.contains("Expected: TABLE"), "{e}");
        let e = err("CHECKPOINT TABLE a.b AS SELECT 1");
        assert!(
            e.contains("checkpoint names have one part, found 'a.b'"),
            "{e}"
        );
        let e = err("DROP CHECKPOINT");
        assert!(e.contains("Expected: a checkpoint name, found: EOF"), "{e}");
        let e = err("SHOW CHECKPOINTS extra");
        assert!(
            e.contains("Expected: end of statement, found: extra"),
            "{e}"
        );
        let e = err("SET cairn.checkpoint_dir = ");
        assert!(e.contains("Expected"), "{e}");
    }
}
