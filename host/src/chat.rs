//! `murmur chat`: an interactive conversation in the terminal.
//!
//! Lines are read with rustyline (editing, history in `<config folder>/.murmur/chat-history`);
//! the reply streams as it is generated. What the analyzers do shows as dim one-line notes:
//! an injection when it is delivered (`↳ rag: 3 passages → context`), a failed run as a
//! warning. Ctrl-C during a reply stops the turn (SPEC S36); Ctrl-D or `/quit` ends the
//! session, letting its `chat_end` work finish. `/events` toggles a line per event,
//! `/analyzers` lists the analyzers with their runs and failures so far.
//!
//! The model loads and each turn waits for its first token behind a spinner (indicatif, on
//! stderr, hidden when stderr is not a terminal). While the prompt is shown, notes arrive
//! through rustyline's external printer, above the line being edited.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anstyle::Style;
use anyhow::Context as _;
use futures_util::FutureExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};
use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::cli::Prepared;
use crate::config::Config;
use crate::events::{Event, EventKind, Observer, RunOutcome, TurnOutcome};
use crate::session::Session;

/// The session id of a terminal chat.
const SESSION: &str = "chat";

/// Runs the chat until Ctrl-D or `/quit`. `records`: observers that write the records asked
/// for (model inputs, events).
pub(crate) fn run(config: Config, records: Vec<Arc<dyn Observer>>) -> anyhow::Result<ExitCode> {
    let styled = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let view = Arc::new(ChatView::new(styled));

    view.spin("loading the model, the plugins and the knowledge base");
    let prepared = Prepared::load_with(&config, &|line| view.note(&format!("murmur: {line}")));
    view.stop_spinner();
    let prepared = prepared?;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut observers: Vec<Arc<dyn Observer>> =
        vec![Arc::new(crate::events::TracingLog), view.clone()];
    observers.extend(records);
    let runtime = tokio.block_on(async { prepared.runtime(&config, observers, None) });
    // Listening from the start: a Ctrl-C during a reply never finds the default handler,
    // which would end the process instead of the turn.
    let mut interrupts = tokio
        .block_on(async { signal(SignalKind::interrupt()) })
        .context("cannot listen for Ctrl-C")?;
    let session = tokio.block_on(async { runtime.open_session(SESSION) });
    let analyzers: Vec<Row> = runtime
        .analyzers()
        .entries
        .iter()
        .map(|a| Row {
            name: a.name.to_string(),
            plugin: a.plugin.clone(),
            hooks: a
                .slot
                .hooks
                .iter()
                .map(|h| h.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();

    let mut editor = DefaultEditor::new().context("cannot start the line editor")?;
    let history = config
        .file
        .parent()
        .map(|d| d.join(".murmur").join("chat-history"))
        .unwrap_or_else(|| PathBuf::from(".murmur/chat-history"));
    // No history yet is the usual first run.
    let _ = editor.load_history(&history);
    if let Ok(printer) = editor.create_external_printer() {
        view.state().printer = Some(Box::new(printer));
    }
    let echo = !std::io::stdin().is_terminal();

    let names: Vec<&str> = analyzers.iter().map(|a| a.name.as_str()).collect();
    view.line(&view.dim(&format!(
        "murmur chat · {} · analyzers: {} · /analyzers /events /quit · Ctrl-C stops a reply, Ctrl-D exits",
        config.file.display(),
        if names.is_empty() {
            "none".to_string()
        } else {
            names.join(", ")
        }
    )));

    loop {
        view.set_reading(true);
        let read = editor.readline(&view.prompt());
        view.set_reading(false);
        let line = match read {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                view.line(&view.dim("(Ctrl-D or /quit ends the chat)"));
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read the terminal"),
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if echo {
            // Input from a pipe is not shown by the terminal: echo it, for a readable log.
            view.line(&format!("{}{text}", view.prompt()));
        }
        let _ = editor.add_history_entry(text);
        match text {
            "/quit" | "/exit" => break,
            "/events" => {
                let on = view.toggle_events();
                view.line(&view.dim(if on {
                    "events on: a line per event"
                } else {
                    "events off"
                }));
            }
            "/analyzers" => view.line(&view.analyzer_table(&analyzers)),
            "/help" => view.line(&view.dim(
                "/analyzers lists the analyzers, /events toggles the event view, /quit ends the chat",
            )),
            _ if text.starts_with('/') => view.line(&view.dim(&format!(
                "unknown command `{text}`: /analyzers, /events, /quit (a message cannot start with `/`)"
            ))),
            _ => tokio.block_on(turn(&view, &session, text, &mut interrupts)),
        }
    }

    if let Some(dir) = history.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = editor.save_history(&history) {
        view.line(&view.dim(&format!(
            "murmur: cannot save the history to {}: {e}",
            history.display()
        )));
    }
    view.spin("closing the session (chat_end analyzers)");
    tokio.block_on(async {
        session.close().await;
        runtime.shutdown(Duration::from_secs(2)).await;
    });
    view.stop_spinner();
    tokio.shutdown_timeout(Duration::from_millis(200));
    Ok(ExitCode::SUCCESS)
}

/// One turn: the message goes out, the reply streams through the view; Ctrl-C stops it.
async fn turn(view: &ChatView, session: &Session, text: &str, interrupts: &mut Signal) {
    // A Ctrl-C from before the turn (while reading a pipe) is not meant for it.
    while let Some(Some(())) = interrupts.recv().now_or_never() {}
    view.begin_turn();
    let answer = session.send(text);
    let wait = answer.wait();
    tokio::pin!(wait);
    let end = tokio::select! {
        end = &mut wait => end,
        _ = interrupts.recv() => {
            session.stop();
            wait.await
        }
    };
    view.stop_spinner();
    let ended = view.end_line();
    match end {
        Ok(end) => match end.outcome {
            TurnOutcome::Completed => {
                if !ended && end.reply.is_empty() {
                    view.line(&view.dim("(empty reply)"));
                }
            }
            TurnOutcome::Stopped => view.line(&view.dim("(stopped)")),
            TurnOutcome::Error | TurnOutcome::MaxSteps | TurnOutcome::ToolCalls => {
                view.line(&view.warn(&format!(
                    "turn {} ended ({}): {}",
                    end.turn,
                    serde_json::to_value(end.outcome)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    end.error.unwrap_or_default()
                )))
            }
        },
        Err(e) => view.line(&view.warn(&format!("murmur: {e}"))),
    }
}

/// An analyzer as `/analyzers` lists it.
#[derive(Debug)]
struct Row {
    name: String,
    plugin: String,
    hooks: String,
}

/// Counts per analyzer, from its `analyzer_run` and delivery events.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    runs: u64,
    failed: u64,
    delivered: u64,
}

struct ViewState {
    spinner: Option<ProgressBar>,
    reading: bool,
    printer: Option<Box<dyn ExternalPrinter + Send>>,
    events: bool,
    /// Reply text printed in this turn and the line not ended yet.
    replying: bool,
    mid_line: bool,
    /// A note interrupted the reply's line: its next text starts a new, prefixed line.
    interrupted: bool,
    /// What each queued injection carries, for the note at its delivery.
    injections: HashMap<u64, String>,
    counts: BTreeMap<String, Counts>,
}

/// The terminal: an [`Observer`] that prints the streamed reply and notes, and the state the
/// commands show.
pub(crate) struct ChatView {
    styled: bool,
    state: Mutex<ViewState>,
}

impl ChatView {
    fn new(styled: bool) -> ChatView {
        ChatView {
            styled,
            state: Mutex::new(ViewState {
                spinner: None,
                reading: false,
                printer: None,
                events: false,
                replying: false,
                mid_line: false,
                interrupted: false,
                injections: HashMap::new(),
                counts: BTreeMap::new(),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, ViewState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn paint(&self, style: Style, text: &str) -> String {
        if self.styled {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }

    fn dim(&self, text: &str) -> String {
        self.paint(Style::new().dimmed(), text)
    }

    fn warn(&self, text: &str) -> String {
        self.paint(
            Style::new()
                .fg_color(Some(anstyle::AnsiColor::Yellow.into()))
                .dimmed(),
            &format!("⚠ {text}"),
        )
    }

    fn prompt(&self) -> String {
        // rustyline measures the prompt's width; escape codes would count as characters.
        "you › ".to_string()
    }

    fn spin(&self, message: &str) {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        if let Some(old) = self.state().spinner.replace(bar) {
            old.finish_and_clear();
        }
    }

    fn stop_spinner(&self) {
        if let Some(bar) = self.state().spinner.take() {
            bar.finish_and_clear();
        }
    }

    fn set_reading(&self, reading: bool) {
        self.state().reading = reading;
    }

    fn toggle_events(&self) -> bool {
        let mut s = self.state();
        s.events = !s.events;
        s.events
    }

    fn begin_turn(&self) {
        {
            let mut s = self.state();
            s.replying = false;
            s.mid_line = false;
        }
        self.spin("thinking");
    }

    /// Ends the reply's line, if one is open; returns whether the turn printed reply text.
    fn end_line(&self) -> bool {
        let mut s = self.state();
        if s.mid_line {
            write_out(&mut s, "\n");
            s.mid_line = false;
        }
        let replied = s.replying;
        s.replying = false;
        replied
    }

    /// Prints a whole line: above the prompt while it is shown, else on stdout (below the
    /// spinner's line, which is redrawn).
    fn line(&self, text: &str) {
        let mut s = self.state();
        emit_line(&mut s, text);
    }

    /// A progress or warning line from loading, on stderr like every command's.
    fn note(&self, text: &str) {
        let write = || eprintln!("{text}");
        match &self.state().spinner {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }

    fn analyzer_table(&self, analyzers: &[Row]) -> String {
        if analyzers.is_empty() {
            return self.dim("no analyzers: add [[analyzer]] tables to the config");
        }
        let counts = self.state().counts.clone();
        let width = |title: &str, column: fn(&Row) -> &str| {
            analyzers
                .iter()
                .map(|a| column(a).chars().count())
                .max()
                .unwrap_or(0)
                .max(title.chars().count())
        };
        let w1 = width("analyzer", |a| &a.name);
        let w2 = width("plugin", |a| &a.plugin);
        let w3 = width("hooks", |a| &a.hooks);
        let mut out = format!(
            "{:<w1$}  {:<w2$}  {:<w3$}  {:>4}  {:>6}  {:>9}",
            "analyzer", "plugin", "hooks", "runs", "failed", "delivered"
        );
        for Row {
            name,
            plugin,
            hooks,
        } in analyzers
        {
            let c = counts.get(name).copied().unwrap_or_default();
            out.push_str(&format!(
                "\n{name:<w1$}  {plugin:<w2$}  {hooks:<w3$}  {:>4}  {:>6}  {:>9}",
                c.runs, c.failed, c.delivered
            ));
        }
        out
    }
}

/// Prints a whole line with the view locked (see [`ChatView::line`]).
fn emit_line(s: &mut ViewState, text: &str) {
    if s.reading {
        if let Some(p) = s.printer.as_mut() {
            // The printer only fails when the editor is gone; print directly then.
            if p.print(format!("{text}\n")).is_ok() {
                return;
            }
        }
    }
    let text = if s.mid_line {
        s.interrupted = s.replying;
        format!("\n{text}\n")
    } else {
        format!("{text}\n")
    };
    s.mid_line = false;
    write_out(s, &text);
}

/// Writes to stdout, around the spinner if one turns.
fn write_out(s: &mut ViewState, text: &str) {
    let write = || {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    };
    match &s.spinner {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// A short description of what an injection carries, from its details: the lengths of its
/// lists (`3 passages`, `2 corrections`), else its labels, else the start of its text.
fn summary(content: &str, details: Option<&serde_json::Value>) -> String {
    let mut parts = Vec::new();
    if let Some(obj) = details.and_then(serde_json::Value::as_object) {
        for (key, value) in obj {
            if key != "labels" {
                if let Some(list) = value.as_array().filter(|l| !l.is_empty()) {
                    let noun = if list.len() == 1 {
                        key.strip_suffix('s').unwrap_or(key)
                    } else {
                        key.as_str()
                    };
                    parts.push(format!("{} {noun}", list.len()));
                }
            }
        }
        if parts.is_empty() {
            if let Some(labels) = obj.get("labels").and_then(serde_json::Value::as_array) {
                parts.extend(labels.iter().filter_map(|l| l.as_str().map(str::to_string)));
            }
        }
    }
    if !parts.is_empty() {
        return parts.join(", ");
    }
    let line = content.lines().next().unwrap_or_default();
    let mut short: String = line.chars().take(60).collect();
    if short.len() < line.len() || content.lines().nth(1).is_some() {
        short.push('…');
    }
    format!("\"{short}\"")
}

impl Observer for ChatView {
    fn chunk(&self, _session: &str, _turn: u64, text: &str) {
        let mut s = self.state();
        if let Some(bar) = s.spinner.take() {
            bar.finish_and_clear();
        }
        let mut out = String::new();
        if !s.replying || s.interrupted {
            if s.mid_line {
                out.push('\n');
            }
            out.push_str(&self.paint(Style::new().bold(), "murmur › "));
            s.replying = true;
            s.interrupted = false;
        }
        out.push_str(text);
        s.mid_line = !out.ends_with('\n');
        write_out(&mut s, &out);
    }

    fn event(&self, event: &Event) {
        {
            let mut lines = Vec::new();
            let mut s = self.state();
            match &event.kind {
                EventKind::InjectionEnqueued {
                    id,
                    content,
                    details,
                    ..
                } => {
                    s.injections.insert(*id, summary(content, details.as_ref()));
                }
                EventKind::InjectionDelivered {
                    id,
                    analyzer,
                    lane,
                    boundary,
                    step,
                    ..
                } => {
                    s.counts.entry(analyzer.clone()).or_default().delivered += 1;
                    let what = s.injections.remove(id).unwrap_or_default();
                    let lane = serde_json::to_value(lane)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    let at = match boundary {
                        crate::events::Boundary::Step => format!(" (step {step})"),
                        crate::events::Boundary::Turn => String::new(),
                    };
                    lines.push(self.dim(&format!("↳ {analyzer}: {what} → {lane}{at}")));
                }
                EventKind::InjectionSuperseded { id, .. }
                | EventKind::InjectionStale { id, .. }
                | EventKind::InjectionUndelivered { id, .. } => {
                    s.injections.remove(id);
                }
                EventKind::InjectionRejected {
                    analyzer, reason, ..
                } => lines.push(self.warn(&format!("{analyzer}: injection rejected: {reason}"))),
                EventKind::AnalyzerRun {
                    analyzer,
                    hook,
                    outcome,
                    error,
                    ..
                } => {
                    let c = s.counts.entry(analyzer.clone()).or_default();
                    c.runs += 1;
                    if *outcome != RunOutcome::Ok {
                        c.failed += 1;
                        let outcome = serde_json::to_value(outcome)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        lines.push(self.warn(&format!(
                            "{analyzer} ({}) {outcome}: {}",
                            hook.as_str(),
                            error.as_deref().unwrap_or("no reason given")
                        )));
                    }
                }
                EventKind::ToolCalled { call, .. } => {
                    lines.push(self.dim(&format!("⚙ {}({})", call.name, call.arguments)));
                }
                EventKind::Error { message } => lines.push(self.warn(message)),
                _ => {}
            }
            if s.events {
                if let Ok(serde_json::Value::Object(mut o)) = serde_json::to_value(event) {
                    let kind = o
                        .remove("type")
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    o.remove("session");
                    let mut rest = serde_json::Value::Object(o).to_string();
                    if rest.chars().count() > 160 {
                        rest = rest.chars().take(159).collect::<String>() + "…";
                    }
                    lines.push(self.dim(&format!("· {kind} {rest}")));
                }
            }
            // Printed under the lock: `/events off` takes effect before its confirmation.
            for line in lines {
                emit_line(&mut s, &line);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_summary_counts_the_details_lists_or_names_the_labels_or_quotes_the_text() {
        let rag = json!({"labels": ["hist"], "passages": [{"id": 1}, {"id": 2}, {"id": 3}]});
        assert_eq!(summary("…", Some(&rag)), "3 passages");
        let one = json!({"corrections": [{"stated": "48.6 km"}], "labels": ["contradicted"]});
        assert_eq!(summary("…", Some(&one)), "1 correction");
        let labels = json!({"labels": ["card", "email"], "findings": []});
        assert_eq!(summary("…", Some(&labels)), "card, email");
        assert_eq!(summary("Be brief.", None), "\"Be brief.\"");
        let long = "x".repeat(70);
        assert_eq!(summary(&long, None), format!("\"{}…\"", "x".repeat(60)));
    }

    #[test]
    fn the_analyzer_table_shows_runs_failures_and_deliveries() {
        let view = ChatView::new(false);
        let at = |kind| Event {
            session: Arc::from("chat"),
            at_ms: 0,
            kind,
        };
        for outcome in [RunOutcome::Ok, RunOutcome::TimedOut] {
            view.event(&at(EventKind::AnalyzerRun {
                analyzer: "rag".into(),
                hook: murmur_plugin_api::Hook::TurnStart,
                turn: 1,
                run: 1,
                outcome,
                duration_ms: 3,
                injections: 1,
                tokens: 0,
                error: None,
            }));
        }
        let row = |name: &str, hooks: &str| Row {
            name: name.into(),
            plugin: name.into(),
            hooks: hooks.into(),
        };
        let table = view.analyzer_table(&[row("rag", "turn_start"), row("moderation", "")]);
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            ["analyzer", "plugin", "hooks", "runs", "failed", "delivered"]
        );
        assert_eq!(rows[1], ["rag", "rag", "turn_start", "2", "1", "0"]);
        assert_eq!(rows[2], ["moderation", "moderation", "0", "0", "0"]);
    }
}
