//! `cairn`: the interactive SQL shell with checkpoints.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_cli::{Flow, Format, PrintOptions, Shell, ShellError};
use cairn_core::CairnContext;
use cairn_sql::Session;
use clap::{CommandFactory, FromArgMatches, Parser};

const FIRST_SESSION: &str = "\
A first session:
  $ cairn
  cairn> CREATE TABLE edges AS SELECT value % 100 AS src, value % 37 AS dst FROM range(0, 10000);
  cairn> CHECKPOINT TABLE degrees AS SELECT src, count(*) AS n FROM edges GROUP BY src;
  cairn> EXPLAIN SELECT * FROM degrees WHERE n > 90;     -- a scan of the checkpoint
  cairn> \\checkpoints
  cairn> \\q
  $ cairn -c 'SELECT max(n) FROM degrees'               -- a new process, no recompute";

/// Interactive SQL with checkpoints, on Apache DataFusion.
#[derive(Debug, Parser)]
#[command(name = "cairn", version, after_help = FIRST_SESSION)]
struct Args {
    /// Run SQL (and \commands) and exit; repeatable.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    commands: Vec<String>,

    /// Run the file's SQL and exit; repeatable.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Where reliable checkpoints go: a path, file://, or memory://.
    /// [default: $CAIRN_CHECKPOINT_DIR or ~/.local/share/cairn/checkpoints]
    #[arg(long, value_name = "DIR")]
    checkpoint_dir: Option<String>,

    /// Run every query and checkpoint on the Cairn cluster whose scheduler
    /// this names (df://host:port); checkpoints then need a dir every
    /// process of the cluster reaches (s3://, or a local path on one machine).
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,

    /// Memory the engine may use before it spills, e.g. 512M or 4G.
    #[arg(long, value_name = "SIZE", value_parser = cairn_core::parse_size)]
    memory_limit: Option<usize>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    /// Rows a table shows before it says how many it hid ("all" for no limit).
    #[arg(long, value_name = "N", default_value = "40")]
    maxrows: String,

    /// No banner, notes or progress; results and errors only.
    #[arg(short, long)]
    quiet: bool,

    #[arg(skip)]
    order: Order,
}

/// Where each -c and -f stood on the command line.
#[derive(Debug, Default)]
struct Order {
    commands: Vec<usize>,
    files: Vec<usize>,
}

impl Args {
    fn from_command_line() -> Self {
        let matches = Args::command().get_matches();
        let mut args = match Args::from_arg_matches(&matches) {
            Ok(args) => args,
            Err(e) => e.exit(),
        };
        let positions = |id: &str| {
            matches
                .indices_of(id)
                .map(Iterator::collect)
                .unwrap_or_default()
        };
        args.order = Order {
            commands: positions("commands"),
            files: positions("files"),
        };
        args
    }
}

fn history_file() -> Option<PathBuf> {
    std::env::var_os("CAIRN_HISTORY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cairn_history")))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut builder = CairnContext::builder().url_tables(true);
    if let Some(dir) = &args.checkpoint_dir {
        builder = builder.checkpoint_dir(dir);
    }
    if let Some(bytes) = args.memory_limit {
        builder = builder.memory_limit(bytes);
    }
    if let Some(url) = &args.cluster {
        builder = builder.cluster(url);
    }
    let max_rows = match args.maxrows.as_str() {
        "all" => None,
        n => Some(n.parse().context("--maxrows takes a number or all")?),
    };
    let ctx = builder.build()?;
    let code = run_with(&args, ctx.clone(), max_rows).await?;
    // Commits and removals of the last statements may still be running.
    if let Err(e) = ctx.wait_for_background().await {
        eprintln!("Error: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(code)
}

async fn run_with(
    args: &Args,
    ctx: CairnContext,
    max_rows: Option<usize>,
) -> anyhow::Result<ExitCode> {
    let options = PrintOptions {
        format: args.format,
        max_rows,
        timing: false,
        quiet: args.quiet,
    };
    let mut shell = Shell::new(Session::new(ctx)?, options);

    // -c and -f run in the order they were given.
    let mut scripts: Vec<(usize, String)> = Vec::new();
    for (at, command) in args.order.commands.iter().zip(&args.commands) {
        scripts.push((*at, command.clone()));
    }
    for (at, file) in args.order.files.iter().zip(&args.files) {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read '{}'", file.display()))?;
        scripts.push((*at, text));
    }
    scripts.sort_by_key(|(at, _)| *at);
    if scripts.is_empty() && !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        scripts.push((0, text));
    }
    if scripts.is_empty() {
        shell.interactive(history_file()).await?;
        return Ok(ExitCode::SUCCESS);
    }
    for (_, text) in scripts {
        match shell.run_input(&text).await {
            Ok(Flow::Continue) => {}
            Ok(Flow::Quit) => break,
            Err(ShellError::BrokenPipe) => return Ok(ExitCode::SUCCESS),
            Err(ShellError::Cancelled) => {
                eprintln!("Cancelled.");
                return Ok(ExitCode::from(130));
            }
            Err(e) => {
                eprintln!("Error: {e}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = Args::from_command_line();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Deeply nested queries need more than the default 2 MiB.
        .thread_stack_size(16 * 1024 * 1024)
        .build();
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {}", each_cause_once(&e));
            ExitCode::FAILURE
        }
    };
    // Everything is written and flushed by now; shutting the runtime down
    // (waking and joining its worker threads) only costs start-to-exit time.
    runtime.shutdown_background();
    code
}

/// An error and its causes, each said once: Cairn's messages already
/// include their cause, which the chain would repeat.
fn each_cause_once(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::each_cause_once;

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let ours = anyhow::Error::new(cairn_core::Error::CheckpointDirNotWritable {
            dir: "x".into(),
            source: Box::new(io()),
        });
        let text = each_cause_once(&ours);
        assert_eq!(text.matches("No such file").count(), 1, "{text}");
        assert!(
            text.starts_with("checkpoint dir 'x' is not writable"),
            "{text}"
        );
        let chained = anyhow::Error::new(io()).context("cannot read 'f'");
        assert_eq!(each_cause_once(&chained), "cannot read 'f': No such file");
    }
}
