//! Results as text: aligned tables (with column types), CSV, TSV, JSON,
//! NDJSON and Markdown.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::time::Duration;

use cairn_core::arrow::array::RecordBatch;
use cairn_core::arrow::datatypes::{DataType, Schema};
use cairn_core::arrow::error::ArrowError;
use cairn_core::arrow::util::display::{ArrayFormatter, FormatOptions};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Tsv,
    Json,
    Ndjson,
    Markdown,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        <Format as clap::ValueEnum>::from_str(s, true).map_err(|_| {
            format!("unknown format '{s}'; use table, csv, tsv, json, ndjson or markdown")
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Format::Table => "table",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Markdown => "markdown",
        };
        f.write_str(name)
    }
}

/// What the shell prints and how.
#[derive(Debug, Clone)]
pub struct PrintOptions {
    pub format: Format,
    /// Rows shown by `table` and `markdown`; `None` shows them all.
    pub max_rows: Option<usize>,
    pub timing: bool,
    pub quiet: bool,
}

impl Default for PrintOptions {
    fn default() -> Self {
        Self {
            format: Format::Table,
            max_rows: Some(40),
            timing: false,
            quiet: false,
        }
    }
}

fn formatter_options() -> FormatOptions<'static> {
    FormatOptions::default().with_null("NULL")
}

/// Every cell of `batches` as text, row by row, the first `limit` rows.
fn cells(batches: &[RecordBatch], limit: usize) -> Result<Vec<Vec<String>>, ArrowError> {
    let options = formatter_options();
    let mut rows = Vec::new();
    for batch in batches {
        if rows.len() >= limit {
            break;
        }
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows().min(limit - rows.len()) {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn io_error(e: ArrowError) -> io::Error {
    io::Error::other(e)
}

/// Notes whether the reader went away (`| head`): writers that wrap the
/// error (Arrow's CSV and JSON writers) would hide it.
struct Watched<'a> {
    inner: &'a mut dyn Write,
    closed: bool,
}

impl Watched<'_> {
    fn check(&mut self, result: io::Result<usize>) -> io::Result<usize> {
        if let Err(e) = &result
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
        result
    }
}

impl Write for Watched<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.inner.write(buf);
        self.check(result)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.inner.flush().map(|()| 0);
        self.check(result).map(|_| ())
    }
}

/// Prints one statement's result to `out`. A reader that went away is
/// reported as `BrokenPipe`, whichever writer saw it.
pub fn print(
    out: &mut dyn Write,
    schema: &Schema,
    batches: &[RecordBatch],
    options: &PrintOptions,
    elapsed: Duration,
) -> io::Result<()> {
    let mut watched = Watched {
        inner: out,
        closed: false,
    };
    match print_to(&mut watched, schema, batches, options, elapsed) {
        Err(_) if watched.closed => Err(io::ErrorKind::BrokenPipe.into()),
        other => other,
    }
}

fn print_to(
    out: &mut dyn Write,
    schema: &Schema,
    batches: &[RecordBatch],
    options: &PrintOptions,
    elapsed: Duration,
) -> io::Result<()> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if schema.fields().is_empty() {
        // A statement without a result (DDL, SET, DROP).
        if options.timing {
            writeln!(out, "Time: {:.3} s", elapsed.as_secs_f64())?;
        }
        return Ok(());
    }
    // A graph (EXPLAIN LINEAGE FORMAT DOT) prints as it is, for `| dot`.
    if options.format == Format::Table
        && let [field] = schema.fields().as_ref()
        && field.name() == "dot"
    {
        for row in cells(batches, usize::MAX).map_err(io_error)? {
            write!(out, "{}", row.concat())?;
        }
        return Ok(());
    }
    match options.format {
        Format::Table => match plans(schema, batches) {
            Some(plans) => print_plans(out, &plans)?,
            None => print_table(out, schema, batches, total, options)?,
        },
        Format::Markdown => print_markdown(out, schema, batches, total, options)?,
        Format::Csv | Format::Tsv => {
            let delimiter = if options.format == Format::Csv {
                b','
            } else {
                b'\t'
            };
            let mut writer = cairn_core::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .with_delimiter(delimiter)
                .with_null("NULL".to_string())
                .build(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(io_error)?;
            }
        }
        Format::Json => {
            let mut writer = cairn_core::arrow::json::ArrayWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(io_error)?;
            }
            writer.finish().map_err(io_error)?;
            if total == 0 {
                write!(out, "[]")?;
            }
            writeln!(out)?;
        }
        Format::Ndjson => {
            let mut writer = cairn_core::arrow::json::LineDelimitedWriter::new(&mut *out);
            for batch in batches {
                writer.write(batch).map_err(io_error)?;
            }
            writer.finish().map_err(io_error)?;
        }
    }
    if options.timing {
        writeln!(out, "Time: {:.3} s", elapsed.as_secs_f64())?;
    }
    Ok(())
}

