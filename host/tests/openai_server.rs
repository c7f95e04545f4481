//! The `openai` provider against a real OpenAI-compatible server: llama.cpp's HTTP server
//! serving the default SmolLM2 model on loopback (`tests/openai-server/serve.py`, installed by
//! `scripts/setup`). Nothing here is a mock: every answer comes from the server.
//!
//! The server uses the tool-capable ChatML template of `tests/openai-server/` (SmolLM2's own
//! template knows no tools). To get tool calls out of a 135M model deterministically, the
//! tool-call tests ask it, at temperature 0, to copy a `<tool_call>` block; the server parses
//! what it generates into OpenAI `tool_calls`, and the provider must read them back.

use std::sync::Arc;
use std::time::Duration;

use murmur::model::openai::{OpenAiModel, OpenAiSettings};
use murmur::model::{
    ContextMessage, ModelError, ModelInput, ModelProvider, ModelReply, ModelRequest, ToolSpec,
};
use murmur_e2e::openai_server::OpenAiServer;
use serde_json::{json, Value};

fn settings(server: &OpenAiServer, stream: bool) -> OpenAiSettings {
    OpenAiSettings {
        base_url: server.base_url(),
        model: "smollm2".into(),
        api_key_env: None,
        context_length: Some(2048),
        timeout: Duration::from_secs(60),
        max_retries: 0,
        stream,
        temperature: Some(0.0),
        top_p: None,
        max_tokens: Some(48),
        seed: Some(7),
        stop: Vec::new(),
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

/// Calls the model and collects the streamed chunks.
async fn ask(
    model: &OpenAiModel,
    request: impl FnOnce(tokio::sync::mpsc::UnboundedSender<String>) -> ModelRequest,
) -> (Result<ModelReply, ModelError>, Vec<String>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reply = model.call(request(tx)).await;
    let mut chunks = Vec::new();
    while let Ok(c) = rx.try_recv() {
        chunks.push(c);
    }
    (reply, chunks)
}

fn capital_question() -> Arc<ModelInput> {
    input(
        "You are a helpful assistant. Answer in one short sentence.",
        vec![ContextMessage::user("What is the capital of France?")],
    )
}

fn weather_tool() -> Arc<[ToolSpec]> {
    Arc::from(vec![ToolSpec {
        name: "get_weather".into(),
        description: "The current weather in a city.".into(),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"]
        }),
    }])
}

/// A prompt that makes the model write tool-call blocks, one per city.
fn copy_tool_calls(cities: &[&str]) -> Arc<ModelInput> {
    let blocks: Vec<String> = cities
        .iter()
        .map(|c| {
            format!("<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {{\"city\": \"{c}\"}}}}\n</tool_call>")
        })
        .collect();
    input(
        "You copy text exactly.",
        vec![ContextMessage::user(format!(
            "Copy this text exactly:\n{}",
            blocks.join("\n")
        ))],
    )
}

#[tokio::test]
async fn a_streamed_answer_arrives_in_chunks_with_usage() {
    let server = OpenAiServer::start(2048);
    let model = OpenAiModel::new(&settings(&server, true)).expect("client");
    let (reply, chunks) = ask(&model, |tx| {
        ModelRequest::new(capital_question(), Arc::from(vec![]), tx)
    })
    .await;
    let reply = reply.expect("the server answers");
    assert!(reply.text.contains("Paris"), "{reply:?}");
    assert!(
        chunks.len() > 1,
        "the answer streamed in pieces: {chunks:?}"
    );
    assert_eq!(chunks.concat(), reply.text);
    assert!(reply.tool_calls.is_empty());
    assert!(reply.usage.prompt_tokens > 10, "{:?}", reply.usage);
    assert!(reply.usage.completion_tokens > 1, "{:?}", reply.usage);
    assert!(reply.usage.prompt_evaluated <= reply.usage.prompt_tokens);
}

#[tokio::test]
async fn a_non_streamed_answer_arrives_whole_with_usage() {
    let server = OpenAiServer::start(2048);
    let model = OpenAiModel::new(&settings(&server, false)).expect("client");
    let (reply, chunks) = ask(&model, |tx| {
        ModelRequest::new(capital_question(), Arc::from(vec![]), tx)
    })
    .await;
    let reply = reply.expect("the server answers");
    assert!(reply.text.contains("Paris"), "{reply:?}");
    assert_eq!(chunks, vec![reply.text.clone()]);
    assert!(reply.usage.prompt_tokens > 10, "{:?}", reply.usage);
    assert!(reply.usage.completion_tokens > 1, "{:?}", reply.usage);
}

