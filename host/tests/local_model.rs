//! The `local` provider against the real default model (SmolLM2-135M-Instruct, fetched by
//! `scripts/fetch-model`), and the `complete` host service on top of it.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use murmur::analyzer::CancelFlag;
use murmur::model::local::{LocalModel, LocalSettings, Sampling};
use murmur::model::{ContextMessage, ModelInput, ModelProvider, ModelRequest, Models};
use murmur::services::{CallScope, ServiceHub};
use murmur_plugin_api::{ChatMessage, CompletionRequest};

/// The default model (`MURMUR_MODEL` overrides it), shared with the end-to-end tests.
fn model_path() -> PathBuf {
    murmur_e2e::model_path()
}

fn settings() -> LocalSettings {
    LocalSettings {
        path: model_path(),
        context_length: Some(2048),
        // One thread: the test harness runs tests side by side on a small machine.
        threads: 1,
        sampling: Sampling::default(),
        kv_cache_reuse: true,
    }
}

fn input(system: &str, messages: Vec<ContextMessage>) -> Arc<ModelInput> {
    Arc::new(ModelInput {
        session: "test".into(),
        turn: 1,
        step: 1,
        instructions: system.into(),
        messages: messages.into(),
    })
}

async fn ask(
    model: &LocalModel,
    input: Arc<ModelInput>,
) -> (murmur::model::ModelReply, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reply = model
        .call(ModelRequest::new(input, Arc::from(Vec::new()), tx))
        .await
        .expect("the model answers");
    let mut chunks = Vec::new();
    while let Ok(c) = rx.try_recv() {
        chunks.push(c);
    }
    (reply, chunks)
}

#[tokio::test]
async fn the_local_model_knows_the_capital_of_france_and_streams_it() {
    let model = LocalModel::load(&settings()).expect("model loads");
    let (reply, chunks) = ask(
        &model,
        input(
            "You are a helpful assistant.",
            vec![ContextMessage::user("What is the capital of France?")],
        ),
    )
    .await;
    assert!(reply.text.contains("Paris"), "reply: {:?}", reply.text);
    assert!(chunks.len() > 1, "streamed in pieces: {chunks:?}");
    assert_eq!(chunks.concat(), reply.text);
    assert!(reply.usage.completion_tokens > 0);
}

#[tokio::test]
async fn a_turn_that_extends_the_previous_one_evaluates_only_its_new_tokens() {
    let model = LocalModel::load(&settings()).expect("model loads");
    let first = vec![ContextMessage::user("Name a color.")];
    let (reply, _) = ask(&model, input("Be brief.", first.clone())).await;
    let mut second = first;
    second.push(ContextMessage::assistant(reply.text, vec![]));
    second.push(ContextMessage::user("Name another one."));
    let (again, _) = ask(&model, input("Be brief.", second)).await;
    let u = again.usage;
    assert!(
        u.prompt_evaluated * 2 < u.prompt_tokens,
        "only the new turn is evaluated: {u:?}"
    );
}

#[tokio::test]
async fn a_missing_model_file_names_the_fetch_script() {
    let mut s = settings();
    s.path = PathBuf::from("/nonexistent/model.gguf");
    let e = LocalModel::load(&s).expect_err("missing file");
    assert!(e.to_string().contains("scripts/fetch-model"), "{e}");
}

#[test]
fn complete_with_a_json_schema_returns_valid_json_twenty_times_out_of_twenty() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let model: Arc<dyn ModelProvider> =
        Arc::new(LocalModel::load(&settings()).expect("model loads"));
    let models = Arc::new(Models {
        chat: model.clone(),
        named: [("default".to_string(), model)].into_iter().collect(),
    });
    let hub = ServiceHub::new(models, runtime.handle().clone());
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "needs_improvement": {"type": "boolean"},
            "suggestions": {"type": "array", "items": {"type": "string", "maxLength": 80}, "maxItems": 3}
        },
        "required": ["needs_improvement", "suggestions"],
        "additionalProperties": false
    });
    let replies = [
        "The capital of France is Paris.",
        "2 + 2 = 5.",
        "I don't know.",
        "Water boils at 100 degrees Celsius at sea level.",
        "The moon is made of cheese.",
        "Sure! Here is a poem about cats.",
        "Berlin is the capital of Germany.",
        "",
        "The answer is 42.",
        "Python is a snake and a programming language.",
        "Yes.",
        "No, I cannot help with that.",
        "The Eiffel Tower is in Rome.",
        "Light travels faster than sound.",
        "Please ask again later.",
        "There are 7 days in a week.",
        "Cats are reptiles.",
        "The sun rises in the west.",
        "Rust is a systems programming language.",
        "Bananas are blue.",
    ];
    let tokens = AtomicU64::new(0);
    let cancel = CancelFlag::default();
    let mut valid = 0;
    for (i, reply) in replies.iter().enumerate() {
        let request = CompletionRequest {
            system: Some("You review an assistant's reply. Answer in JSON.".into()),
            messages: vec![ChatMessage::user(format!("Reply to review: {reply:?}"))],
            max_tokens: Some(200),
            temperature: Some(if i % 2 == 0 { 0.0 } else { 0.8 }),
            json_schema: Some(schema.clone()),
            ..CompletionRequest::default()
        };
        let scope = CallScope {
            session: "s",
            default_model: None,
            cancel: &cancel,
            deadline: SystemTime::now() + Duration::from_secs(60),
            tokens: &tokens,
        };
        let answer = hub.complete(request, &scope).expect("a valid answer");
        let json = answer.json.expect("parsed JSON");
        assert!(json["needs_improvement"].is_boolean(), "{json}");
        assert!(json["suggestions"].is_array(), "{json}");
        valid += 1;
    }
    assert_eq!(valid, 20);
    assert!(
        tokens.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "usage is counted"
    );
}

