//! SPEC rules of the turn loop, checked on the state machine alone (no runtime, no I/O).

use super::*;
use crate::events::EventKind;

fn settings(steering: bool, placement: InstructionsPlacement) -> Arc<SessionSettings> {
    Arc::new(SessionSettings {
        system_prompt: "BASE".into(),
        max_steps: 3,
        steering,
        placement,
        compaction: Default::default(),
    })
}

fn machine() -> TurnMachine {
    TurnMachine::new("s".into(), settings(true, InstructionsPlacement::System))
}

fn prov(analyzer: &str, about_turn: u64) -> Provenance {
    Provenance {
        analyzer: analyzer.into(),
        hook: Hook::TurnComplete,
        about_turn,
        ttl_turns: None,
    }
}

fn reply(text: &str) -> ModelReply {
    ModelReply {
        text: text.into(),
        ..ModelReply::default()
    }
}

fn tool_reply(name: &str) -> ModelReply {
    ModelReply {
        text: String::new(),
        tool_calls: vec![ToolCall {
            id: format!("call-{name}"),
            name: name.into(),
            arguments: serde_json::json!({}),
        }],
        ..ModelReply::default()
    }
}

fn model_input(actions: &[Action]) -> Arc<ModelInput> {
    actions
        .iter()
        .find_map(|a| match a {
            Action::CallModel(i) => Some(i.clone()),
            _ => None,
        })
        .expect("a model call")
}

fn contents(input: &ModelInput) -> Vec<(&str, &str)> {
    input
        .messages
        .iter()
        .map(|m| (m.origin.as_str(), m.content.as_str()))
        .collect()
}

/// Runs a one-step turn to completion.
fn turn(m: &mut TurnMachine, user: &str, answer: &str) -> Arc<ModelInput> {
    let (_, actions) = m.user_message(user.into());
    let input = model_input(&actions);
    m.model_replied(reply(answer));
    input
}

#[test]
fn s1_system_injections_join_the_next_turns_instructions_once() {
    let mut m = machine();
    turn(&mut m, "hi", "hello");
    m.enqueue(vec![Injection::instructions("be brief")], &prov("coach", 1));
    let t2 = turn(&mut m, "q2", "a2");
    assert_eq!(t2.instructions, "BASE\n\nbe brief");
    let t3 = turn(&mut m, "q3", "a3");
    assert_eq!(t3.instructions, "BASE", "consumed once");
    assert!(t2.messages.iter().all(|msg| msg.content != "be brief"));
}

#[test]
fn s2_instructions_enqueued_mid_turn_wait_for_the_next_turn_boundary() {
    let mut m = machine();
    let (_, actions) = m.user_message("use a tool".into());
    let step1 = model_input(&actions);
    m.enqueue(
        vec![Injection::instructions("late advice")],
        &prov("coach", 1),
    );
    m.model_replied(tool_reply("add"));
    let step2 = model_input(&m.tools_finished(vec![Ok("5".into())]));
    assert_eq!(step1.instructions, "BASE");
    assert_eq!(
        step2.instructions, "BASE",
        "no change inside the running turn"
    );
    m.model_replied(reply("done"));
    let t2 = turn(&mut m, "next", "ok");
    assert_eq!(t2.instructions, "BASE\n\nlate advice");
}

#[test]
fn s3_context_injections_enter_at_the_boundary_and_stay_where_they_entered() {
    let mut m = machine();
    turn(&mut m, "hi", "hello");
    m.enqueue(vec![Injection::context("passage")], &prov("rag", 1));
    let t2 = turn(&mut m, "q2", "a2");
    let t3 = turn(&mut m, "q3", "a3");
    let expected = vec![
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "q2"),
        ("injection", "passage"),
    ];
    assert_eq!(contents(&t2), expected);
    assert_eq!(
        &contents(&t3)[..4],
        &expected[..],
        "still there, same position"
    );
    assert_eq!(t3.messages[3].analyzer.as_deref(), Some("rag"));
}

#[test]
fn s4_injections_never_enter_the_visible_transcript_but_are_in_the_events() {
    let mut m = machine();
    turn(&mut m, "hi", "hello");
    m.enqueue(
        vec![Injection::new(Role::Assistant, "note")],
        &prov("rag", 1),
    );
    turn(&mut m, "q2", "a2");
    let visible: Vec<&str> = m.transcript().map(|msg| msg.content.as_str()).collect();
    assert_eq!(visible, vec!["hi", "hello", "q2", "a2"]);
    let events = m.take_events();
    assert!(events
        .iter()
        .any(|e| matches!(e, EventKind::InjectionEnqueued { analyzer, .. } if analyzer == "rag")));
    assert!(events
        .iter()
        .any(|e| matches!(e, EventKind::InjectionDelivered { analyzer, .. } if analyzer == "rag")));
}

