//! The turn loop of one session as a state machine without I/O (SPEC S1–S16, S30, S35, S36).
//!
//! The driver feeds it what happened (a user message, a model reply, tool results, finished
//! analyzer work) and performs the [`Action`]s it returns: call the model with this exact
//! input, run these tools, fire this hook. Everything the SPEC says about *where* a message
//! lands is decided here and tested without a runtime.

use std::collections::VecDeque;
use std::sync::Arc;

use murmur_plugin_api::{Hook, Injection, Origin, Role};
use serde::{Deserialize, Serialize};

use crate::config::InstructionsPlacement;
use crate::events::{Boundary, EventKind, TurnOutcome};
use crate::model::{ContextMessage, Messages, ModelInput, ModelReply, ToolCall, ToolSpec, Usage};
use crate::session::compaction::{Compaction, CompactionSettings};
use crate::session::queue::{InjectQueue, Lane, Provenance, Queued};

/// The parts of the config a session's turn loop needs.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Base system prompt.
    pub system_prompt: String,
    /// Most model calls per turn.
    pub max_steps: u32,
    /// S30.
    pub steering: bool,
    /// S6.
    pub placement: InstructionsPlacement,
    /// What to do when a step's input does not fit the model's context window.
    pub compaction: CompactionSettings,
}

/// What one turn asks of the model beyond the session's settings: the tools of an HTTP
/// client that runs them itself, a JSON schema the reply must follow, sampling limits. A
/// message without options uses the defaults: host tools only, free text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnOptions {
    /// Tools the client runs: a step that calls one ends the turn with
    /// [`TurnOutcome::ToolCalls`], and the client's results resume it (S11).
    pub client_tools: Arc<[ToolSpec]>,
    /// The reply must be JSON that matches this schema.
    pub json_schema: Option<serde_json::Value>,
    /// Most tokens per model call.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
}

impl TurnOptions {
    fn is_client_tool(&self, name: &str) -> bool {
        self.client_tools.iter().any(|t| t.name == name)
    }
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Call the model with exactly this input.
    CallModel(Arc<ModelInput>),
    /// Run these tool calls and report with [`TurnMachine::tools_finished`].
    CallTools {
        /// Turn.
        turn: u64,
        /// Step that requested them.
        step: u32,
        /// The calls, in order.
        calls: Vec<ToolCall>,
    },
    /// Fire a hook for the subscribed analyzers.
    Fire {
        /// The hook.
        hook: Hook,
        /// The turn it is about.
        turn: u64,
        /// The step it is about (0 when none).
        step: u32,
    },
    /// A turn ended; `turn_complete` follows once deferred work settled (S22).
    TurnEnded(TurnEnd),
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnEnd {
    /// The turn.
    pub turn: u64,
    /// Its outcome.
    pub outcome: TurnOutcome,
    /// Model calls it made.
    pub steps: u32,
    /// The visible reply (possibly partial when stopped).
    pub reply: String,
    /// The cause, for errors.
    pub error: Option<String>,
    /// Every user message with a sequence number up to this one has been answered.
    pub answered_upto: u64,
    /// With [`TurnOutcome::ToolCalls`]: the calls the client must run and answer.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens the turn's model calls used, summed.
    pub usage: Usage,
}

/// What a store keeps of a session besides its model context and its injections: enough
/// to resume it after a restart (S37).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Turns started so far.
    pub turns: u64,
    /// User messages received so far (their sequence numbers).
    pub user_seq: u64,
    /// The session's own system prompt, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// The turn that was running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningTurn>,
    /// User messages waiting for a turn or a step boundary, in arrival order, with their
    /// sequence numbers (S30).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<(u64, String)>,
}

/// The running turn in a [`Checkpoint`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningTurn {
    /// The turn.
    pub turn: u64,
    /// Its current step.
    pub step: u32,
    /// Its system text, with the instructions delivered at its start.
    pub instructions: String,
}

/// A session as a store gives it back.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// Counters, pending messages and the running turn.
    pub checkpoint: Checkpoint,
    /// The model context.
    pub history: Vec<ContextMessage>,
    /// Injections still queued, in queue order.
    pub queued: Vec<Queued>,
    /// The highest injection id the session gave out.
    pub last_injection: u64,
    /// Compactions so far (see [`TurnMachine::compactions`]).
    pub compactions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Model,
    Tools,
}

