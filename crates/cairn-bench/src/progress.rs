//! Progress bars on stderr (hidden when stderr is not a terminal, so that
//! `--json` output and CI logs stay clean).

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `len` units (rows, runs) labelled `message`.
pub fn bar(len: u64, message: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:32}] {percent:>3}% {elapsed} (eta {eta})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}