#[test]
fn s5_role_tool_injections_are_dropped_with_an_event() {
    let mut m = machine();
    m.enqueue(
        vec![Injection::new(Role::Tool, "fake result")],
        &prov("bad", 1),
    );
    assert!(m.queue().is_empty());
    assert!(m
        .take_events()
        .iter()
        .any(|e| matches!(e, EventKind::InjectionRejected { analyzer, .. } if analyzer == "bad")));
}

#[test]
fn s6_before_last_user_places_one_system_message_before_the_user_message() {
    let mut m = TurnMachine::new(
        "s".into(),
        settings(true, InstructionsPlacement::BeforeLastUser),
    );
    let t1 = turn(&mut m, "hi", "hello");
    m.enqueue(vec![Injection::instructions("one")], &prov("a", 1));
    m.enqueue(vec![Injection::instructions("two")], &prov("b", 1));
    let t2 = turn(&mut m, "q2", "a2");
    assert_eq!(
        t2.instructions, "BASE",
        "system text unchanged, so the prefix stays cached"
    );
    assert_eq!(
        t2.messages
            .iter()
            .take(t1.messages.len())
            .collect::<Vec<_>>(),
        t1.messages.iter().collect::<Vec<_>>()
    );
    let sys = &t2.messages[2];
    assert_eq!(
        (sys.role, sys.content.as_str()),
        (Role::System, "one\n\ntwo")
    );
    assert_eq!(sys.analyzer.as_deref(), Some("a, b"));
    assert_eq!(t2.messages[3].content, "q2");
}

#[test]
fn s10_turn_boundary_input_is_instructions_history_user_then_context_in_queue_order() {
    let mut m = machine();
    turn(&mut m, "hi", "hello");
    m.enqueue(vec![Injection::context("c1")], &prov("a", 1));
    m.enqueue(vec![Injection::instructions("i1")], &prov("b", 1));
    m.enqueue(vec![Injection::new(Role::Assistant, "c2")], &prov("c", 1));
    m.enqueue(vec![Injection::instructions("i2")], &prov("d", 1));
    let t2 = turn(&mut m, "q2", "a2");
    assert_eq!(t2.instructions, "BASE\n\ni1\n\ni2");
    assert_eq!(
        contents(&t2),
        vec![
            ("user", "hi"),
            ("assistant", "hello"),
            ("user", "q2"),
            ("injection", "c1"),
            ("injection", "c2")
        ]
    );
}

#[test]
fn s11_a_resumed_tool_step_defers_context_injections_to_the_first_step_boundary() {
    let call = ToolCall {
        id: "c1".into(),
        name: "add".into(),
        arguments: serde_json::json!({}),
    };
    let history = vec![
        ContextMessage::user("add"),
        ContextMessage::assistant("", vec![call.clone()]),
        ContextMessage::tool(&call, "5"),
    ];
    let mut m = TurnMachine::with_history(
        "s".into(),
        settings(true, InstructionsPlacement::System),
        history,
        1,
    );
    m.enqueue(vec![Injection::context("ctx")], &prov("rag", 1));
    m.enqueue(vec![Injection::instructions("ins")], &prov("coach", 1));
    let first = model_input(&m.resume_turn());
    assert_eq!(first.turn, 2);
    assert_eq!(first.instructions, "BASE\n\nins");
    assert_eq!(
        first.messages.last().map(|msg| msg.role),
        Some(Role::Tool),
        "context waits"
    );
    m.model_replied(tool_reply("add"));
    let second = model_input(&m.tools_finished(vec![Ok("7".into())]));
    assert_eq!(
        second.messages.last().map(|msg| msg.content.as_str()),
        Some("ctx")
    );
}

