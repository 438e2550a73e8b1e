//! Running input: scripts (`-c`, `-f`, stdin, `\i`) and the interactive
//! loop, with progress for long statements and Ctrl-C to cancel one.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_core::arrow::array::{ArrayRef, RecordBatch, StringArray};
use cairn_core::arrow::datatypes::SchemaRef;
use cairn_core::{PlanObserver, PlanWatch};
use cairn_sql::{Executed, Listing, ParsedStatement, Session, checkpoint_listing, human_bytes};
use datafusion::catalog::SchemaProvider;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{CompletionType, Config, Editor};

use crate::command::{Command, help};
use crate::helper::{CairnHelper, Names, is_complete, mentions_a_secret};
use crate::print::{PrintOptions, print};

/// Why a statement or command did not complete.
#[derive(Debug)]
pub enum ShellError {
    /// The statement failed; the session is as it was before it.
    Failed(String),
    /// Ctrl-C.
    Cancelled,
    /// The reader of our output went away (`| head`): not an error.
    BrokenPipe,
}

impl std::fmt::Display for ShellError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShellError::Failed(e) => f.write_str(e),
            ShellError::Cancelled => f.write_str("cancelled"),
            ShellError::BrokenPipe => f.write_str("output closed"),
        }
    }
}

impl From<cairn_core::Error> for ShellError {
    fn from(e: cairn_core::Error) -> Self {
        ShellError::Failed(e.to_string())
    }
}

impl From<datafusion::error::DataFusionError> for ShellError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        ShellError::Failed(e.to_string())
    }
}

impl From<io::Error> for ShellError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            ShellError::BrokenPipe
        } else {
            ShellError::Failed(e.to_string())
        }
    }
}

pub type Result<T, E = ShellError> = std::result::Result<T, E>;

/// What the interactive loop does after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Quit,
}

/// The shell: a session, how to print, and where to.
pub struct Shell {
    session: Session,
    options: PrintOptions,
    output: Option<(PathBuf, File)>,
    names: Option<Arc<std::sync::RwLock<Names>>>,
    /// Whether the user was told that Cairn places checkpoints itself.
    told_auto: bool,
}

