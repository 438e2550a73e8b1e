//! `cairn-bench`: Cairn side by side with DuckDB, Polars, DataFusion and
//! Spark on the work Cairn is for.
//!
//! Suites: [`tpch`] (the 22 queries, answers checked), [`iterative`]
//! (label propagation and PageRank with and without checkpoints),
//! [`checkpoint_io`] (write and read throughput per codec) and [`seed`].
//! Input data is generated once under a data dir ([`data`]); peers run in
//! Python processes ([`peers`]); results go to a terminal table, JSON, or a
//! Markdown report with SVG charts ([`report`], [`chart`]).

pub mod answers;
pub mod chart;
pub mod checkpoint_io;
pub mod data;
pub mod iterative;
pub mod peers;
pub mod progress;
pub mod report;
pub mod seed;
pub mod settings;
pub mod tpch;
