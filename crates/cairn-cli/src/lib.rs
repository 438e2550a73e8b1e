//! The `cairn` shell as a library, so it can be tested: `exec` runs input
//! (scripts and the interactive loop), `command` the meta-commands, `helper`
//! line editing, `print` the output formats. `main.rs` only parses arguments.

pub mod command;
pub mod exec;
pub mod helper;
pub mod print;

pub use exec::{Flow, Shell, ShellError};
pub use print::{Format, PrintOptions};