/// Two config tables on the same file that differ only in sampling share one load, and each
/// call uses its own table's sampling.
#[tokio::test]
async fn tables_that_differ_only_in_sampling_share_one_load() {
    let path = model_path();
    let text = format!(
        "model = \"chat\"\n\n[models.chat]\nprovider = \"local\"\npath = {path:?}\nthreads = 1\nmax_tokens = 40\n\n[models.judge]\nprovider = \"local\"\npath = {path:?}\nthreads = 1\nmax_tokens = 3\n"
    );
    let config = murmur::config::Config::parse(&text, std::path::Path::new("murmur.toml"))
        .expect("valid config");
    let loads = std::sync::Mutex::new(0);
    let models = Models::build(&config, &|line| {
        if line.starts_with("loading model") {
            *loads.lock().expect("not poisoned") += 1;
        }
    })
    .expect("models load");
    assert_eq!(*loads.lock().expect("not poisoned"), 1, "one load for both");
    let question = || {
        input(
            "You are a helpful assistant.",
            vec![ContextMessage::user("Tell me about Paris.")],
        )
    };
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let judge = models.named["judge"]
        .call(ModelRequest::new(question(), Arc::from(Vec::new()), tx))
        .await
        .expect("the judge answers");
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let chat = models.named["chat"]
        .call(ModelRequest::new(question(), Arc::from(Vec::new()), tx))
        .await
        .expect("the chat model answers");
    assert_eq!(judge.usage.completion_tokens, 3, "{judge:?}");
    assert!(chat.usage.completion_tokens > 3, "{chat:?}");
    assert_eq!(models.named["judge"].max_reply_tokens(), Some(3));
    assert_eq!(models.named["chat"].max_reply_tokens(), Some(40));
}

/// SPEC S6 on the real model: an instructions-lane note placed before the last user message
/// keeps the cached prefix; the same note appended to the system prompt invalidates it.
#[tokio::test]
async fn a_note_before_the_last_user_message_keeps_the_cached_prefix() {
    let model = LocalModel::load(&settings()).expect("model loads");
    let system = "You are a helpful assistant. Be brief.";
    let first = vec![ContextMessage::user(
        "Tell me three facts about the city of Paris, the capital of France.",
    )];
    let (reply, _) = ask(&model, input(system, first.clone())).await;
    let note = "Keep the next answer to one sentence.";
    let mut history = first;
    history.push(ContextMessage::assistant(reply.text, vec![]));

    let mut before_last_user = history.clone();
    before_last_user.push(ContextMessage::injection(
        murmur_plugin_api::Role::System,
        note,
        "coach",
    ));
    before_last_user.push(ContextMessage::user("And Berlin?"));
    let (kept, _) = ask(&model, input(system, before_last_user)).await;

    // Back to the first exchange's cache state, then the note in the system prompt.
    let (reply_again, _) = ask(&model, input(system, history[..1].to_vec())).await;
    let mut in_system = history[..1].to_vec();
    in_system.push(ContextMessage::assistant(reply_again.text, vec![]));
    in_system.push(ContextMessage::user("And Berlin?"));
    let (moved, _) = ask(&model, input(&format!("{system}\n\n{note}"), in_system)).await;

    let (k, m) = (kept.usage, moved.usage);
    assert!(
        k.prompt_evaluated * 2 < k.prompt_tokens,
        "before_last_user evaluates little more than the note and the question: {k:?}"
    );
    assert!(
        m.prompt_evaluated * 10 >= m.prompt_tokens * 9,
        "a changed system prompt evaluates nearly everything: {m:?}"
    );
}
