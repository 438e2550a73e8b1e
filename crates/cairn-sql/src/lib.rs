//! Cairn's SQL: the `CHECKPOINT` statements on top of DataFusion's SQL, and
//! [`Session`], the statement API every front end uses.
//!
//! ```no_run
//! # async fn demo() -> cairn_core::Result<()> {
//! use cairn_core::CairnContext;
//! use cairn_sql::Session;
//!
//! let session = Session::new(CairnContext::builder().checkpoint_dir("memory://demo").build()?)?;
//! let results = session
//!     .sql(
//!         "CHECKPOINT TABLE squares AS SELECT value * value AS v FROM range(1, 1000);
//!          SELECT count(*) FROM squares;
//!          SELECT sum(v) FROM CHECKPOINT(SELECT v FROM squares WHERE v % 2 = 0) AS even;",
//!     )
//!     .await?;
//! assert_eq!(results.len(), 3);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod dialect;
mod lineage;
mod listing;
mod parser;
mod relation;
mod session;

pub use dialect::{CHECKPOINT_RELATION, CairnDialect};
pub use listing::{Listing, checkpoint_listing, human_age, human_bytes};
pub use parser::{ParsedStatement, Statement, parse_script};
pub use relation::CheckpointRelationPlanner;
pub use session::{Executed, Session, StatementOutput};
