//! Cairn: a SQL/DataFrame query engine on Apache DataFusion whose signature
//! feature is the checkpoint operator. This facade re-exports the engine;
//! see [`cairn_core`] for the details.

pub use cairn_core::*;
pub use cairn_sql::{Session, StatementOutput};

/// Cairn's SQL statements and parser.
pub mod sql {
    pub use cairn_sql::*;
}
