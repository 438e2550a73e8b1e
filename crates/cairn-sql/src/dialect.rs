//! The SQL dialect Cairn parses with: DataFusion's dialect, plus a bare
//! query as the argument of `CHECKPOINT(...)` in `FROM`.
//!
//! sqlparser 0.62 parses `CHECKPOINT((SELECT ...))` but rejects
//! `CHECKPOINT(SELECT ...)`. [`CairnDialect`] wraps any dialect, forwards
//! every behaviour to it, and parses any query that directly follows
//! `CHECKPOINT(` (`SELECT`, `WITH`, `VALUES`, `TABLE`, a parenthesized set
//! operation) as a subquery, so both forms give the same tree.
//! (Before it tries an argument as an expression, sqlparser tries it as a
//! named argument, which `SELECT value ...` happens to fit; the wrapper
//! refuses that reading where a hook sees it. `SELECT value * 2` fits it
//! past every hook, so [`crate::parse_script`] also puts a bare query after
//! `CHECKPOINT(` in parentheses before parsing.)

use std::any::TypeId;
use std::iter::Peekable;
use std::str::Chars;

use datafusion::sql::sqlparser::ast::{
    ColumnOption, Expr, GranteesType, Ident, ObjectNamePart, Query, SetExpr, Statement,
};
use datafusion::sql::sqlparser::dialect::{Dialect, Precedence};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// The name of the inline checkpoint relation.
pub const CHECKPOINT_RELATION: &str = "checkpoint";

/// DataFusion's dialect with Cairn's one extension.
#[derive(Debug)]
pub struct CairnDialect {
    inner: Box<dyn Dialect>,
}

impl CairnDialect {
    /// `inner` with Cairn's extension.
    pub fn new(inner: Box<dyn Dialect>) -> Self {
        Self { inner }
    }
}

/// The last `n` tokens the parser has consumed, latest first, whitespace
/// and comments skipped.
fn tokens_before(parser: &Parser, n: usize) -> Vec<Token> {
    let mut seen = Vec::with_capacity(n);
    let mut i = parser.get_current_index() as isize;
    while i >= 0 && seen.len() < n {
        let token = &parser.token_at(i as usize).token;
        if !matches!(token, Token::Whitespace(_)) {
            seen.push(token.clone());
        }
        i -= 1;
    }
    seen
}

fn is_checkpoint(token: &Token) -> bool {
    matches!(token, Token::Word(w)
        if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(CHECKPOINT_RELATION))
}

fn is_query_start(token: &Token) -> bool {
    matches!(token, Token::Word(w) if w.keyword == Keyword::SELECT || w.keyword == Keyword::WITH)
}

/// A token that starts a query only sometimes: `(SELECT ...) UNION ...`,
/// `VALUES (...)`, `TABLE t` (but `(1 + 2)` is an expression).
fn may_start_query(token: &Token) -> bool {
    matches!(token, Token::LParen)
        || matches!(token, Token::Word(w) if w.keyword == Keyword::VALUES || w.keyword == Keyword::TABLE)
}

/// True when the parser stands right after `CHECKPOINT(`.
fn at_checkpoint_argument(parser: &Parser) -> bool {
    matches!(tokens_before(parser, 2).as_slice(),
        [Token::LParen, name] if is_checkpoint(name))
}

/// `((q))` is `q`: parentheses around a whole query change nothing, and
/// without them `CHECKPOINT((q))` and `CHECKPOINT(q)` would differ.
fn without_redundant_parentheses(mut query: Box<Query>) -> Box<Query> {
    loop {
        let redundant = query.with.is_none()
            && query.order_by.is_none()
            && query.limit_clause.is_none()
            && query.fetch.is_none()
            && query.locks.is_empty()
            && query.for_clause.is_none()
            && query.settings.is_none()
            && query.format_clause.is_none()
            && query.pipe_operators.is_empty();
        match *query.body {
            SetExpr::Query(inner) if redundant => query = inner,
            body => {
                query.body = Box::new(body);
                return query;
            }
        }
    }
}

/// The query argument of `CHECKPOINT(...)`, when the parser stands at one:
/// `Some(Ok)` parsed, `None` not a query here (an expression follows).
fn checkpoint_query(parser: &mut Parser) -> Option<Result<Box<Query>, ParserError>> {
    if !at_checkpoint_argument(parser) {
        return None;
    }
    let next = parser.peek_token_ref().token.clone();
    if is_query_start(&next) {
        return Some(parser.parse_query().map(without_redundant_parentheses));
    }
    if !may_start_query(&next) {
        return None;
    }
    // A whole query up to CHECKPOINT's closing parenthesis, or nothing.
    let whole = parser.maybe_parse(|p| {
        let query = p.parse_query()?;
        if p.peek_token_ref().token == Token::RParen {
            Ok(query)
        } else {
            p.expected(")", p.peek_token())
        }
    });
    match whole {
        Ok(Some(query)) => Some(Ok(without_redundant_parentheses(query))),
        Ok(None) => None,
        Err(e) => Some(Err(e)),
    }
}

