//! `GET /metrics`: what the sessions did, in the Prometheus text format, counted by an
//! [`Observer`] of the runtime's events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::events::{Event, EventKind, Observer};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnalyzerOutcome {
    analyzer: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AnalyzerLabel {
    analyzer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Fate {
    fate: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 5 ms to about 82 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// The counters, gauges and histograms of one host.
pub struct Metrics {
    registry: Registry,
    turns: Family<Outcome, Counter>,
    turn_seconds: Histogram,
    steps: Counter,
    runs: Family<AnalyzerOutcome, Counter>,
    run_seconds: Histograms<AnalyzerLabel>,
    injections: Family<Fate, Counter>,
    tokens: Family<Kind, Counter>,
    sessions: Gauge,
    http_requests: Family<Outcome, Counter>,
    taken_over: Counter,
    turn_started: Mutex<HashMap<(Arc<str>, u64), u64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("murmur");
        let turns = Family::<Outcome, Counter>::default();
        registry.register("turns", "Turns ended, by outcome", turns.clone());
        let turn_seconds = seconds();
        registry.register(
            "turn_duration_seconds",
            "Time from a user message starting a turn to its end",
            turn_seconds.clone(),
        );
        let steps = Counter::default();
        registry.register("model_steps", "Model calls (steps) started", steps.clone());
        let runs = Family::<AnalyzerOutcome, Counter>::default();
        registry.register(
            "analyzer_runs",
            "Analyzer runs ended, by analyzer and outcome",
            runs.clone(),
        );
        let run_seconds: Histograms<AnalyzerLabel> = Family::new_with_constructor(seconds);
        registry.register(
            "analyzer_run_duration_seconds",
            "Duration of analyzer runs, by analyzer",
            run_seconds.clone(),
        );
        let injections = Family::<Fate, Counter>::default();
        registry.register(
            "injections",
            "Injections by fate: enqueued, delivered, superseded, stale, rejected, undelivered",
            injections.clone(),
        );
        let tokens = Family::<Kind, Counter>::default();
        registry.register(
            "model_tokens",
            "Chat model tokens: prompt, prompt_evaluated (not from the cache), completion",
            tokens.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions_open", "Sessions open now", sessions.clone());
        let http_requests = Family::<Outcome, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by status class (2xx, 4xx, 5xx)",
            http_requests.clone(),
        );
        let taken_over = Counter::default();
        registry.register(
            "sessions_taken_over",
            "Sessions this host took over from a host whose lease expired (shared store)",
            taken_over.clone(),
        );
        Metrics {
            taken_over,
            registry,
            turns,
            turn_seconds,
            steps,
            runs,
            run_seconds,
            injections,
            tokens,
            sessions,
            http_requests,
            turn_started: Mutex::new(HashMap::new()),
        }
    }
}

impl Metrics {
    /// Sets the number of open sessions.
    pub fn set_sessions(&self, n: usize) {
        self.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Counts an answered HTTP request by its status.
    pub fn http_request(&self, status: u16) {
        let class = format!("{}xx", status / 100);
        self.http_requests
            .get_or_create(&Outcome { outcome: class })
            .inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    fn fate(&self, fate: &str) {
        self.injections
            .get_or_create(&Fate {
                fate: fate.to_string(),
            })
            .inc();
    }

    fn tokens(&self, kind: &str, n: u64) {
        self.tokens
            .get_or_create(&Kind {
                kind: kind.to_string(),
            })
            .inc_by(n);
    }
}

impl Observer for Metrics {
    fn event(&self, event: &Event) {
        let started = || {
            self.turn_started
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        match &event.kind {
            EventKind::TurnStarted { turn, .. } => {
                started().insert((event.session.clone(), *turn), event.at_ms);
            }
            EventKind::TurnEnded { turn, outcome, .. } => {
                let outcome = serde_json::to_value(outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                self.turns.get_or_create(&Outcome { outcome }).inc();
                if let Some(at) = started().remove(&(event.session.clone(), *turn)) {
                    self.turn_seconds
                        .observe(event.at_ms.saturating_sub(at) as f64 / 1000.0);
                }
            }
            EventKind::ModelCalled { .. } => {
                self.steps.inc();
            }
            EventKind::ModelReplied { usage, .. } => {
                self.tokens("prompt", usage.prompt_tokens);
                self.tokens("prompt_evaluated", usage.prompt_evaluated);
                self.tokens("completion", usage.completion_tokens);
            }
            EventKind::AnalyzerRun {
                analyzer,
                outcome,
                duration_ms,
                ..
            } => {
                let outcome = serde_json::to_value(outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                self.runs
                    .get_or_create(&AnalyzerOutcome {
                        analyzer: analyzer.clone(),
                        outcome,
                    })
                    .inc();
                self.run_seconds
                    .get_or_create(&AnalyzerLabel {
                        analyzer: analyzer.clone(),
                    })
                    .observe(*duration_ms as f64 / 1000.0);
            }
            EventKind::InjectionEnqueued { .. } => self.fate("enqueued"),
            EventKind::InjectionDelivered { .. } => self.fate("delivered"),
            EventKind::InjectionSuperseded { .. } => self.fate("superseded"),
            EventKind::InjectionStale { .. } => self.fate("stale"),
            EventKind::InjectionRejected { .. } => self.fate("rejected"),
            EventKind::InjectionUndelivered { .. } => self.fate("undelivered"),
            EventKind::SessionTakenOver { .. } => {
                self.taken_over.inc();
            }
            EventKind::SessionClosed { .. } => {
                started().retain(|(s, _), _| *s != event.session);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{RunOutcome, TurnOutcome};
    use murmur_plugin_api::Hook;

    fn at(ms: u64, kind: EventKind) -> Event {
        Event {
            session: Arc::from("s"),
            at_ms: ms,
            kind,
        }
    }

    #[test]
    fn events_become_counters_and_histograms_in_the_text_format() {
        let m = Metrics::default();
        m.event(&at(
            0,
            EventKind::TurnStarted {
                turn: 1,
                user: "hi".into(),
            },
        ));
        m.event(&at(
            1500,
            EventKind::TurnEnded {
                turn: 1,
                outcome: TurnOutcome::Completed,
                steps: 1,
                reply: "hello".into(),
                error: None,
            },
        ));
        m.event(&at(
            1600,
            EventKind::AnalyzerRun {
                analyzer: "rag".into(),
                hook: Hook::TurnStart,
                turn: 1,
                run: 1,
                outcome: RunOutcome::Failed,
                duration_ms: 20,
                injections: 0,
                tokens: 0,
                error: Some("x".into()),
            },
        ));
        m.http_request(404);
        m.set_sessions(3);
        let text = m.render();
        for line in [
            "murmur_turns_total{outcome=\"completed\"} 1",
            "murmur_turn_duration_seconds_sum 1.5",
            "murmur_analyzer_runs_total{analyzer=\"rag\",outcome=\"failed\"} 1",
            "murmur_analyzer_run_duration_seconds_count{analyzer=\"rag\"} 1",
            "murmur_http_requests_total{outcome=\"4xx\"} 1",
            "murmur_sessions_open 3",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