impl Shell {
    pub fn new(session: Session, options: PrintOptions) -> Self {
        Self {
            session,
            options,
            output: None,
            names: None,
            told_auto: false,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn options(&self) -> &PrintOptions {
        &self.options
    }

    fn out(&mut self) -> Box<dyn Write + '_> {
        match &mut self.output {
            Some((_, file)) => Box::new(file),
            None => Box::new(io::stdout().lock()),
        }
    }

    fn show(
        &mut self,
        schema: &SchemaRef,
        batches: &[RecordBatch],
        elapsed: Duration,
    ) -> Result<()> {
        let options = self.options.clone();
        let mut out = self.out();
        print(&mut out, schema, batches, &options, elapsed)?;
        out.flush()?;
        Ok(())
    }

    /// Runs input as a script: SQL statements and meta-commands (one per
    /// line) in order. Stops at the first failure.
    pub async fn run_input(&mut self, input: &str) -> Result<Flow> {
        // Each chunk starts with as many blank lines as the input has
        // before it, so that errors give positions in the whole input.
        let mut sql = String::new();
        for (number, line) in input.lines().enumerate() {
            if sql.trim().is_empty() && line.trim_start().starts_with('\\') {
                sql.clear();
                if self.run_command(line).await? == Flow::Quit {
                    return Ok(Flow::Quit);
                }
                continue;
            }
            if sql.trim().is_empty() {
                sql = "\n".repeat(number);
            }
            sql.push_str(line);
            sql.push('\n');
            if is_complete(&sql) {
                self.run_sql(&sql).await?;
                sql.clear();
            }
        }
        if !sql.trim().is_empty() {
            self.run_sql(&sql).await?;
        }
        Ok(Flow::Continue)
    }

    /// Runs every statement of `sql`, printing each result.
    pub async fn run_sql(&mut self, sql: &str) -> Result<()> {
        let statements = self.session.parse(sql)?;
        for statement in &statements {
            self.run_statement(statement).await?;
        }
        Ok(())
    }

    /// Runs one statement, with a progress line after a second on a
    /// terminal, and Ctrl-C to cancel it.
    pub async fn run_statement(&mut self, statement: &ParsedStatement) -> Result<()> {
        let started = Instant::now();
        let running = Running::default();
        // Eager checkpoints run plans of their own: watched too.
        self.session.context().observe(&running.plans);
        let progress = (!self.options.quiet && io::stderr().is_terminal())
            .then(|| Progress::start(running.clone()));
        let session = self.session.clone();
        let work = async {
            // With cairn.checkpoint_on_corrupt = 'recompute', a damaged
            // checkpoint is rebuilt and the statement runs again.
            let mut repaired = Vec::new();
            loop {
                match run_collecting(&session, statement, running.clone()).await {
                    Err(e) if session.repair(&e, &mut repaired).await? => continue,
                    result => return result.map_err(ShellError::from),
                }
            }
        };
        let result = tokio::select! {
            r = work => r,
            _ = tokio::signal::ctrl_c() => Err(ShellError::Cancelled),
        };
        if let Some(p) = progress {
            p.finish().await;
        }
        let (schema, batches) = result?;
        self.show(&schema, &batches, started.elapsed())?;
        self.tell_auto_once();
        self.refresh_names().await;
        Ok(())
    }

    /// Says once per session, on a terminal, that Cairn cut a long lineage
    /// with a checkpoint of its own.
    fn tell_auto_once(&mut self) {
        if self.told_auto
            || self.options.quiet
            || !io::stderr().is_terminal()
            || self.session.context().auto_checkpoints_placed() == 0
        {
            return;
        }
        self.told_auto = true;
        eprintln!(
            "note: this plan's lineage grew long, so Cairn kept part of it as a checkpoint that \
             later statements read (EXPLAIN shows 'auto'; SET cairn.auto_checkpoint = 'off' to \
             stop, 'reliable' to keep them in the checkpoint dir)"
        );
    }

    /// Runs a meta-command.
    pub async fn run_command(&mut self, line: &str) -> Result<Flow> {
        let command: Command = line.parse().map_err(ShellError::Failed)?;
        match command {
            Command::Help => {
                let mut out = self.out();
                write!(out, "{}", help())?;
            }
            Command::Quit => return Ok(Flow::Quit),
            Command::ListTables => {
                let (schema, batches) = self.list_tables().await?;
                self.show(&schema, &batches, Duration::ZERO)?;
            }
            Command::Describe(name) => {
                let sql = format!(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                     WHERE table_name = '{}' ORDER BY ordinal_position",
                    name.replace('\'', "''")
                );
                let (schema, batches) = self.query(&sql).await?;
                if batches.iter().all(|b| b.num_rows() == 0) {
                    return Err(ShellError::Failed(format!(
                        "table '{name}' not found; \\d lists the tables"
                    )));
                }
                self.show(&schema, &batches, Duration::ZERO)?;
            }
            Command::Checkpoints => {
                let infos = self.session.context().checkpoints().await?;
                let batch = checkpoint_listing(&infos, Listing::Readable);
                self.show(&batch.schema(), &[batch], Duration::ZERO)?;
            }
            Command::Timing(on) => {
                self.options.timing = on.unwrap_or(!self.options.timing);
                self.note(&format!(
                    "Timing is {}.",
                    if self.options.timing { "on" } else { "off" }
                ))?;
            }
            Command::Format(format) => self.options.format = format,
            Command::MaxRows(n) => self.options.max_rows = n,
            Command::Include(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ShellError::Failed(format!("cannot read '{}': {e}", path.display()))
                })?;
                return Box::pin(self.run_input(&text)).await;
            }
            Command::Output(None) => self.output = None,
            Command::Output(Some(path)) => {
                let file = File::create(&path).map_err(|e| {
                    ShellError::Failed(format!("cannot write '{}': {e}", path.display()))
                })?;
                self.output = Some((path, file));
            }
        }
        Ok(Flow::Continue)
    }

    fn note(&mut self, text: &str) -> Result<()> {
        if !self.options.quiet {
            writeln!(io::stderr(), "{text}")?;
        }
        Ok(())
    }

    async fn query(&self, sql: &str) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let output = self.session.sql(sql).await?;
        let last = output
            .into_iter()
            .last()
            .ok_or_else(|| ShellError::Failed("no result".into()))?;
        Ok((last.schema, last.batches))
    }

    async fn list_tables(&self) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let mut names = Vec::new();
        let mut kinds = Vec::new();
        if let Some(schema) = public_schema(self.session()) {
            let mut tables = schema.table_names();
            tables.sort();
            for name in tables {
                let Some(kind) = self.session.context().table_kind(&name).await? else {
                    continue;
                };
                let kind = kind.to_string();
                names.push(name);
                kinds.push(kind);
            }
        }
        let batch = RecordBatch::try_from_iter(vec![
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
            ("kind", Arc::new(StringArray::from(kinds)) as ArrayRef),
        ])
        .map_err(|e| ShellError::Failed(e.to_string()))?;
        Ok((batch.schema(), vec![batch]))
    }

    /// Refreshes the names completion offers.
    async fn refresh_names(&self) {
        let Some(names) = &self.names else { return };
        let Some(schema) = public_schema(self.session()) else {
            return;
        };
        let mut fresh = Names::default();
        for table in schema.table_names() {
            let columns = match schema.table(&table).await {
                Ok(Some(t)) => t
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect(),
                _ => Vec::new(),
            };
            fresh.tables.push((table, columns));
        }
        if let Ok(infos) = self.session.context().checkpoints().await {
            fresh.checkpoints = infos.into_iter().map(|i| i.name).collect();
        }
        fresh.settings = self
            .session
            .context()
            .state()
            .config_options()
            .entries()
            .into_iter()
            .map(|e| e.key)
            .collect();
        *names.write().expect("names poisoned") = fresh;
    }

    /// The interactive loop.
    pub async fn interactive(&mut self, history: Option<PathBuf>) -> anyhow::Result<()> {
        let color = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let helper = CairnHelper::new(color);
        self.names = Some(helper.names());
        self.refresh_names().await;
        let config = Config::builder()
            .auto_add_history(false)
            .completion_type(CompletionType::List)
            .max_history_size(10_000)?
            .build();
        let mut editor: Editor<CairnHelper, DefaultHistory> = Editor::with_config(config)?;
        editor.set_helper(Some(helper));
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        if !self.options.quiet {
            let context = self.session.context();
            let on = if context.on_cluster() {
                " · on a cluster"
            } else {
                ""
            };
            println!(
                "Cairn {} (DataFusion 55){on} · checkpoints in {}\nType \\? for help, \\q or Ctrl-D to quit.",
                env!("CARGO_PKG_VERSION"),
                context.checkpoint_dir()
            );
        }
        loop {
            match editor.readline("cairn> ") {
                Ok(line) => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    // Like MySQL's client, lines with credentials stay out of history.
                    if !mentions_a_secret(&line) {
                        editor.add_history_entry(line.trim_end())?;
                        if let Some(path) = &history {
                            let _ = editor.append_history(path);
                        }
                    }
                    match self.run_input(&line).await {
                        Ok(Flow::Quit) => break,
                        Ok(Flow::Continue) => {}
                        Err(ShellError::Cancelled) => eprintln!("Cancelled."),
                        Err(ShellError::BrokenPipe) => {}
                        Err(e) => eprintln!("Error: {e}"),
                    }
                }
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// What a running statement has done so far, for its progress line: the
/// plans it runs (its own, and those of eager checkpoints) and rows out.
#[derive(Clone, Default)]
struct Running {
    rows_out: Arc<AtomicU64>,
    plans: Arc<PlanWatch>,
}

impl Running {
    /// Rows and bytes the plans' sources have read.
    fn scanned(&self) -> (usize, usize) {
        self.plans
            .plans()
            .iter()
            .map(scanned)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

fn scanned(plan: &Arc<dyn ExecutionPlan>) -> (usize, usize) {
    let children = plan.children();
    if !children.is_empty() {
        return children
            .into_iter()
            .map(scanned)
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    }
    let Some(metrics) = plan.metrics() else {
        return (0, 0);
    };
    let rows = metrics.output_rows().unwrap_or(0);
    let bytes = metrics
        .sum_by_name("bytes_scanned")
        .map_or(0, |v| v.as_usize());
    (rows, bytes)
}

/// Runs a statement and collects its result, counting rows as they come.
async fn run_collecting(
    session: &Session,
    statement: &ParsedStatement,
    running: Running,
) -> cairn_core::Result<(SchemaRef, Vec<RecordBatch>)> {
    let df = match session.execute_statement(statement).await? {
        Executed::Rows(batch) => {
            running
                .rows_out
                .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            return Ok((batch.schema(), vec![batch]));
        }
        Executed::Query(df) => df,
    };
    let task_ctx = Arc::new(df.task_ctx());
    let plan: Arc<dyn ExecutionPlan> = df.create_physical_plan().await?;
    running.plans.running(&plan);
    let schema = plan.schema();
    let mut stream = execute_stream(plan, task_ctx)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        running
            .rows_out
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        batches.push(batch);
    }
    Ok((schema, batches))
}

fn public_schema(session: &Session) -> Option<Arc<dyn SchemaProvider>> {
    let ctx = session.context();
    let state = ctx.state();
    let options = &state.config_options().catalog;
    ctx.catalog(&options.default_catalog)?
        .schema(&options.default_schema)
}

/// The live progress line of a long statement, on stderr.
struct Progress {
    stop: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(running: Running) -> Self {
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            // Quick statements show nothing.
            tokio::select! {
                _ = stopped.notified() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            loop {
                let written = running.plans.bytes_written() as u64;
                let (read_rows, read_bytes) = running.scanned();
                let mut msg = format!("{read_rows} rows read");
                if read_bytes > 0 {
                    msg.push_str(&format!(" ({})", human_bytes(read_bytes as u64)));
                }
                msg.push_str(&format!(
                    " · {} rows out",
                    running.rows_out.load(Ordering::Relaxed)
                ));
                if written > 0 {
                    msg.push_str(&format!(" · {} checkpointed", human_bytes(written)));
                }
                msg.push_str(" · Ctrl-C cancels");
                bar.set_message(msg);
                tokio::select! {
                    _ = stopped.notified() => break,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
            bar.finish_and_clear();
        });
        Self { stop, task }
    }

    /// Clears the line before anything else is printed.
    async fn finish(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}