/// True when sqlparser is trying `CHECKPOINT(SELECT value ...)` as a named
/// argument: it reads a function argument first as `name VALUE arg` (a
/// key-value syntax of some dialects), with `SELECT` taken for the name and
/// the column `value` for the operator. That reading is refused, so that
/// the argument is parsed as the query it is.
fn misread_as_named_argument(parser: &Parser) -> bool {
    match tokens_before(parser, 4).as_slice() {
        [Token::Word(value), start, Token::LParen, name] => {
            value.keyword == Keyword::VALUE && is_query_start(start) && is_checkpoint(name)
        }
        _ => false,
    }
}

macro_rules! forward_flags {
    ($($name:ident,)*) => {
        $(fn $name(&self) -> bool {
            self.inner.$name()
        })*
    };
}

impl Dialect for CairnDialect {
    fn dialect(&self) -> TypeId {
        self.inner.dialect()
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        if let Some(query) = checkpoint_query(parser) {
            return Some(query.map(Expr::Subquery));
        }
        if misread_as_named_argument(parser) {
            return Some(Err(ParserError::ParserError(
                "a query is not a named argument".into(),
            )));
        }
        self.inner.parse_prefix(parser)
    }

    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_delimited_identifier_start(ch)
    }

    fn is_nested_delimited_identifier_start(&self, ch: char) -> bool {
        self.inner.is_nested_delimited_identifier_start(ch)
    }

    fn peek_nested_delimited_identifier_quotes(
        &self,
        chars: Peekable<Chars<'_>>,
    ) -> Option<(char, Option<char>)> {
        self.inner.peek_nested_delimited_identifier_quotes(chars)
    }

    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        self.inner.identifier_quote_style(identifier)
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        self.inner.is_identifier_start(ch)
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        self.inner.is_identifier_part(ch)
    }

    fn is_custom_operator_part(&self, ch: char) -> bool {
        self.inner.is_custom_operator_part(ch)
    }

    fn parse_infix(
        &self,
        parser: &mut Parser,
        expr: &Expr,
        precedence: u8,
    ) -> Option<Result<Expr, ParserError>> {
        self.inner.parse_infix(parser, expr, precedence)
    }

    fn get_next_precedence(&self, parser: &Parser) -> Option<Result<u8, ParserError>> {
        self.inner.get_next_precedence(parser)
    }

    fn get_next_precedence_default(&self, parser: &Parser) -> Result<u8, ParserError> {
        self.inner.get_next_precedence_default(parser)
    }

    fn parse_statement(&self, parser: &mut Parser) -> Option<Result<Statement, ParserError>> {
        self.inner.parse_statement(parser)
    }

    fn parse_column_option(
        &self,
        parser: &mut Parser,
    ) -> Result<Option<Result<Option<ColumnOption>, ParserError>>, ParserError> {
        self.inner.parse_column_option(parser)
    }

    fn prec_value(&self, prec: Precedence) -> u8 {
        self.inner.prec_value(prec)
    }

    fn prec_unknown(&self) -> u8 {
        self.inner.prec_unknown()
    }

    fn is_reserved_for_identifier(&self, kw: Keyword) -> bool {
        self.inner.is_reserved_for_identifier(kw)
    }

    fn get_reserved_keywords_for_select_item_operator(&self) -> &[Keyword] {
        self.inner.get_reserved_keywords_for_select_item_operator()
    }

    fn get_reserved_grantees_types(&self) -> &[GranteesType] {
        self.inner.get_reserved_grantees_types()
    }

    fn is_column_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_column_alias(kw, parser)
    }

    fn is_select_item_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_select_item_alias(explicit, kw, parser)
    }

    fn is_table_factor(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_table_factor(kw, parser)
    }

    fn is_table_alias(&self, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_table_alias(kw, parser)
    }

    fn is_table_factor_alias(&self, explicit: bool, kw: &Keyword, parser: &mut Parser) -> bool {
        self.inner.is_table_factor_alias(explicit, kw, parser)
    }

    fn is_identifier_generating_function_name(
        &self,
        ident: &Ident,
        name_parts: &[ObjectNamePart],
    ) -> bool {
        self.inner
            .is_identifier_generating_function_name(ident, name_parts)
    }

    forward_flags! {
        supports_string_literal_backslash_escape,
        ignores_wildcard_escapes,
        supports_unicode_string_literal,
        supports_filter_during_aggregation,
        supports_window_clause_named_window_reference,
        supports_within_after_array_aggregation,
        supports_partition_by_after_order_by,
        supports_array_join_syntax,
        supports_group_by_expr,
        supports_group_by_with_modifier,
        supports_left_associative_joins_without_parens,
        supports_outer_join_operator,
        supports_cross_join_constraint,
        supports_connect_by,
        supports_execute_immediate,
        supports_match_recognize,
        supports_in_empty_list,
        supports_start_transaction_modifier,
        supports_end_transaction_modifier,
        supports_named_fn_args_with_eq_operator,
        supports_named_fn_args_with_colon_operator,
        supports_named_fn_args_with_assignment_operator,
        supports_named_fn_args_with_rarrow_operator,
        supports_named_fn_args_with_expr_name,
        supports_numeric_prefix,
        supports_numeric_literal_underscores,
        supports_window_function_null_treatment_arg,
        supports_dictionary_syntax,
        support_map_literal_syntax,
        supports_lambda_functions,
        supports_parenthesized_set_variables,
        supports_comma_separated_set_assignments,
        supports_update_order_by,
        supports_select_wildcard_except,
        convert_type_before_value,
        supports_triple_quoted_string,
        supports_trailing_commas,
        supports_limit_comma,
        supports_string_literal_concatenation,
        supports_string_literal_concatenation_with_newline,
        supports_projection_trailing_commas,
        supports_from_trailing_commas,
        supports_column_definition_trailing_commas,
        supports_object_name_double_dot_notation,
        supports_struct_literal,
        supports_empty_projections,
        supports_select_expr_star,
        supports_from_first_select,
        supports_from_first_insert,
        supports_pipe_operator,
        supports_user_host_grantee,
        supports_match_against,
        supports_select_wildcard_exclude,
        supports_select_exclude,
        supports_create_table_multi_schema_info_sources,
        supports_select_modifiers,
        describe_requires_table_keyword,
        allow_extract_custom,
        allow_extract_single_quotes,
        supports_extract_comma_syntax,
        supports_subquery_as_function_arg,
        supports_create_view_comment_syntax,
        supports_array_typedef_without_element_type,
        supports_parens_around_table_factor,
        supports_values_as_table_factor,
        supports_dollar_placeholder,
        supports_dollar_as_money_prefix,
        supports_create_index_with_clause,
        require_interval_qualifier,
        supports_explain_with_utility_options,
        supports_asc_desc_in_column_definition,
        supports_factorial_operator,
        supports_bitwise_shift_operators,
        supports_nested_comments,
        supports_multiline_comment_hints,
        supports_eq_alias_assignment,
        supports_try_convert,
        supports_bang_not_operator,
        supports_listen_notify,
        supports_load_data,
        supports_load_extension,
        supports_top_before_distinct,
        supports_boolean_literals,
        supports_show_like_before_in,
        supports_comment_on,
        supports_create_table_select,
        supports_partiql,
        supports_constraint_keyword_without_name,
        supports_key_column_option,
        supports_table_sample_before_alias,
        supports_insert_set,
        supports_insert_table_function,
        supports_insert_table_query,
        supports_insert_format,
        supports_insert_table_alias,
        supports_set_stmt_without_operator,
        supports_table_versioning,
        supports_string_escape_constant,
        supports_table_hints,
        requires_single_line_comment_whitespace,
        supports_array_typedef_with_brackets,
        supports_geometric_types,
        supports_order_by_all,
        supports_set_names,
        supports_space_separated_column_options,
        supports_alter_column_type_using,
        supports_comma_separated_drop_column_list,
        supports_notnull_operator,
        supports_data_type_signed_suffix,
        supports_interval_options,
        supports_create_table_like_parenthesized,
        supports_semantic_view_table_factor,
        supports_quote_delimited_string,
        supports_comment_optimizer_hint,
        supports_double_ampersand_operator,
        supports_binary_kw_as_cast,
        supports_select_wildcard_replace,
        supports_select_wildcard_ilike,
        supports_select_wildcard_rename,
        supports_select_wildcard_with_alias,
        supports_optimize_table,
        supports_install,
        supports_detach,
        supports_prewhere,
        supports_with_fill,
        supports_limit_by,
        supports_interpolate,
        supports_settings,
        supports_select_format,
        supports_comma_separated_trim,
        supports_cte_without_as,
        supports_select_item_multi_column_alias,
        supports_xml_expressions,
        supports_create_table_using,
        supports_long_type_as_bigint,
        supports_map_literal_with_angle_brackets,
    }
}