#[derive(Debug, Clone)]
struct Running {
    turn: u64,
    step: u32,
    instructions: String,
    phase: Phase,
    pending_calls: Vec<ToolCall>,
    /// Calls of the current step that the client runs (see [`TurnOptions::client_tools`]).
    client_calls: Vec<ToolCall>,
    answered_upto: u64,
    options: Arc<TurnOptions>,
    usage: Usage,
}

/// One session's conversation state and turn logic.
#[derive(Debug)]
pub struct TurnMachine {
    id: Arc<str>,
    settings: Arc<SessionSettings>,
    history: Messages,
    queue: InjectQueue,
    turns: u64,
    running: Option<Running>,
    /// User messages waiting for a turn of their own, with their sequence numbers and turn
    /// options (S30).
    waiting: VecDeque<(u64, String, Arc<TurnOptions>)>,
    /// User messages waiting for the next step boundary of the running turn (S30).
    steer: Vec<(u64, String)>,
    user_seq: u64,
    /// Replaces `settings.system_prompt` for this session (an HTTP client's own).
    system_prompt: Option<String>,
    /// Times the history's prefix was replaced by a compaction.
    compactions: u64,
    events: Vec<EventKind>,
}

impl TurnMachine {
    /// A new, empty session.
    pub fn new(id: Arc<str>, settings: Arc<SessionSettings>) -> Self {
        TurnMachine {
            id,
            settings,
            history: Messages::new(),
            queue: InjectQueue::new(),
            turns: 0,
            running: None,
            waiting: VecDeque::new(),
            steer: Vec::new(),
            user_seq: 0,
            system_prompt: None,
            compactions: 0,
            events: Vec::new(),
        }
    }

    /// A session restored from a store after a restart (S37). A turn that was running ends
    /// as stopped, its unanswered tool calls answered with an error so the history stays
    /// well-formed; user messages that were waiting then start their turns in arrival order
    /// (the returned actions). Queued injections drain at the next boundary as usual.
    pub fn restore(
        id: Arc<str>,
        settings: Arc<SessionSettings>,
        restored: Restored,
    ) -> (Self, Vec<Action>) {
        let Restored {
            checkpoint,
            history,
            queued,
            last_injection,
            compactions,
        } = restored;
        let mut m = TurnMachine {
            history: history.into(),
            queue: InjectQueue::restore(queued, last_injection),
            turns: checkpoint.turns,
            user_seq: checkpoint.user_seq,
            system_prompt: checkpoint.system_prompt,
            compactions,
            waiting: checkpoint
                .pending
                .into_iter()
                .map(|(seq, text)| (seq, text, Arc::default()))
                .collect(),
            ..TurnMachine::new(id, settings)
        };
        let interrupted = checkpoint.running.as_ref().map(|r| r.turn);
        m.events.push(EventKind::SessionResumed {
            turns: m.turns,
            messages: m.history.len(),
            queued: m.queue.len(),
            interrupted,
        });
        let mut actions = Vec::new();
        if let Some(r) = checkpoint.running {
            let unanswered: Vec<ToolCall> = m.unanswered_calls().into_iter().cloned().collect();
            for call in unanswered {
                let output = "error: the host restarted before this call returned";
                m.events.push(EventKind::ToolResult {
                    turn: r.turn,
                    step: r.step,
                    id: call.id.clone(),
                    name: call.name.clone(),
                    output: output.into(),
                });
                m.history.push(ContextMessage::tool(&call, output));
            }
            m.running = Some(Running {
                turn: r.turn,
                step: r.step,
                instructions: r.instructions,
                phase: Phase::Model,
                pending_calls: Vec::new(),
                client_calls: Vec::new(),
                answered_upto: 0,
                options: Arc::default(),
                usage: Usage::default(),
            });
            actions = m.end_turn(
                TurnOutcome::Stopped,
                String::new(),
                Some("the host restarted during this turn".into()),
            );
        } else if let Some((seq, text, options)) = m.waiting.pop_front() {
            m.begin_turn(seq, text, options, &mut actions);
        }
        (m, actions)
    }