#[test]
fn s12_step_boundary_adds_tool_results_then_pending_users_then_context() {
    let mut m = machine();
    let (_, actions) = m.user_message("compute".into());
    let step1 = model_input(&actions);
    m.enqueue(vec![Injection::context("passage")], &prov("rag", 1));
    m.user_message("also do this".into());
    m.model_replied(tool_reply("add"));
    let actions = m.tools_finished(vec![Ok("5".into())]);
    let step2 = model_input(&actions);
    assert_eq!((step2.turn, step2.step), (1, 2));
    let tail: Vec<_> = contents(&step2)[step1.messages.len()..].to_vec();
    assert_eq!(
        tail,
        vec![
            ("assistant", ""),
            ("tool", "5"),
            ("user", "also do this"),
            ("injection", "passage")
        ]
    );
    assert!(actions.contains(&Action::Fire {
        hook: Hook::Step,
        turn: 1,
        step: 1
    }));
}

#[test]
fn s14_an_injection_enqueued_during_a_model_call_waits_for_the_next_boundary() {
    let mut m = machine();
    let (_, actions) = m.user_message("q1".into());
    let in_flight = model_input(&actions);
    m.enqueue(vec![Injection::context("during")], &prov("rag", 1));
    assert!(in_flight.messages.iter().all(|msg| msg.content != "during"));
    m.model_replied(reply("a1"));
    let t2 = turn(&mut m, "q2", "a2");
    assert_eq!(
        t2.messages
            .iter()
            .filter(|msg| msg.content == "during")
            .count(),
        1
    );
    let t3 = turn(&mut m, "q3", "a3");
    assert_eq!(
        t3.messages
            .iter()
            .filter(|msg| msg.content == "during")
            .count(),
        1,
        "delivered once, never twice"
    );
}

#[test]
fn s16_stale_injections_are_dropped_at_a_turn_boundary_with_an_event() {
    let mut m = machine();
    turn(&mut m, "q1", "a1");
    let p = Provenance {
        ttl_turns: Some(0),
        ..prov("coach", 1)
    };
    m.enqueue(vec![Injection::instructions("old advice")], &p);
    let t2 = turn(&mut m, "q2", "a2");
    assert_eq!(t2.instructions, "BASE");
    assert!(m.take_events().iter().any(|e| matches!(
        e,
        EventKind::InjectionStale {
            about_turn: 1,
            turn: 2,
            ..
        }
    )));
}

#[test]
fn s20_the_first_turn_fires_chat_start_and_turn_start_after_the_model_call() {
    let mut m = machine();
    let (_, actions) = m.user_message("hi".into());
    assert!(
        matches!(actions[0], Action::CallModel(_)),
        "the model call comes first (S21)"
    );
    assert_eq!(
        actions[1..],
        [
            Action::Fire {
                hook: Hook::ChatStart,
                turn: 1,
                step: 0
            },
            Action::Fire {
                hook: Hook::TurnStart,
                turn: 1,
                step: 0
            }
        ]
    );
    m.model_replied(reply("hello"));
    let (_, actions) = m.user_message("again".into());
    assert!(!actions.iter().any(|a| matches!(
        a,
        Action::Fire {
            hook: Hook::ChatStart,
            ..
        }
    )));
}

#[test]
fn s30_with_steering_a_message_during_a_turn_joins_at_the_next_step_boundary() {
    let mut m = machine();
    let (first, _) = m.user_message("compute".into());
    let (second, none) = m.user_message("and hurry".into());
    assert!(none.is_empty());
    m.model_replied(tool_reply("add"));
    let step2 = model_input(&m.tools_finished(vec![Ok("5".into())]));
    assert_eq!(
        step2.messages.last().map(|msg| msg.content.as_str()),
        Some("and hurry")
    );
    let actions = m.model_replied(reply("done"));
    let Some(Action::TurnEnded(end)) = actions.first() else {
        panic!("turn ends")
    };
    assert!(end.answered_upto >= second && second > first);
    assert_eq!(m.turns(), 1, "no extra turn");
    assert!(m.is_idle());
}

#[test]
fn s30_with_steering_but_no_further_step_the_message_starts_the_next_turn() {
    let mut m = machine();
    m.user_message("q1".into());
    m.user_message("q2".into());
    let actions = m.model_replied(reply("a1"));
    assert!(matches!(
        actions[0],
        Action::TurnEnded(TurnEnd { turn: 1, .. })
    ));
    let next = model_input(&actions);
    assert_eq!(
        (
            next.turn,
            next.messages.last().map(|msg| msg.content.as_str())
        ),
        (2, Some("q2"))
    );
}

