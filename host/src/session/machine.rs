//! The turn loop of one session as a state machine without I/O (SPEC S1–S16, S30, S35, S36).
//!
//! The driver feeds it what happened (a user message, a model reply, tool results, finished
//! analyzer work) and performs the [`Action`]s it returns: call the model with this exact
//! input, run these tools, fire this hook. Everything the SPEC says about *where* a message
//! lands is decided here and tested without a runtime.

use std::collections::VecDeque;
use std::sync::Arc;

use murmur_plugin_api::{Hook, Injection, Origin, Role};

use crate::config::InstructionsPlacement;
use crate::events::{Boundary, EventKind, TurnOutcome};
use crate::model::{ContextMessage, ModelInput, ModelReply, ToolCall};
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
    answered_upto: u64,
}

/// One session's conversation state and turn logic.
#[derive(Debug)]
pub struct TurnMachine {
    id: Arc<str>,
    settings: Arc<SessionSettings>,
    history: Vec<ContextMessage>,
    queue: InjectQueue,
    turns: u64,
    running: Option<Running>,
    /// User messages waiting for a turn of their own, with their sequence numbers (S30).
    waiting: VecDeque<(u64, String)>,
    /// User messages waiting for the next step boundary of the running turn (S30).
    steer: Vec<(u64, String)>,
    user_seq: u64,
    events: Vec<EventKind>,
}

impl TurnMachine {
    /// A new, empty session.
    pub fn new(id: Arc<str>, settings: Arc<SessionSettings>) -> Self {
        TurnMachine {
            id,
            settings,
            history: Vec::new(),
            queue: InjectQueue::new(),
            turns: 0,
            running: None,
            waiting: VecDeque::new(),
            steer: Vec::new(),
            user_seq: 0,
            events: Vec::new(),
        }
    }

    /// A session restored with this history, e.g. one ending in tool results (S11).
    pub fn with_history(
        id: Arc<str>,
        settings: Arc<SessionSettings>,
        history: Vec<ContextMessage>,
        turns: u64,
    ) -> Self {
        TurnMachine {
            history,
            turns,
            ..TurnMachine::new(id, settings)
        }
    }

    /// Session id.
    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The model context: history with injections at their positions.
    pub fn history(&self) -> &[ContextMessage] {
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
        self.user_seq += 1;
        let seq = self.user_seq;
        if self.running.is_none() {
            let mut actions = Vec::new();
            self.begin_turn(seq, text, &mut actions);
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
            self.waiting.push_back((seq, text));
        }
        (seq, Vec::new())
    }

    /// Starts a turn whose input is the tool results the history ends with (a resumed tool
    /// step): instructions drain as at any turn boundary, context injections wait for the
    /// first step boundary (S11).
    pub fn resume_turn(&mut self) -> Vec<Action> {
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
            answered_upto: self.user_seq,
        });
        actions.push(Action::CallModel(self.model_input()));
        actions.push(Action::Fire {
            hook: Hook::TurnStart,
            turn,
            step: 0,
        });
        actions
    }

    fn begin_turn(&mut self, seq: u64, text: String, actions: &mut Vec<Action>) {
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
            answered_upto: seq,
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
        let mut instructions = self.settings.system_prompt.clone();
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
                messages: Vec::new(),
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
        self.history.splice(..removed, replacement);
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
        r.pending_calls = reply.tool_calls.clone();
        let (turn, step) = (r.turn, r.step);
        for call in &reply.tool_calls {
            self.events.push(EventKind::ToolCalled {
                turn,
                step,
                call: call.clone(),
            });
        }
        self.history.push(ContextMessage::assistant(
            reply.text,
            reply.tool_calls.clone(),
        ));
        vec![Action::CallTools {
            turn,
            step,
            calls: reply.tool_calls,
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
        })];
        // Messages that found no further step start turns of their own, in arrival order.
        for m in std::mem::take(&mut self.steer) {
            self.waiting.push_back(m);
        }
        if let Some((seq, text)) = self.waiting.pop_front() {
            self.begin_turn(seq, text, &mut actions);
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
                        lane: done.lane,
                        role,
                        key,
                        about_turn: provenance.about_turn,
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
