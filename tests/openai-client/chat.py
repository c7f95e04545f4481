"""Drives `murmur serve`'s /v1/chat/completions with the official `openai` Python package,
unchanged except for `base_url`, and prints what it saw as one JSON object.

usage: chat.py BASE_URL API_KEY

The server's scripted model answers, in this order: two plain turns and a streamed one of
conversation A (a stateless client resending its history), then a tool round trip without
streaming (conversation B) and one with streaming (conversation C). The Rust test
(tests/completions.rs) checks the printed observations against the server's records.
"""

import json
import sys
import time
import urllib.request

import openai

base_url, api_key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)
seen = {"openai_version": openai.__version__}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def create(**kwargs):
    """One request; returns (session id from the response header, parsed response)."""
    raw = client.chat.completions.with_raw_response.create(model="murmur", **kwargs)
    return raw.headers.get("x-murmur-session"), raw.parse()


def wait_for_note(session, turn):
    """Waits until the analyzer's note about `turn` is queued, as a person would wait before
    typing on: analyzers run in the background, and the test must not race them."""
    url = f"{base_url}/v1/sessions/{session}?include=injections"
    headers = {"Authorization": f"Bearer {api_key}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request) as response:
            injections = json.load(response)["injections"]
        if any(i["about_turn"] == turn for i in injections):
            return
        time.sleep(0.02)
    raise TimeoutError(f"no injection about turn {turn} in session {session}")


def collect(stream):
    """Reads a streamed answer like an application would: text, tool calls, usage."""
    text, calls, finish, usage, chunks = "", {}, None, None, 0
    for chunk in stream:
        chunks += 1
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                text += delta.content
            for call in delta.tool_calls or []:
                c = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                c["id"] += call.id or ""
                c["name"] += call.function.name or ""
                c["arguments"] += call.function.arguments or ""
            if choice.finish_reason:
                finish = choice.finish_reason
    return {
        "text": text,
        "calls": [calls[i] for i in sorted(calls)],
        "finish_reason": finish,
        "usage": usage,
        "chunks": chunks,
    }


# Conversation A: a stateless client that resends its history every time.
history = [
    {"role": "system", "content": "You are a terse travel guide."},
    {"role": "user", "content": "Hi!"},
]
session, r = create(messages=history)
seen["a1"] = {
    "session": session,
    "content": r.choices[0].message.content,
    "finish_reason": r.choices[0].finish_reason,
    "object": r.object,
    "usage": r.usage.model_dump() if r.usage else None,
}
history.append({"role": "assistant", "content": r.choices[0].message.content})
history.append({"role": "user", "content": "And now?"})
wait_for_note(session, 1)
session, r = create(messages=history)
seen["a2"] = {"session": session, "content": r.choices[0].message.content}
history.append({"role": "assistant", "content": r.choices[0].message.content})
history.append({"role": "user", "content": "Stream the third answer, please."})
wait_for_note(session, 2)
session, stream = create(
    messages=history, stream=True, stream_options={"include_usage": True}
)
seen["a3"] = dict(collect(stream), session=session)

# Conversation B: the client's own tool, without streaming.
messages = [{"role": "user", "content": "What is the weather in Oslo?"}]
session, r = create(messages=messages, tools=[WEATHER])
message = r.choices[0].message
seen["b1"] = {
    "session": session,
    "finish_reason": r.choices[0].finish_reason,
    "content": message.content,
    "calls": [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
    ],
}
messages.append(message.model_dump(exclude_none=True))
for call in message.tool_calls or []:
    city = json.loads(call.function.arguments)["city"]
    messages.append(
        {"role": "tool", "tool_call_id": call.id, "content": f"18 degrees and sunny in {city}"}
    )
session, r = create(messages=messages, tools=[WEATHER])
seen["b2"] = {
    "session": session,
    "content": r.choices[0].message.content,
    "finish_reason": r.choices[0].finish_reason,
}

# Conversation C: the same round trip, streamed.
messages = [{"role": "user", "content": "And in Bergen?"}]
session, stream = create(messages=messages, tools=[WEATHER], stream=True)
got = collect(stream)
seen["c1"] = dict(got, session=session)
messages.append(
    {
        "role": "assistant",
        "content": got["text"] or None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in got["calls"]
        ],
    }
)
for c in got["calls"]:
    messages.append({"role": "tool", "tool_call_id": c["id"], "content": "rain, 9 degrees"})
session, stream = create(messages=messages, tools=[WEATHER], stream=True)
seen["c2"] = dict(collect(stream), session=session)

# A bad request is refused with the field named, and the server keeps serving.
try:
    create(messages=[{"role": "robot", "content": "beep"}])
    seen["bad"] = {"raised": None}
except openai.BadRequestError as e:
    seen["bad"] = {"raised": "BadRequestError", "status": e.status_code, "message": e.message}

print(json.dumps(seen))