#[test]
fn s30_without_steering_messages_start_later_turns_in_arrival_order() {
    let mut m = TurnMachine::new("s".into(), settings(false, InstructionsPlacement::System));
    m.user_message("compute".into());
    m.user_message("second".into());
    m.user_message("third".into());
    m.model_replied(tool_reply("add"));
    let step2 = model_input(&m.tools_finished(vec![Ok("5".into())]));
    assert!(step2.messages.iter().all(|msg| msg.content != "second"));
    let actions = m.model_replied(reply("a1"));
    assert_eq!(
        model_input(&actions)
            .messages
            .last()
            .map(|msg| msg.content.as_str()),
        Some("second")
    );
    let actions = m.model_replied(reply("a2"));
    assert_eq!(
        model_input(&actions)
            .messages
            .last()
            .map(|msg| msg.content.as_str()),
        Some("third")
    );
    assert_eq!(m.turns(), 3);
}

#[test]
fn s35_a_model_error_ends_the_turn_with_its_cause_and_the_session_stays_usable() {
    let mut m = machine();
    m.user_message("q1".into());
    let actions = m.model_failed("model `x`: server said 500".into());
    let Some(Action::TurnEnded(end)) = actions.first() else {
        panic!("turn ends")
    };
    assert_eq!(end.outcome, TurnOutcome::Error);
    assert_eq!(end.error.as_deref(), Some("model `x`: server said 500"));
    let t2 = turn(&mut m, "q2", "a2");
    assert_eq!(t2.turn, 2);
    assert!(m.is_idle());
}

#[test]
fn s35_a_tool_error_ends_the_turn_and_keeps_the_history_well_formed() {
    let mut m = machine();
    m.user_message("q1".into());
    m.model_replied(tool_reply("add"));
    let actions = m.tools_finished(vec![Err("division by zero".into())]);
    let Some(Action::TurnEnded(end)) = actions.first() else {
        panic!("turn ends")
    };
    assert_eq!(end.outcome, TurnOutcome::Error);
    assert_eq!(
        end.error.as_deref(),
        Some("tool `add` failed: division by zero")
    );
    assert_eq!(m.history().last().map(|msg| msg.role), Some(Role::Tool));
}

#[test]
fn s36_stop_keeps_the_streamed_text_and_leaves_queued_injections_queued() {
    let mut m = machine();
    m.user_message("q1".into());
    m.enqueue(vec![Injection::context("later")], &prov("rag", 1));
    let actions = m.stop("partial ans".into());
    let Some(Action::TurnEnded(end)) = actions.first() else {
        panic!("turn ends")
    };
    assert_eq!(
        (end.outcome, end.reply.as_str()),
        (TurnOutcome::Stopped, "partial ans")
    );
    assert_eq!(
        m.history().last().map(|msg| msg.content.as_str()),
        Some("partial ans")
    );
    assert_eq!(m.queue().len(), 1);
    assert!(
        m.model_replied(reply("too late")).is_empty(),
        "a late reply is ignored"
    );
}

#[test]
fn a_turn_that_still_calls_tools_after_max_steps_ends_with_max_steps() {
    let mut m = machine();
    m.user_message("loop".into());
    for _ in 0..2 {
        m.model_replied(tool_reply("add"));
        m.tools_finished(vec![Ok("1".into())]);
    }
    let actions = m.model_replied(tool_reply("add"));
    let Some(Action::TurnEnded(end)) = actions.first() else {
        panic!("turn ends")
    };
    assert_eq!((end.outcome, end.steps), (TurnOutcome::MaxSteps, 3));
}

#[test]
fn s40_model_input_serialises_with_origins_and_analyzer_names() {
    let mut m = machine();
    turn(&mut m, "hi", "hello");
    m.enqueue(vec![Injection::context("p")], &prov("rag", 1));
    let t2 = turn(&mut m, "q", "a");
    let json = serde_json::to_value(&*t2).expect("serialises");
    assert_eq!(
        json,
        serde_json::json!({
            "session": "s", "turn": 2, "step": 1, "instructions": "BASE",
            "messages": [
                {"role": "user", "content": "hi", "origin": "user"},
                {"role": "assistant", "content": "hello", "origin": "assistant"},
                {"role": "user", "content": "q", "origin": "user"},
                {"role": "user", "content": "p", "origin": "injection", "analyzer": "rag"}
            ]
        })
    );
}

fn client_tools(names: &[&str]) -> Arc<TurnOptions> {
    Arc::new(TurnOptions {
        client_tools: names
            .iter()
            .map(|n| crate::model::ToolSpec {
                name: (*n).into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
            })
            .collect(),
        ..TurnOptions::default()
    })
}

