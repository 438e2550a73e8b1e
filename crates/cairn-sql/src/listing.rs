//! The rows of `SHOW CHECKPOINTS`, built once for every front end: as SQL
//! values for `SHOW CHECKPOINTS`, or readable for people (`\checkpoints` in
//! the shell: sizes and ages instead of byte counts and timestamps).

use std::sync::Arc;

use cairn_core::CheckpointInfo;
use cairn_core::arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use chrono::Utc;

/// How the columns of a listing are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Values for SQL: `id`, `bytes`, a `created` timestamp, `stale` as a boolean.
    Sql,
    /// For people: `size` (`1.5 KiB`), `age` (`3 h`), `stale` as yes/no/unknown.
    Readable,
}

/// The rows of `SHOW CHECKPOINTS` for `infos`.
pub fn checkpoint_listing(infos: &[CheckpointInfo], listing: Listing) -> RecordBatch {
    let text = |f: &dyn Fn(&CheckpointInfo) -> Option<String>| {
        Arc::new(StringArray::from(infos.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let number = |f: &dyn Fn(&CheckpointInfo) -> Option<u64>| {
        Arc::new(UInt64Array::from(infos.iter().map(f).collect::<Vec<_>>())) as ArrayRef
    };
    let mut columns: Vec<(&str, ArrayRef)> = vec![("name", text(&|i| Some(i.name.clone())))];
    if listing == Listing::Sql {
        columns.push(("id", text(&|i| i.id.clone())));
    }
    columns.push((
        "kind",
        text(&|i| {
            Some(if i.auto {
                "auto".into()
            } else {
                i.kind.to_string()
            })
        }),
    ));
    columns.push(("rows", number(&|i| i.rows)));
    match listing {
        Listing::Sql => {
            let created: Vec<Option<i64>> = infos
                .iter()
                .map(|i| i.created.map(|t| t.timestamp_micros()))
                .collect();
            columns.push(("bytes", number(&|i| i.bytes)));
            columns.push((
                "created",
                Arc::new(TimestampMicrosecondArray::from(created).with_timezone("UTC")),
            ));
            columns.push((
                "stale",
                Arc::new(BooleanArray::from(
                    infos.iter().map(|i| i.stale).collect::<Vec<_>>(),
                )),
            ));
        }
        Listing::Readable => {
            let now = Utc::now();
            columns.push(("size", text(&|i| i.bytes.map(human_bytes))));
            columns.push((
                "age",
                text(&|i| i.created.map(|c| human_age((now - c).num_seconds()))),
            ));
            columns.push((
                "stale",
                text(&|i| match (i.kind, i.stale) {
                    (cairn_core::CheckpointKind::Local, _) => None,
                    (_, Some(true)) => Some("yes".into()),
                    (_, Some(false)) => Some("no".into()),
                    (_, None) => Some("unknown".into()),
                }),
            ));
        }
    }
    columns.push(("location", text(&|i| Some(i.location.clone()))));
    RecordBatch::try_from_iter(columns).expect("columns of equal length")
}

/// A size as people write it: `512 B`, `1.5 KiB`, `5.0 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// An age as people say it: `42 s`, `5 min`, `3 h`, `2 d`.
pub fn human_age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_age(42), "42 s");
        assert_eq!(human_age(3 * 3600 + 5), "3 h");
        assert_eq!(human_age(3 * 86_400), "3 d");
    }
}