/// A result that is plans (`EXPLAIN`, `EXPLAIN ANALYZE`, `EXPLAIN
/// LINEAGE`): text columns, the last one `plan` or `lineage`. Each row as a
/// header (the other columns) and its plan.
fn plans(schema: &Schema, batches: &[RecordBatch]) -> Option<Vec<(String, String)>> {
    let fields = schema.fields();
    let last = fields.last()?;
    if fields.len() < 2
        || !matches!(last.name().as_str(), "plan" | "lineage")
        || !fields.iter().all(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            )
        })
    {
        return None;
    }
    let rows = cells(batches, usize::MAX).ok()?;
    let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
    Some(
        rows.into_iter()
            .map(|mut row| {
                let plan = row.pop().unwrap_or_default();
                let parts: Vec<String> = row
                    .iter()
                    .zip(&names)
                    .map(|(value, name)| match *name {
                        "plan_type" => value.clone(),
                        name => format!("{name}: {value}"),
                    })
                    .collect();
                let header = match last.name().as_str() {
                    "plan" => parts.join(", "),
                    other => format!("{other} ({})", parts.join(", ")),
                };
                (header, plan)
            })
            .collect(),
    )
}

/// Plans as indented text under their headers, as psql and DuckDB print
/// them: no table around them, no line wider than the plan's own.
fn print_plans(out: &mut dyn Write, plans: &[(String, String)]) -> io::Result<()> {
    for (i, (header, plan)) in plans.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{header}")?;
        for line in plan.trim_end().lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

fn footer(total: usize, shown: usize) -> String {
    let rows = if total == 1 { "row" } else { "rows" };
    if shown < total {
        format!("({total} {rows}, {shown} shown; \\maxrows N or \\maxrows all shows more)")
    } else {
        format!("({total} {rows})")
    }
}

fn print_table(
    out: &mut dyn Write,
    schema: &Schema,
    batches: &[RecordBatch],
    total: usize,
    options: &PrintOptions,
) -> io::Result<()> {
    let limit = options.max_rows.unwrap_or(usize::MAX);
    let rows = cells(batches, limit).map_err(io_error)?;
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(schema.fields().iter().map(|f| {
            Cell::new(format!("{}\n{}", f.name(), f.data_type()))
                .set_alignment(CellAlignment::Center)
        }));
    for (i, field) in schema.fields().iter().enumerate() {
        if field.data_type().is_numeric()
            && let Some(column) = table.column_mut(i)
        {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    for row in &rows {
        table.add_row(row);
    }
    writeln!(out, "{table}")?;
    writeln!(out, "{}", footer(total, rows.len()))
}

fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', "<br>")
}

fn print_markdown(
    out: &mut dyn Write,
    schema: &Schema,
    batches: &[RecordBatch],
    total: usize,
    options: &PrintOptions,
) -> io::Result<()> {
    let limit = options.max_rows.unwrap_or(usize::MAX);
    let rows = cells(batches, limit).map_err(io_error)?;
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| markdown_cell(f.name()))
        .collect();
    writeln!(out, "| {} |", names.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(names.len()))?;
    for row in &rows {
        let row: Vec<String> = row.iter().map(|c| markdown_cell(c)).collect();
        writeln!(out, "| {} |", row.join(" | "))?;
    }
    if rows.len() < total {
        writeln!(out, "\n{}", footer(total, rows.len()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::arrow::array::{ArrayRef, Int64Array, StringArray};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(1), None, Some(30)])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec!["a", "b|c", "d"])) as ArrayRef,
            ),
        ])
        .unwrap()
    }

    fn printed(format: Format, max_rows: Option<usize>) -> String {
        let b = batch();
        let options = PrintOptions {
            format,
            max_rows,
            ..Default::default()
        };
        let mut out = Vec::new();
        print(
            &mut out,
            &b.schema(),
            std::slice::from_ref(&b),
            &options,
            Duration::ZERO,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tables_show_types_nulls_and_a_footer() {
        let text = printed(Format::Table, Some(40));
        assert!(text.contains("Int64") && text.contains("Utf8"), "{text}");
        assert!(text.contains("NULL"), "{text}");
        assert!(text.trim_end().ends_with("(3 rows)"), "{text}");
    }

    #[test]
    fn the_row_cap_says_how_many_were_hidden() {
        let text = printed(Format::Table, Some(2));
        assert!(text.contains("(3 rows, 2 shown;"), "{text}");
        assert!(!text.contains("30"), "{text}");
    }

    #[test]
    fn plans_print_as_text_under_their_type() {
        let plan = "Projection: t.a\n  Filter: t.a > Int64(1)\n    TableScan: t";
        let batch = RecordBatch::try_from_iter(vec![
            (
                "plan_type",
                Arc::new(StringArray::from(vec!["logical_plan", "physical_plan"])) as ArrayRef,
            ),
            (
                "plan",
                Arc::new(StringArray::from(vec![plan, "DataSourceExec: x"])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut out = Vec::new();
        let options = PrintOptions::default();
        print(
            &mut out,
            &batch.schema(),
            std::slice::from_ref(&batch),
            &options,
            Duration::ZERO,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "logical_plan\n  Projection: t.a\n    Filter: t.a > Int64(1)\n      TableScan: t\n\n\
             physical_plan\n  DataSourceExec: x\n"
        );
    }

    /// A closed pipe is reported as one, even through Arrow's CSV writer.
    #[test]
    fn a_closed_reader_is_a_broken_pipe_in_every_format() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
        }
        let b = batch();
        for format in [
            Format::Table,
            Format::Csv,
            Format::Tsv,
            Format::Json,
            Format::Ndjson,
            Format::Markdown,
        ] {
            let options = PrintOptions {
                format,
                ..Default::default()
            };
            let e = print(
                &mut Closed,
                &b.schema(),
                std::slice::from_ref(&b),
                &options,
                Duration::ZERO,
            )
            .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{format}: {e}");
        }
    }

    #[test]
    fn data_formats_print_every_row() {
        assert_eq!(printed(Format::Csv, Some(1)), "n,s\n1,a\nNULL,b|c\n30,d\n");
        assert_eq!(printed(Format::Tsv, None), "n\ts\n1\ta\nNULL\tb|c\n30\td\n");
        assert_eq!(
            printed(Format::Ndjson, None),
            "{\"n\":1,\"s\":\"a\"}\n{\"s\":\"b|c\"}\n{\"n\":30,\"s\":\"d\"}\n"
        );
        assert_eq!(
            printed(Format::Json, None),
            "[{\"n\":1,\"s\":\"a\"},{\"s\":\"b|c\"},{\"n\":30,\"s\":\"d\"}]\n"
        );
        assert_eq!(
            printed(Format::Markdown, None),
            "| n | s |\n|---|---|\n| 1 | a |\n| NULL | b\\|c |\n| 30 | d |\n"
        );
    }
}