fn ended(actions: &[Action]) -> &TurnEnd {
    actions
        .iter()
        .find_map(|a| match a {
            Action::TurnEnded(end) => Some(end),
            _ => None,
        })
        .expect("the turn ended")
}

#[test]
fn s11_a_client_tool_call_ends_the_turn_and_the_clients_results_resume_it() {
    let mut m = machine();
    let (_, actions) = m.user_message_with("weather?".into(), client_tools(&["weather"]));
    assert_eq!(m.options().map(|o| o.client_tools.len()), Some(1));
    m.enqueue(vec![Injection::context("note")], &prov("notes", 1));
    let _ = model_input(&actions);
    let actions = m.model_replied(tool_reply("weather"));
    let end = ended(&actions);
    assert_eq!(end.outcome, TurnOutcome::ToolCalls);
    assert_eq!(end.tool_calls[0].id, "call-weather");
    assert!(m.is_idle());
    assert_eq!(m.unanswered_calls().len(), 1);

    let refused = m
        .client_results(vec![("other".into(), "x".into())], Arc::default())
        .expect_err("not the waiting call");
    assert!(
        refused.contains("no result for `call-weather`") && refused.contains("`other`"),
        "{refused}"
    );
    let (seq, actions) = m
        .client_results(
            vec![("call-weather".into(), "sunny".into())],
            Arc::default(),
        )
        .expect("resumes");
    assert_eq!(seq, 2);
    let input = model_input(&actions);
    assert_eq!(input.turn, 2);
    let last = input.messages.last().expect("messages");
    assert_eq!((last.role, last.content.as_str()), (Role::Tool, "sunny"));
    assert!(
        input.messages.iter().all(|msg| msg.content != "note"),
        "context waits for a step boundary (S11)"
    );
    assert!(m.unanswered_calls().is_empty());
    let end = ended(&m.model_replied(reply("It is sunny."))).clone();
    assert_eq!(
        (end.outcome, end.answered_upto),
        (TurnOutcome::Completed, 2)
    );
    assert!(m
        .client_results(
            vec![("call-weather".into(), "again".into())],
            Arc::default()
        )
        .is_err());
}

#[test]
fn host_tools_of_a_step_run_before_the_turn_waits_for_the_clients() {
    let mut m = machine();
    m.user_message_with("both".into(), client_tools(&["weather"]));
    let mut both = tool_reply("add");
    both.tool_calls.extend(tool_reply("weather").tool_calls);
    let actions = m.model_replied(both);
    match actions.as_slice() {
        [Action::CallTools { calls, .. }] => {
            assert_eq!(calls.len(), 1);
            assert_eq!(calls[0].name, "add");
        }
        other => panic!("{other:?}"),
    }
    let actions = m.tools_finished(vec![Ok("5".into())]);
    let end = ended(&actions);
    assert_eq!(end.outcome, TurnOutcome::ToolCalls);
    let waiting: Vec<&str> = end.tool_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(waiting, ["weather"]);
    let unanswered: Vec<&str> = m.unanswered_calls().iter().map(|c| c.id.as_str()).collect();
    assert_eq!(unanswered, ["call-weather"]);
}

#[test]
fn a_new_message_instead_of_tool_results_answers_the_calls_with_an_error_first() {
    let mut m = machine();
    m.user_message_with("weather?".into(), client_tools(&["weather"]));
    m.model_replied(tool_reply("weather"));
    let (_, actions) = m.user_message("never mind".into());
    let input = model_input(&actions);
    let tail: Vec<(Role, &str)> = input
        .messages
        .iter()
        .skip(1)
        .map(|msg| (msg.role, msg.content.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            (Role::Assistant, ""),
            (Role::Tool, "error: the client sent no result for this call"),
            (Role::User, "never mind"),
        ]
    );
}

#[test]
fn a_seeded_session_uses_its_own_system_prompt() {
    let mut m = TurnMachine::with_history(
        "s".into(),
        settings(true, InstructionsPlacement::System),
        vec![
            ContextMessage::user("earlier"),
            ContextMessage::assistant("reply", Vec::new()),
        ],
        0,
    );
    m.set_system_prompt("OWN".into());
    let (_, actions) = m.user_message("now".into());
    let input = model_input(&actions);
    assert_eq!(input.instructions, "OWN");
    assert_eq!((input.turn, input.messages.len()), (1, 3));
}
