//! Query answers as rows of text, and how two answers are compared.

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// An answer: one string per cell, `NULL` for nulls.
pub type Rows = Vec<Vec<String>>;

/// How close two numbers must be to count as the same answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// Against TPC-H's reference answers, by the spec's validation rules
    /// (clause 2.1.3.5): integers (counts, keys) exactly; other numbers,
    /// which the answers round to cents, within 1% and at most 100 (the
    /// spec allows $100 on sums, 1% on averages and ratios).
    Spec,
    /// Engine against engine: to 1e-6 relative, plus 1e-6 absolute, since
    /// engines sum in different orders and types (DataFusion's average of
    /// a decimal has 6 decimal places, DuckDB's is a double).
    Computed,
}

/// The rows of `batches` as text.
pub fn rows_of(batches: &[RecordBatch]) -> datafusion::error::Result<Rows> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    Ok(rows)
}

/// Column `column` of the first row of `batches` as a BIGINT; -1 when
/// there is none (an answer that no check accepts).
pub fn first_row_i64(batches: &[RecordBatch], column: usize) -> i64 {
    batches
        .first()
        .filter(|b| b.num_rows() > 0)
        .and_then(|b| b.column(column).as_any().downcast_ref::<Int64Array>())
        .map_or(-1, |a| a.value(0))
}

/// Parses an answer in the `|`-separated form of TPC-H's answer files: a
/// header line, then one line per row; cells are trimmed.
pub fn parse_tbl(text: &str) -> Rows {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .skip(1)
        .map(|l| l.split('|').map(|c| c.trim().to_string()).collect())
        .collect()
}

/// Writes `rows` in the form [`parse_tbl`] reads, under `header`.
pub fn to_tbl(header: &[String], rows: &Rows) -> String {
    let mut out = header.join("|");
    out.push('\n');
    for row in rows {
        out.push_str(&row.join("|"));
        out.push('\n');
    }
    out
}

/// `Ok` when `actual` is the answer `expected`, else what differs first.
/// Rows are compared in order, and if that fails, sorted (ties in an
/// `ORDER BY` may come in any order).
pub fn compare(expected: &Rows, actual: &Rows, tolerance: Tolerance) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "{} rows, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let in_order = first_difference(expected, actual, tolerance);
    let Some(difference) = in_order else {
        return Ok(());
    };
    let sorted = |rows: &Rows| {
        let mut rows = rows.clone();
        rows.sort_by_cached_key(|r| r.iter().map(|c| sort_key(c)).collect::<Vec<_>>());
        rows
    };
    if first_difference(&sorted(expected), &sorted(actual), tolerance).is_none() {
        return Ok(());
    }
    Err(difference)
}

fn first_difference(expected: &Rows, actual: &Rows, tolerance: Tolerance) -> Option<String> {
    for (i, (e, a)) in expected.iter().zip(actual).enumerate() {
        if e.len() != a.len() {
            return Some(format!(
                "row {}: {} columns, expected {}",
                i + 1,
                a.len(),
                e.len()
            ));
        }
        for (j, (ev, av)) in e.iter().zip(a).enumerate() {
            if !same_value(ev, av, tolerance) {
                return Some(format!(
                    "row {}, column {}: {av:?}, expected {ev:?}",
                    i + 1,
                    j + 1
                ));
            }
        }
    }
    None
}

fn same_value(expected: &str, actual: &str, tolerance: Tolerance) -> bool {
    let (e, a) = (expected.trim(), actual.trim());
    if e == a {
        return true;
    }
    match (e.parse::<f64>(), a.parse::<f64>()) {
        (Ok(e), Ok(a)) => {
            let diff = (e - a).abs();
            match tolerance {
                Tolerance::Spec if !expected.contains('.') => diff == 0.0,
                Tolerance::Spec => diff <= (0.01 * e.abs()).clamp(0.01, 100.0),
                Tolerance::Computed => diff <= 1e-6 * e.abs().max(a.abs()) + 1e-6,
            }
        }
        _ => false,
    }
}

/// Numbers rounded to cents, so that sorting puts close values together.
fn sort_key(cell: &str) -> String {
    match cell.trim().parse::<f64>() {
        Ok(v) => format!("{v:020.2}"),
        Err(_) => cell.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &[&[&str]]) -> Rows {
        text.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn reference_answers_match_by_the_spec_rules() {
        let expected = parse_tbl("a|b|n\nA |25.52  |7\nN|38284.47|8\n");
        let spec = |actual: &[&[&str]]| compare(&expected, &rows(actual), Tolerance::Spec);
        assert!(spec(&[&["A", "25.5220", "7"], &["N", "38284.4712", "8"]]).is_ok());
        // Within 1% (an average) and within 100 (a sum).
        assert!(spec(&[&["A", "25.60", "7"], &["N", "38350", "8"]]).is_ok());
        assert_eq!(
            spec(&[&["A", "25.90", "7"], &["N", "38284.47", "8"]]).unwrap_err(),
            "row 1, column 2: \"25.90\", expected \"25.52\""
        );
        assert!(spec(&[&["A", "25.52", "7"], &["N", "38400", "8"]]).is_err());
        // Counts and keys exactly.
        assert!(spec(&[&["A", "25.52", "7"], &["N", "38284.47", "9"]]).is_err());
    }

    #[test]
    fn computed_answers_must_agree_closely() {
        let a = rows(&[&["0.0344", "x"]]);
        assert!(compare(&a, &rows(&[&["0.03440000001", "x"]]), Tolerance::Computed).is_ok());
        assert!(compare(&a, &rows(&[&["0.0345", "x"]]), Tolerance::Computed).is_err());
        assert!(compare(&a, &rows(&[&["0.0344", "y"]]), Tolerance::Computed).is_err());
    }

    #[test]
    fn ties_may_come_in_any_order_but_rows_must_all_be_there() {
        let a = rows(&[&["1", "x"], &["1", "y"]]);
        assert!(compare(&a, &rows(&[&["1", "y"], &["1", "x"]]), Tolerance::Computed).is_ok());
        assert_eq!(
            compare(&a, &rows(&[&["1", "y"]]), Tolerance::Computed).unwrap_err(),
            "1 rows, expected 2"
        );
        assert!(compare(&a, &rows(&[&["1", "y"], &["1", "y"]]), Tolerance::Computed).is_err());
    }

    #[test]
    fn tbl_round_trips() {
        let r = rows(&[&["a", "NULL"], &["b", "2.50"]]);
        assert_eq!(parse_tbl(&to_tbl(&["x".into(), "y".into()], &r)), r);
    }
}