#[tokio::test]
async fn a_tool_call_round_trip_streamed_and_not() {
    let server = OpenAiServer::start(2048);
    for stream in [true, false] {
        let model = OpenAiModel::new(&settings(&server, stream)).expect("client");
        let (reply, _) = ask(&model, |tx| {
            ModelRequest::new(copy_tool_calls(&["Paris"]), weather_tool(), tx)
        })
        .await;
        let reply = reply.expect("the server answers");
        assert_eq!(reply.tool_calls.len(), 1, "stream={stream}: {reply:?}");
        let call = &reply.tool_calls[0];
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.arguments, json!({"city": "Paris"}));
        assert!(!call.id.is_empty());

        // The provider sends the call and its result back; the server renders both into the
        // prompt and the model answers from the result.
        let mut messages = copy_tool_calls(&["Paris"]).messages.to_vec();
        messages.push(ContextMessage::assistant("", reply.tool_calls.clone()));
        messages.push(ContextMessage::tool(call, "Sunny, 21 degrees Celsius."));
        messages.push(ContextMessage::user(
            "What does the tool result say about the weather? Answer in one sentence.",
        ));
        let (answer, _) = ask(&model, |tx| {
            ModelRequest::new(
                input("You are a helpful assistant.", messages),
                weather_tool(),
                tx,
            )
        })
        .await;
        let answer = answer.expect("the server answers after the tool result");
        assert!(answer.tool_calls.is_empty(), "stream={stream}: {answer:?}");
        let text = answer.text.to_lowercase();
        assert!(
            text.contains("sunny") || text.contains("21"),
            "stream={stream}: the answer uses the tool result: {answer:?}"
        );
    }
}

#[tokio::test]
async fn parallel_tool_calls_are_assembled_in_order() {
    let server = OpenAiServer::start(2048);
    let mut s = settings(&server, true);
    s.max_tokens = Some(96);
    let model = OpenAiModel::new(&s).expect("client");
    let (reply, _) = ask(&model, |tx| {
        ModelRequest::new(copy_tool_calls(&["Paris", "Berlin"]), weather_tool(), tx)
    })
    .await;
    let reply = reply.expect("the server answers");
    let cities: Vec<&Value> = reply
        .tool_calls
        .iter()
        .map(|c| &c.arguments["city"])
        .collect();
    assert_eq!(cities, vec!["Paris", "Berlin"], "{reply:?}");
    assert_ne!(reply.tool_calls[0].id, reply.tool_calls[1].id);
}

#[tokio::test]
async fn a_json_schema_travels_as_response_format_and_the_answer_follows_it() {
    let server = OpenAiServer::start(2048);
    let schema = json!({
        "type": "object",
        "properties": {
            "capital": {"type": "string"},
            "population_millions": {"type": "number"}
        },
        "required": ["capital", "population_millions"],
        "additionalProperties": false
    });
    for stream in [true, false] {
        let model = OpenAiModel::new(&settings(&server, stream)).expect("client");
        let (reply, _) = ask(&model, |tx| {
            let mut r = ModelRequest::new(capital_question(), Arc::from(vec![]), tx);
            r.json_schema = Some(schema.clone());
            r.max_tokens = Some(64);
            r
        })
        .await;
        let reply = reply.expect("the server answers");
        let value: Value = serde_json::from_str(&reply.text)
            .unwrap_or_else(|e| panic!("stream={stream}: not JSON ({e}): {}", reply.text));
        let object = value.as_object().expect("an object");
        assert!(object["capital"].is_string(), "{value}");
        assert!(object["population_millions"].is_number(), "{value}");
        assert_eq!(object.len(), 2, "{value}");
    }
}

#[tokio::test]
async fn a_server_that_dies_mid_stream_is_an_error_that_names_it() {
    let mut server = OpenAiServer::start(2048);
    let mut s = settings(&server, true);
    s.max_tokens = Some(400);
    s.max_retries = 3;
    let model = OpenAiModel::new(&s).expect("client");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let call = model.call(ModelRequest::new(
        input(
            "You are a storyteller.",
            vec![ContextMessage::user(
                "Tell a long story about a lighthouse keeper.",
            )],
        ),
        Arc::from(vec![]),
        tx,
    ));
    let call = tokio::spawn(call);
    // Kill the server once the story has started to stream.
    let first = rx.recv().await.expect("a first chunk");
    assert!(!first.is_empty());
    server.kill();
    let e = call
        .await
        .expect("the call task")
        .expect_err("the stream broke");
    assert!(e.message.contains(&model.endpoint().to_string()), "{e}");
    assert!(
        e.message.contains("stream") || e.message.contains("closed"),
        "the error says the stream broke: {e}"
    );
}

#[tokio::test]
async fn a_request_beyond_the_context_is_refused_with_the_servers_reason() {
    let server = OpenAiServer::start(512);
    let model = OpenAiModel::new(&settings(&server, true)).expect("client");
    let long = "The quick brown fox jumps over the lazy dog. ".repeat(200);
    let (reply, chunks) = ask(&model, |tx| {
        ModelRequest::new(
            input("", vec![ContextMessage::user(long)]),
            Arc::from(vec![]),
            tx,
        )
    })
    .await;
    let e = reply.expect_err("the prompt does not fit");
    assert!(
        e.message
            .contains(&format!("{} answered 400", model.endpoint())),
        "{e}"
    );
    assert!(e.message.contains("context"), "the server's reason: {e}");
    assert!(chunks.is_empty());
}

#[tokio::test]
async fn a_server_that_is_gone_is_retried_then_reported() {
    let mut server = OpenAiServer::start(512);
    let mut s = settings(&server, true);
    server.kill();
    s.max_retries = 1;
    let model = OpenAiModel::new(&s).expect("client");
    let (reply, _) = ask(&model, |tx| {
        ModelRequest::new(capital_question(), Arc::from(vec![]), tx)
    })
    .await;
    let e = reply.expect_err("nobody listens");
    assert!(
        e.message
            .contains(&format!("cannot reach {}", model.endpoint())),
        "{e}"
    );
}