    /// What a store keeps besides the history and the injections.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            turns: self.turns,
            user_seq: self.user_seq,
            system_prompt: self.system_prompt.clone(),
            running: self.running.as_ref().map(|r| RunningTurn {
                turn: r.turn,
                step: r.step,
                instructions: r.instructions.clone(),
            }),
            pending: self
                .steer
                .iter()
                .cloned()
                .chain(
                    self.waiting
                        .iter()
                        .map(|(seq, text, _)| (*seq, text.clone())),
                )
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        }
    }

    /// How many times a compaction replaced the history's prefix; between two equal counts
    /// the history only grew at its end.
    pub fn compactions(&self) -> u64 {
        self.compactions
    }

    /// A session restored with this history, e.g. one ending in tool results (S11).
    pub fn with_history(
        id: Arc<str>,
        settings: Arc<SessionSettings>,
        history: impl Into<Messages>,
        turns: u64,
    ) -> Self {
        TurnMachine {
            history: history.into(),
            turns,
            ..TurnMachine::new(id, settings)
        }
    }

    /// Uses this system prompt instead of the configured one, from the next turn on.
    pub fn set_system_prompt(&mut self, prompt: String) {
        self.system_prompt = Some(prompt);
    }

    /// The options of the running turn.
    pub fn options(&self) -> Option<&Arc<TurnOptions>> {
        self.running.as_ref().map(|r| &r.options)
    }

    /// The tool calls at the end of the history that have no result yet: those of a turn
    /// that ended with [`TurnOutcome::ToolCalls`], until the client answers them.
    pub fn unanswered_calls(&self) -> Vec<&ToolCall> {
        // Only the last assistant message can have calls without results, and only when
        // nothing but tool results and injections follow it: every step that goes on gives
        // each call a result. So the search stops at the first other message from the end,
        // and a long history costs nothing here.
        let mut last = None;
        for (i, m) in self.history.iter().enumerate().rev() {
            if m.role == Role::Tool || m.origin == Origin::Injection {
                continue;
            }
            if m.role == Role::Assistant && !m.tool_calls.is_empty() {
                last = Some(i);
            }
            break;
        }
        let Some(at) = last else {
            return Vec::new();
        };
        let answered: Vec<&str> = self
            .history
            .iter()
            .skip(at + 1)
            .filter_map(|m| m.tool_call_id.as_deref())
            .collect();
        self.history[at]
            .tool_calls
            .iter()
            .filter(|c| !answered.contains(&c.id.as_str()))
            .collect()
    }

    /// Session id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The model context: history with injections at their positions.
    pub fn history(&self) -> &Messages {
        &self.history
    }

    /// The user-visible transcript (S4).
    pub fn transcript(&self) -> impl Iterator<Item = &ContextMessage> {
        self.history.iter().filter(|m| m.is_visible())
    }

    /// The inject queue.
    pub fn queue(&self) -> &InjectQueue {
        &self.queue
    }

    /// Turns started so far.
    pub fn turns(&self) -> u64 {
        self.turns
    }

    /// Whether no turn is running.
    pub fn is_idle(&self) -> bool {
        self.running.is_none()
    }

    /// The latest user message, if any.
    pub fn latest_user(&self) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .find(|m| m.origin == Origin::User)
            .map(|m| m.content.as_str())
    }

    /// The latest assistant reply with text, if any.
    pub fn latest_reply(&self) -> Option<&str> {
        self.history
            .iter()
            .rev()
            .find(|m| m.origin == Origin::Assistant && !m.content.is_empty())
            .map(|m| m.content.as_str())
    }

    /// Events produced since the last call, in order.
    pub fn take_events(&mut self) -> Vec<EventKind> {
        std::mem::take(&mut self.events)
    }

    /// A user message arrived. Returns its sequence number and what to do (S30).
    pub fn user_message(&mut self, text: String) -> (u64, Vec<Action>) {
        self.user_message_with(text, Arc::default())
    }

    /// A user message with options for the turn it starts. A message that joins a running
    /// turn (steering, S30) joins it with that turn's options.
    pub fn user_message_with(
        &mut self,
        text: String,
        options: Arc<TurnOptions>,
    ) -> (u64, Vec<Action>) {
        self.user_seq += 1;
        let seq = self.user_seq;
        if self.running.is_none() {
            let mut actions = Vec::new();
            self.begin_turn(seq, text, options, &mut actions);
            return (seq, actions);
        }
        let steer = self.settings.steering;
        self.events.push(EventKind::UserMessagePending {
            text: text.clone(),
            steer,
        });
        if steer {
            self.steer.push((seq, text));
        } else {
            self.waiting.push_back((seq, text, options));
        }
        (seq, Vec::new())
    }

    /// The client's results for the calls of a turn that ended with
    /// [`TurnOutcome::ToolCalls`], as `(call id, output)`: they are appended in the order of
    /// the calls and resume the turn (S11). Returns a sequence number that the resumed turn's
    /// end answers, like a user message's. Refused, with the reason, while a turn runs or
    /// when the results do not answer exactly the calls waiting for them.
    pub fn client_results(
        &mut self,
        results: Vec<(String, String)>,
        options: Arc<TurnOptions>,
    ) -> Result<(u64, Vec<Action>), String> {
        if self.running.is_some() {
            return Err(
                "a turn is running in this session; send tool results after it ends".into(),
            );
        }
        let waiting: Vec<ToolCall> = self.unanswered_calls().into_iter().cloned().collect();
        if waiting.is_empty() {
            return Err("no tool call of this session is waiting for a result".into());
        }
        let ids: Vec<&str> = waiting.iter().map(|c| c.id.as_str()).collect();
        let unknown: Vec<&str> = results
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| !ids.contains(id))
            .collect();
        let missing: Vec<&str> = ids
            .iter()
            .copied()
            .filter(|id| !results.iter().any(|(r, _)| r == id))
            .collect();
        if !unknown.is_empty() || !missing.is_empty() {
            let list = |v: &[&str]| {
                v.iter()
                    .map(|id| format!("`{id}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut why = Vec::new();
            if !missing.is_empty() {
                why.push(format!("no result for {}", list(&missing)));
            }
            if !unknown.is_empty() {
                why.push(format!(
                    "results for calls that are not waiting: {}",
                    list(&unknown)
                ));
            }
            return Err(format!(
                "the tool results do not answer the calls waiting for them ({}): {}",
                list(&ids),
                why.join("; ")
            ));
        }
        let turn = self.turns;
        for call in &waiting {
            let Some((_, output)) = results.iter().find(|(id, _)| *id == call.id) else {
                continue;
            };
            self.events.push(EventKind::ToolResult {
                turn,
                step: 0,
                id: call.id.clone(),
                name: call.name.clone(),
                output: output.clone(),
            });
            self.history
                .push(ContextMessage::tool(call, output.clone()));
        }
        self.user_seq += 1;
        Ok((self.user_seq, self.resume_turn_with(options)))
    }

    /// Starts a turn whose input is the tool results the history ends with (a resumed tool
    /// step): instructions drain as at any turn boundary, context injections wait for the
    /// first step boundary (S11).
    pub fn resume_turn(&mut self) -> Vec<Action> {
        self.resume_turn_with(Arc::default())
    }

    fn resume_turn_with(&mut self, options: Arc<TurnOptions>) -> Vec<Action> {
        let mut actions = Vec::new();
        if self.running.is_some() || self.history.last().map(|m| m.role) != Some(Role::Tool) {
            return actions;
        }
        self.turns += 1;
        let turn = self.turns;
        self.events.push(EventKind::TurnStarted {
            turn,
            user: String::new(),
        });
        self.expire(turn);
        let instructions = self.turn_instructions(turn, None);
        self.running = Some(Running {
            turn,
            step: 1,
            instructions,
            phase: Phase::Model,
            pending_calls: Vec::new(),
            client_calls: Vec::new(),
            answered_upto: self.user_seq,
            options,
            usage: Usage::default(),
        });
        actions.push(Action::CallModel(self.model_input()));
        actions.push(Action::Fire {
            hook: Hook::TurnStart,
            turn,
            step: 0,
        });
        actions
    }

    fn begin_turn(
        &mut self,
        seq: u64,
        text: String,
        options: Arc<TurnOptions>,
        actions: &mut Vec<Action>,
    ) {
        // A client that answers its tool calls with a new message instead: every call still
        // gets a result, so the history stays well-formed for the model.
        let unanswered: Vec<ToolCall> = self.unanswered_calls().into_iter().cloned().collect();
        for call in unanswered {
            let output = "error: the client sent no result for this call";
            self.events.push(EventKind::ToolResult {
                turn: self.turns,
                step: 0,
                id: call.id.clone(),
                name: call.name.clone(),
                output: output.into(),
            });
            self.history.push(ContextMessage::tool(&call, output));
        }
        self.turns += 1;
        let turn = self.turns;
        self.events.push(EventKind::TurnStarted {
            turn,
            user: text.clone(),
        });
        self.expire(turn);
        let instructions = self.turn_instructions(turn, Some(text));
        self.deliver_context(turn, 1, Boundary::Turn);
        self.running = Some(Running {
            turn,
            step: 1,
            instructions,
            phase: Phase::Model,
            pending_calls: Vec::new(),
            client_calls: Vec::new(),
            answered_upto: seq,
            options,
            usage: Usage::default(),
        });
        actions.push(Action::CallModel(self.model_input()));
        if turn == 1 {
            actions.push(Action::Fire {
                hook: Hook::ChatStart,
                turn,
                step: 0,
            });
        }
        actions.push(Action::Fire {
            hook: Hook::TurnStart,
            turn,
            step: 0,
        });
    }

    fn expire(&mut self, turn: u64) {
        for q in self.queue.expire(turn) {
            self.events.push(EventKind::InjectionStale {
                id: q.id,
                analyzer: q.provenance.analyzer.to_string(),
                about_turn: q.provenance.about_turn,
                turn,
            });
        }
    }

    /// Drains the instructions lane at a turn boundary (S1, S2, S6, S10) and appends the
    /// user message, if any. Returns the turn's system text.
    fn turn_instructions(&mut self, turn: u64, user: Option<String>) -> String {
        let drained = self.queue.drain(Lane::Instructions);
        let mut instructions = self
            .system_prompt
            .clone()
            .unwrap_or_else(|| self.settings.system_prompt.clone());
        if !drained.is_empty() {
            let text = drained
                .iter()
                .map(|q| q.injection.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n");
            match self.settings.placement {
                InstructionsPlacement::System => {
                    if !instructions.is_empty() {
                        instructions.push_str("\n\n");
                    }
                    instructions.push_str(&text);
                }
                InstructionsPlacement::BeforeLastUser => {
                    let mut names: Vec<&str> = Vec::new();
                    for q in &drained {
                        if !names.contains(&&*q.provenance.analyzer) {
                            names.push(&q.provenance.analyzer);
                        }
                    }
                    let message = ContextMessage::injection(Role::System, text, names.join(", "));
                    self.history.push(message);
                }
            }
            for q in &drained {
                self.delivered(q, Boundary::Turn, turn, 1);
            }
        }
        if let Some(text) = user {
            self.history.push(ContextMessage::user(text));
        }
        instructions
    }

    fn deliver_context(&mut self, turn: u64, step: u32, boundary: Boundary) {
        for q in self.queue.drain(Lane::Context) {
            self.history.push(ContextMessage::injection(
                q.injection.role,
                q.injection.content.clone(),
                q.provenance.analyzer.to_string(),
            ));
            self.delivered(&q, boundary, turn, step);
        }
    }

    fn delivered(&mut self, q: &Queued, boundary: Boundary, turn: u64, step: u32) {
        self.events.push(EventKind::InjectionDelivered {
            id: q.id,
            analyzer: q.provenance.analyzer.to_string(),
            lane: q.lane,
            boundary,
            turn,
            step,
        });
    }

    fn model_input(&mut self) -> Arc<ModelInput> {
        let Some(r) = &self.running else {
            // Only called while a turn runs; an empty input is harmless if that ever breaks.
            return Arc::new(ModelInput {
                session: self.id.to_string(),
                turn: self.turns,
                step: 0,
                instructions: String::new(),
                messages: Messages::new(),
            });
        };
        self.events.push(EventKind::ModelCalled {
            turn: r.turn,
            step: r.step,
            messages: self.history.len(),
        });
        Arc::new(ModelInput {
            session: self.id.to_string(),
            turn: r.turn,
            step: r.step,
            instructions: r.instructions.clone(),
            messages: self.history.clone(),
        })
    }

    /// The input of the current step was compacted before the model call: the first
    /// `removed` history messages give way to the summary, if any. The history only grows at
    /// its end while the model runs, so the prefix is the one the compaction saw.
    pub fn compacted(&mut self, compaction: &Compaction) {
        let removed = compaction.removed.min(self.history.len());
        let replacement = compaction.replacement();
        self.history.replace_prefix(removed, replacement);
        self.compactions += 1;
    }

    /// The model answered the current step.
    pub fn model_replied(&mut self, reply: ModelReply) -> Vec<Action> {
        let Some(r) = self.running.as_mut().filter(|r| r.phase == Phase::Model) else {
            return Vec::new();
        };
        self.events.push(EventKind::ModelReplied {
            turn: r.turn,
            step: r.step,
            usage: reply.usage,
            tool_calls: reply.tool_calls.len(),
        });
        r.usage.prompt_tokens += reply.usage.prompt_tokens;
        r.usage.prompt_evaluated += reply.usage.prompt_evaluated;
        r.usage.completion_tokens += reply.usage.completion_tokens;
        if reply.tool_calls.is_empty() {
            self.history
                .push(ContextMessage::assistant(reply.text.clone(), Vec::new()));
            return self.end_turn(TurnOutcome::Completed, reply.text, None);
        }
        if r.step >= self.settings.max_steps {
            let max = self.settings.max_steps;
            if !reply.text.is_empty() {
                self.history
                    .push(ContextMessage::assistant(reply.text.clone(), Vec::new()));
            }
            return self.end_turn(
                TurnOutcome::MaxSteps,
                reply.text,
                Some(format!(
                    "the model still called tools after max_steps = {max} steps"
                )),
            );
        }
        r.phase = Phase::Tools;
        let (client, host): (Vec<ToolCall>, Vec<ToolCall>) = reply
            .tool_calls
            .iter()
            .cloned()
            .partition(|c| r.options.is_client_tool(&c.name));
        r.pending_calls = host.clone();
        r.client_calls = client;
        let (turn, step) = (r.turn, r.step);
        for call in &reply.tool_calls {
            self.events.push(EventKind::ToolCalled {
                turn,
                step,
                call: call.clone(),
            });
        }
        self.history.push(ContextMessage::assistant(
            reply.text.clone(),
            reply.tool_calls,
        ));
        if host.is_empty() {
            // Only the client's tools were called: the turn waits for the client.
            return self.tools_finished(Vec::new());
        }
        vec![Action::CallTools {
            turn,
            step,
            calls: host,
        }]
    }

    /// The model call failed (S35).
    pub fn model_failed(&mut self, error: String) -> Vec<Action> {
        if self.running.is_none() {
            return Vec::new();
        }
        self.end_turn(TurnOutcome::Error, String::new(), Some(error))
    }

    /// The tool calls of the current step returned, in call order. A failed tool ends the
    /// turn with an error (S35); otherwise the step boundary follows (S12).
    pub fn tools_finished(&mut self, results: Vec<Result<String, String>>) -> Vec<Action> {
        let Some(r) = self.running.as_mut().filter(|r| r.phase == Phase::Tools) else {
            return Vec::new();
        };
        let calls = std::mem::take(&mut r.pending_calls);
        let (turn, step) = (r.turn, r.step);
        let mut failure = None;
        for (i, call) in calls.iter().enumerate() {
            let output = match results.get(i) {
                Some(Ok(text)) => text.clone(),
                Some(Err(e)) => {
                    failure.get_or_insert_with(|| format!("tool `{}` failed: {e}", call.name));
                    format!("error: {e}")
                }
                None => {
                    failure
                        .get_or_insert_with(|| format!("tool `{}` returned no result", call.name));
                    "error: no result".to_string()
                }
            };
            self.events.push(EventKind::ToolResult {
                turn,
                step,
                id: call.id.clone(),
                name: call.name.clone(),
                output: output.clone(),
            });
            self.history.push(ContextMessage::tool(call, output));
        }
        if let Some(error) = failure {
            return self.end_turn(TurnOutcome::Error, String::new(), Some(error));
        }
        if self
            .running
            .as_ref()
            .is_some_and(|r| !r.client_calls.is_empty())
        {
            // The client runs the rest; its results resume the turn (S11).
            let text = self
                .history
                .iter()
                .rev()
                .find(|m| m.role == Role::Assistant && !m.tool_calls.is_empty())
                .map(|m| m.content.clone())
                .unwrap_or_default();
            return self.end_turn(TurnOutcome::ToolCalls, text, None);
        }
        // Step boundary: tool results (above), pending user messages, then context
        // injections (S12, S30).
        let next = step + 1;
        for (seq, text) in std::mem::take(&mut self.steer) {
            self.events.push(EventKind::UserMessageSteered {
                turn,
                step: next,
                text: text.clone(),
            });
            self.history.push(ContextMessage::user(text));
            if let Some(r) = self.running.as_mut() {
                r.answered_upto = r.answered_upto.max(seq);
            }
        }
        self.deliver_context(turn, next, Boundary::Step);
        if let Some(r) = self.running.as_mut() {
            r.step = next;
            r.phase = Phase::Model;
        }
        vec![
            Action::CallModel(self.model_input()),
            Action::Fire {
                hook: Hook::Step,
                turn,
                step,
            },
        ]
    }

    /// A stop request (S36): ends the running turn as stopped, keeping what streamed so far;
    /// queued injections stay queued.
    pub fn stop(&mut self, partial: String) -> Vec<Action> {
        let Some(r) = self.running.as_mut() else {
            return Vec::new();
        };
        match r.phase {
            Phase::Model => {
                if !partial.is_empty() {
                    self.history
                        .push(ContextMessage::assistant(partial.clone(), Vec::new()));
                }
            }
            Phase::Tools => {
                // Keep the history well-formed: every tool call gets a result.
                for call in std::mem::take(&mut r.pending_calls) {
                    self.history.push(ContextMessage::tool(
                        &call,
                        "error: stopped before the tool returned",
                    ));
                }
            }
        }
        self.end_turn(TurnOutcome::Stopped, partial, None)
    }

    fn end_turn(
        &mut self,
        outcome: TurnOutcome,
        reply: String,
        error: Option<String>,
    ) -> Vec<Action> {
        let Some(r) = self.running.take() else {
            return Vec::new();
        };
        self.events.push(EventKind::TurnEnded {
            turn: r.turn,
            outcome,
            steps: r.step,
            reply: reply.clone(),
            error: error.clone(),
        });
        let mut actions = vec![Action::TurnEnded(TurnEnd {
            turn: r.turn,
            outcome,
            steps: r.step,
            reply,
            error,
            answered_upto: r.answered_upto,
            tool_calls: r.client_calls,
            usage: r.usage,
        })];
        // Messages that found no further step start turns of their own, in arrival order.
        for (seq, text) in std::mem::take(&mut self.steer) {
            self.waiting.push_back((seq, text, r.options.clone()));
        }
        if let Some((seq, text, options)) = self.waiting.pop_front() {
            self.begin_turn(seq, text, options, &mut actions);
        }
        actions
    }

    /// Enqueues what an analyzer run returned (S13, S15, S5).
    pub fn enqueue(&mut self, injections: Vec<Injection>, provenance: &Provenance) {
        for injection in injections {
            let role = injection.role;
            let key = injection.key.clone();
            let content = injection.content.clone();
            let details = injection.details.clone();
            match self.queue.enqueue(injection, provenance.clone()) {
                Ok(done) => {
                    if let Some(old) = &done.superseded {
                        self.events.push(EventKind::InjectionSuperseded {
                            id: old.id,
                            by: done.id,
                            analyzer: provenance.analyzer.to_string(),
                            key: key.clone().unwrap_or_default(),
                        });
                    }
                    self.events.push(EventKind::InjectionEnqueued {
                        id: done.id,
                        analyzer: provenance.analyzer.to_string(),
                        hook: provenance.hook,
                        lane: done.lane,
                        role,
                        key,
                        about_turn: provenance.about_turn,
                        ttl_turns: provenance.ttl_turns,
                        content,
                        details,
                    });
                }
                Err(refused) => self.events.push(EventKind::InjectionRejected {
                    analyzer: provenance.analyzer.to_string(),
                    role,
                    reason: refused.reason,
                }),
            }
        }
    }

    /// Closes the session: reports what was never delivered.
    pub fn close(&mut self) {
        for q in self.queue.take_all() {
            self.events.push(EventKind::InjectionUndelivered {
                id: q.id,
                analyzer: q.provenance.analyzer.to_string(),
            });
        }
        self.events
            .push(EventKind::SessionClosed { turns: self.turns });
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
