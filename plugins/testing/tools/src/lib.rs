//! Test fixture: tools for the chat model. `echo` returns its `text` argument; `add` sums
//! `a` and `b`. One library, two tools.

use murmur_plugin_api::{export_plugin, Config, Error, Host, Result, Tool};
use serde_json::{json, Value};

/// Returns its `text` argument, prefixed by the configured `prefix`.
pub struct Echo {
    prefix: String,
}

impl Tool for Echo {
    const NAME: &'static str = "echo";
    const DESCRIPTION: &'static str = "Repeats the given text.";

    fn parameters() -> Value {
        json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
    }

    fn new(config: Config) -> Result<Self> {
        let prefix = config
            .as_json()
            .get("prefix")
            .and_then(Value::as_str)
            .unwrap_or("echo: ");
        Ok(Echo {
            prefix: prefix.to_string(),
        })
    }

    fn call(&self, args: Value, _host: &Host<'_>) -> Result<String> {
        let text = args
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::msg("missing string argument `text`"))?;
        Ok(format!("{}{text}", self.prefix))
    }
}

/// Adds two numbers.
pub struct Add;

impl Tool for Add {
    const NAME: &'static str = "add";
    const DESCRIPTION: &'static str = "Adds two numbers a and b.";

    fn parameters() -> Value {
        json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]})
    }

    fn new(_config: Config) -> Result<Self> {
        Ok(Add)
    }

    fn call(&self, args: Value, _host: &Host<'_>) -> Result<String> {
        let num = |k: &str| {
            args.get(k)
                .and_then(Value::as_f64)
                .ok_or_else(|| Error::msg(format!("missing number argument `{k}`")))
        };
        Ok((num("a")? + num("b")?).to_string())
    }
}

export_plugin! {
    name: "testing-tools",
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [],
    tools: [Echo, Add],
}
