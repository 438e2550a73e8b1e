//! Results as text, by the conventions of DataFusion's test files: `NULL`,
//! `(empty)` for empty strings, floats rounded to 12 decimals, one line per
//! line of a multi-line last cell (plans), and one letter per column type.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use cairn::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use cairn::arrow::datatypes::{
    DataType, Decimal128Type, Decimal256Type, DecimalType, Fields, Float16Type, Float32Type,
    Float64Type,
};
use cairn::arrow::util::display::{ArrayFormatter, FormatOptions};
use cairn::datafusion::config::FormatOptions as DfFormatOptions;
use sqllogictest::{ColumnType, MakeConnection, Runner};

/// The column type letters of DataFusion's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnKind {
    Boolean,
    DateTime,
    Integer,
    Timestamp,
    Float,
    Text,
    Another,
}

impl ColumnType for ColumnKind {
    fn from_char(value: char) -> Option<Self> {
        Some(match value {
            'B' => Self::Boolean,
            'D' => Self::DateTime,
            'I' => Self::Integer,
            'P' => Self::Timestamp,
            'R' => Self::Float,
            'T' => Self::Text,
            _ => Self::Another,
        })
    }

    fn to_char(&self) -> char {
        match self {
            Self::Boolean => 'B',
            Self::DateTime => 'D',
            Self::Integer => 'I',
            Self::Timestamp => 'P',
            Self::Float => 'R',
            Self::Text => 'T',
            Self::Another => '?',
        }
    }
}

fn kind(t: &DataType) -> ColumnKind {
    match t {
        DataType::Boolean => ColumnKind::Boolean,
        t if t.is_integer() => ColumnKind::Integer,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnKind::Float,
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => ColumnKind::Float,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnKind::Text,
        DataType::Date32 | DataType::Date64 | DataType::Time32(_) | DataType::Time64(_) => {
            ColumnKind::DateTime
        }
        DataType::Timestamp(..) => ColumnKind::Timestamp,
        DataType::Dictionary(key, value) if key.is_integer() => match kind(value) {
            ColumnKind::Text => ColumnKind::Text,
            _ => ColumnKind::Another,
        },
        _ => ColumnKind::Another,
    }
}

pub fn column_kinds(fields: &Fields) -> Vec<ColumnKind> {
    fields.iter().map(|f| kind(f.data_type())).collect()
}

pub fn rows_of(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, cairn::Error> {
    let mut rows = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .map(|c| cell(c, row))
                .collect::<Result<Vec<_>, _>>()?;
            expand_into(cells, &mut rows);
        }
    }
    Ok(rows)
}

/// A last cell of several lines becomes one row per line, numbered, its
/// indentation shown as dashes (as DataFusion's files write plans).
fn expand_into(mut cells: Vec<String>, rows: &mut Vec<Vec<String>>) {
    let Some(last) = cells.last() else {
        rows.push(cells);
        return;
    };
    if !last.contains('\n') {
        rows.push(cells);
        return;
    }
    let last = cells.pop().unwrap_or_default();
    rows.push(cells);
    for (i, line) in last.split('\n').enumerate() {
        let content = line.trim_start();
        let dashes = "-".repeat(line.len() - content.len());
        rows.push(vec![format!("{:02}){dashes}{content}", i + 1)]);
    }
}

fn rounded(text: &str, digits: i64) -> String {
    match BigDecimal::from_str(text) {
        Ok(d) => d.round(digits).normalized().to_plain_string(),
        Err(_) => text.to_string(),
    }
}

fn float(value: f64, text: &str) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        rounded(text, 12)
    }
}

fn text(value: &str) -> String {
    if value.is_empty() {
        "(empty)".into()
    } else {
        value.trim_end_matches('\n').replace('\u{0000}', "\\0")
    }
}

fn decimal<T: DecimalType>(array: &ArrayRef, row: usize, scale: i8) -> String {
    let value = array.as_primitive::<T>().value(row);
    rounded(&T::format_decimal(value, u8::MAX, scale), i64::from(scale))
}

fn cell(array: &ArrayRef, row: usize) -> Result<String, cairn::Error> {
    if array.is_null(row) {
        return Ok("NULL".into());
    }
    Ok(match array.data_type() {
        DataType::Null => "NULL".into(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Float16 => {
            let v = array.as_primitive::<Float16Type>().value(row);
            float(f64::from(v), &v.to_string())
        }
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            float(f64::from(v), &v.to_string())
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            float(v, &v.to_string())
        }
        DataType::Decimal128(_, s) => decimal::<Decimal128Type>(array, row, *s),
        DataType::Decimal256(_, s) => decimal::<Decimal256Type>(array, row, *s),
        DataType::Utf8 => text(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => text(array.as_string::<i64>().value(row)),
        DataType::Utf8View => text(array.as_string_view().value(row)),
        DataType::Dictionary(..) => {
            let dict = array.as_any_dictionary();
            let key = dict.normalized_keys()[row];
            cell(dict.values(), key)?
        }
        _ => {
            let options = DfFormatOptions {
                null: "NULL".into(),
                ..Default::default()
            };
            let options: FormatOptions = (&options).try_into()?;
            ArrayFormatter::try_new(array.as_ref(), &options)?
                .value(row)
                .to_string()
        }
    })
}

/// Rows compare as their cells joined by spaces, trailing space ignored.
pub fn validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let actual: Vec<String> = actual
        .iter()
        .map(|cells| cells.join(" ").trim_end().to_string())
        .collect();
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    const IGNORE: &str = "<slt:ignore>";
    if !expected.iter().any(|l| l.contains(IGNORE)) {
        return actual == expected;
    }
    // Fragments between ignore markers must appear in order.
    let (actual, expected) = (actual.join("\n"), expected.join("\n"));
    let mut at = 0;
    for (i, fragment) in expected.split(IGNORE).enumerate() {
        if fragment.is_empty() {
            continue;
        }
        match actual[at..].find(fragment) {
            Some(found) if i > 0 || found == 0 => at += found + fragment.len(),
            _ => return false,
        }
    }
    true
}

/// The signature sqllogictest's `Normalizer` requires.
#[expect(clippy::ptr_arg)]
pub fn normalizer(s: &String) -> String {
    s.trim_end().to_string()
}

pub fn configure<M: MakeConnection>(runner: &mut Runner<M::Conn, M>)
where
    M::Conn: sqllogictest::AsyncDB<ColumnType = ColumnKind>,
{
    runner.with_column_validator(sqllogictest::strict_column_validator);
    runner.with_normalizer(normalizer);
    runner.with_validator(validator);
}
