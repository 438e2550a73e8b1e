//! Any text given to the parser is parsed or refused with an error, never a
//! panic; every statement it splits off parses again, alone, to one
//! statement (the shell and error positions rely on that text).
#![no_main]

use cairn_core::datafusion::sql::sqlparser::dialect::GenericDialect;
use cairn_sql::{CairnDialect, parse_script};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|sql: &str| {
    let _ = cairn_cli::helper::is_complete(sql);
    let dialect = CairnDialect::new(Box::new(GenericDialect {}));
    let Ok(statements) = parse_script(sql, &dialect) else {
        return;
    };
    for statement in statements {
        let text = statement.to_string();
        let again = parse_script(&text, &dialect).unwrap_or_else(|e| {
            panic!("statement {text:?} split from {sql:?} does not parse alone: {e}")
        });
        assert_eq!(
            again.len(),
            1,
            "{text:?} split from {sql:?} is {} statements",
            again.len()
        );
    }
});
