//! Entry points of the fuzz targets in `host/fuzz` (`cargo fuzz`), and of the test that
//! replays their corpora and crash reproducers in every `cargo test`
//! (`host/tests/fuzz_corpus.rs`). Each takes arbitrary bytes, gives them to a reader of
//! outside input, and checks what must hold for any input: it returns, and an error names
//! where the input came from.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower_service::Service as _;

use crate::config::{Config, ServerSettings};
use crate::model::scripted::ScriptedModel;
use crate::plugins::protocol::{self, FromRunner, ToRunner};
use crate::server::hub::EventHub;
use crate::server::metrics::Metrics;
use crate::server::{router, App};
use crate::session::SessionSettings;
use crate::Runtime;

/// The config parser: a config file's text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = Config::parse(text, Path::new("fuzz.toml")) {
        let message = errors.to_string();
        assert!(message.contains("fuzz.toml"), "{message}");
    }
}

/// The conversation script of `murmur run`.
pub fn conversation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = crate::conversation::parse(text, Path::new("fuzz.txt")) {
        let message = e.to_string();
        assert!(message.contains("fuzz.txt"), "{message}");
    }
}

/// The scripted model's JSON Lines file.
pub fn scripted_model(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = ScriptedModel::parse(text, Path::new("fuzz.jsonl"), 8) {
        let message = e.to_string();
        assert!(message.contains("fuzz.jsonl"), "{message}");
    }
}

/// The plugin-runner protocol: frames as either side reads them, and what it decodes
/// written back.
pub fn runner_protocol(data: &[u8]) {
    if let Ok(frame) = protocol::decode::<ToRunner>(data) {
        let mut out = Vec::new();
        protocol::write_frame(&mut out, &frame).expect("a decoded frame encodes");
        let back = protocol::read_frame::<ToRunner>(&mut out.as_slice());
        assert!(matches!(back, Ok(Some(_))), "{back:?}");
    }
    if let Ok(frame) = protocol::decode::<FromRunner>(data) {
        let mut out = Vec::new();
        protocol::write_frame(&mut out, &frame).expect("a decoded frame encodes");
        let back = protocol::read_frame::<FromRunner>(&mut out.as_slice());
        assert!(matches!(back, Ok(Some(_))), "{back:?}");
    }
    let mut stream = data;
    while let Ok(Some(_)) = protocol::read_frame::<FromRunner>(&mut stream) {}
    let mut stream = data;
    while let Ok(Some(_)) = protocol::read_frame::<ToRunner>(&mut stream) {}
}

/// A `murmur serve` app in this process: the scripted model, no plugins, memory sessions.
struct Server {
    tokio: tokio::runtime::Runtime,
    app: Arc<App>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let script: String = (0..100_000)
            .map(|i| format!("{{\"text\": \"reply {i}\"}}\n"))
            .collect();
        let model =
            ScriptedModel::parse(&script, Path::new("fuzz.jsonl"), 64).expect("a valid script");
        let settings = SessionSettings {
            system_prompt: "fuzz".into(),
            max_steps: 4,
            steering: true,
            placement: crate::config::InstructionsPlacement::System,
            compaction: Default::default(),
        };
        let app = tokio.block_on(async {
            let hub = Arc::new(EventHub::default());
            let metrics = Arc::new(Metrics::default());
            let runtime = Runtime::builder(settings, Arc::new(model))
                .observer(hub.clone())
                .observer(metrics.clone())
                .build();
            App::new(runtime, hub, metrics, ServerSettings::default(), None)
        });
        Server { tokio, app }
    })
}

/// Sends one request to the app and reads its answer to the end: no server error but 502
/// (the model failed: the script ran out), and a JSON error body for every error.
async fn exchange(
    app: &Arc<App>,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("a request");
    let response = match router(app.clone()).call(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    assert!(
        !status.is_server_error() || status == StatusCode::BAD_GATEWAY,
        "{status} for {path}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() || status.is_server_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error body");
        assert!(v["error"]["message"].is_string(), "{v}");
    }
    (status, bytes)
}

/// The body of `POST /v1/sessions/{id}/messages`, on a new session each time.
pub fn session_message(data: &[u8]) {
    let s = server();
    s.tokio.block_on(async {
        let (status, created) = exchange(&s.app, "POST", "/v1/sessions", Vec::new()).await;
        assert_eq!(status, StatusCode::CREATED);
        let v: serde_json::Value = serde_json::from_slice(&created).expect("json");
        let id = v["id"].as_str().expect("an id").to_string();
        exchange(
            &s.app,
            "POST",
            &format!("/v1/sessions/{id}/messages"),
            data.to_vec(),
        )
        .await;
        exchange(&s.app, "DELETE", &format!("/v1/sessions/{id}"), Vec::new()).await;
    });
}

/// The body of `POST /v1/chat/completions`.
pub fn chat_completions(data: &[u8]) {
    let s = server();
    s.tokio.block_on(async {
        exchange(&s.app, "POST", "/v1/chat/completions", data.to_vec()).await;
    });
}
