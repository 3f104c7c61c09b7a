"""The official `openai` client, unmodified, against Quarry's /v1/chat/completions.

QUARRY_URL and QUARRY_KEY come from the environment (tests/python_clients.rs).
"""

import json
import os

from openai import OpenAI

client = OpenAI(base_url=os.environ["QUARRY_URL"] + "/v1", api_key=os.environ["QUARRY_KEY"], max_retries=0)

# Plain completion
r = client.chat.completions.create(model="fast", messages=[
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello"},
])
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant"
assert r.choices[0].message.content, r
assert r.choices[0].finish_reason == "stop", r
assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
assert r.model.startswith("us.anthropic"), r.model
# Quarry's fields beside OpenAI's (extra fields of the SDK's model)
assert float(r.model_extra["cost_usd"]) > 0 and r.model_extra["cached"] is False, r.model_extra
assert r.service_tier == "default", r.service_tier

# Models
ids = [m.id for m in client.models.list().data]
assert "fast" in ids and "smart" in ids, ids

# Streaming with usage in the last chunk
text, usage, finish, extra = "", None, None, None
for chunk in client.chat.completions.create(model="fast", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Stream a reply"}]):
    if chunk.usage is not None:
        usage = chunk.usage
        extra = chunk.model_extra
    for choice in chunk.choices:
        text += choice.delta.content or ""
        finish = choice.finish_reason or finish
assert text, "no streamed text"
assert finish == "stop", finish
assert usage is not None and usage.completion_tokens > 0, usage
assert extra and float(extra["cost_usd"]) > 0 and extra["quarry"]["cached"] is False, extra

# Tools: the model calls the tool, we answer it, the model replies in text
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
messages = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
r = client.chat.completions.create(model="fast", messages=messages, tools=tools, tool_choice="required")
call = r.choices[0].message.tool_calls[0]
assert r.choices[0].finish_reason == "tool_calls", r
assert call.function.name == "get_weather", call
assert "city" in json.loads(call.function.arguments), call
messages.append(r.choices[0].message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18})})
r = client.chat.completions.create(model="fast", messages=messages, tools=tools)
assert r.choices[0].message.content, r
assert r.choices[0].finish_reason == "stop", r

# Streaming tool calls
name, args = None, ""
for chunk in client.chat.completions.create(model="fast", stream=True, tools=tools, tool_choice="required",
                                            messages=[{"role": "user", "content": "Weather in Oslo?"}]):
    for choice in chunk.choices:
        for tc in choice.delta.tool_calls or []:
            name = tc.function.name or name
            args += tc.function.arguments or ""
assert name == "get_weather", name
assert "city" in json.loads(args), args

# Structured output
schema = {"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
          "required": ["answer", "confidence"], "additionalProperties": False}
r = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": "Is water wet?"}],
                                   response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}})
parsed = json.loads(r.choices[0].message.content)
assert set(parsed) == {"answer", "confidence"} and 0 <= parsed["confidence"] <= 1, parsed

# Errors arrive as the client's typed exceptions
import openai
try:
    client.chat.completions.create(model="no-such-tier", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("no error for an unknown model")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "unknown model" in str(e), e
try:
    OpenAI(base_url=os.environ["QUARRY_URL"] + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("no error for a wrong key")
except openai.AuthenticationError:
    pass

print("openai OK")
