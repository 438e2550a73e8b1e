//! `EXPLAIN LINEAGE`: the chain of checkpoints below one, as rows (a link
//! each, its plan last) or as a Graphviz graph (`FORMAT DOT`).

use std::sync::Arc;

use cairn_core::ChainLink;
use cairn_core::arrow::array::{ArrayRef, RecordBatch, StringArray};

/// A link as people name it: its names, else its id.
fn title(link: &ChainLink) -> String {
    if link.names.is_empty() {
        link.id.clone()
    } else {
        link.names.join(", ")
    }
}

/// A row per link, top first; a last row says how many were left out.
pub fn rows(links: &[ChainLink], left_out: usize) -> RecordBatch {
    let mut columns: [Vec<Option<String>>; 7] = Default::default();
    for link in links {
        let values = [
            Some(title(link)),
            Some(link.id.clone()).filter(|id| !id.is_empty()),
            link.rows.map(|r| r.to_string()),
            link.created
                .map(|c| c.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            Some(link.data.clone()),
            Some(link.recompute.clone()),
            Some(plan_with_sources(link)),
        ];
        for (column, value) in columns.iter_mut().zip(values) {
            column.push(value);
        }
    }
    if left_out > 0 {
        let more = format!(
            "{left_out} more link{} not shown",
            if left_out == 1 { "" } else { "s" }
        );
        columns[0].push(Some(more));
        for column in columns.iter_mut().skip(1) {
            column.push(None);
        }
    }
    let names = [
        "checkpoint",
        "id",
        "rows",
        "created",
        "data",
        "recompute",
        "lineage",
    ];
    let arrays: Vec<(&str, ArrayRef)> = names
        .iter()
        .zip(columns)
        .map(|(n, c)| (*n, Arc::new(StringArray::from(c)) as ArrayRef))
        .collect();
    RecordBatch::try_from_iter(arrays).expect("columns of equal length")
}

/// The plan, and below it what else it reads.
fn plan_with_sources(link: &ChainLink) -> String {
    let mut text = link.plan.clone();
    for id in &link.reads {
        text.push_str(&format!("\nreads checkpoint {id}"));
    }
    for source in &link.sources {
        text.push_str(&format!("\nreads {source}"));
    }
    text
}

/// A quoted Graphviz string.
fn quoted(text: &str) -> String {
    format!(
        "\"{}\"",
        text.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

/// The chain as a Graphviz digraph: a box per checkpoint (names, id, rows,
/// whether its data is there), an ellipse per source, arrows the way data
/// flows.
pub fn dot(name: &str, links: &[ChainLink], left_out: usize) -> String {
    let mut out = format!(
        "digraph lineage {{\n  label={};\n  rankdir=BT;\n",
        quoted(&format!("lineage of {name}"))
    );
    out.push_str("  node [fontname=\"Helvetica\"];\n");
    for link in links {
        let key = if link.id.is_empty() {
            title(link)
        } else {
            link.id.clone()
        };
        let short = &link.id[..link.id.len().min(12)];
        let mut label = title(link);
        if !link.id.is_empty() && !link.names.is_empty() {
            label.push_str(&format!("\n{short}"));
        }
        if let Some(rows) = link.rows {
            label.push_str(&format!("\n{rows} rows"));
        }
        label.push_str(&format!("\ndata {}", link.data));
        let style = if link.data == "present" || link.data == "in this session" {
            ""
        } else {
            ", style=dashed"
        };
        out.push_str(&format!(
            "  {} [shape=box, label={}{style}];\n",
            quoted(&key),
            quoted(&label)
        ));
        for id in &link.reads {
            out.push_str(&format!("  {} -> {};\n", quoted(id), quoted(&key)));
        }
        for source in &link.sources {
            let node = format!("source {source}");
            out.push_str(&format!(
                "  {} [shape=ellipse, label={}];\n  {} -> {};\n",
                quoted(&node),
                quoted(source),
                quoted(&node),
                quoted(&key)
            ));
        }
    }
    if left_out > 0 {
        out.push_str(&format!(
            "  more [shape=plaintext, label={}];\n",
            quoted(&format!("{left_out} more links not shown"))
        ));
    }
    out.push_str("}\n");
    out
}
