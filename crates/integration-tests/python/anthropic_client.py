"""The official anthropic client, unmodified, against Quarry's /v1/messages: a message, a
stream, a tool round trip, thinking with a second turn, count_tokens, and error shapes."""

import os

import anthropic
from anthropic import Anthropic

client = Anthropic(base_url=os.environ["QUARRY_URL"], api_key=os.environ["QUARRY_KEY"], max_retries=0)
SONNET = "claude-sonnet-4-20250514"

# A message, by Anthropic's model name (mapped to a Bedrock inference profile).
m = client.messages.create(model="claude-3-5-haiku-20241022", max_tokens=200, system="Be brief.",
                           messages=[{"role": "user", "content": "What does Quarry do?"}])
assert m.type == "message" and m.role == "assistant", m
assert m.content[0].type == "text" and m.content[0].text, m
assert m.stop_reason == "end_turn" and m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m
assert float(m.model_extra["quarry"]["cost_usd"]) > 0, m.model_extra

# Streamed, through the SDK's own accumulation.
with client.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=200,
                            messages=[{"role": "user", "content": "Say something."}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text and final.content[0].text == text, (text, final)
assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0, final

# Tools: the model calls one, the result goes back, the model answers in text.
tools = [{"name": "get_weather", "description": "Weather for a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
ask = [{"role": "user", "content": "Use get_weather for Paris."}]
m = client.messages.create(model=SONNET, max_tokens=300, tools=tools, messages=ask)
calls = [b for b in m.content if b.type == "tool_use"]
assert m.stop_reason == "tool_use" and calls and calls[0].name == "get_weather", m
assert "city" in calls[0].input, calls
follow = ask + [{"role": "assistant", "content": [b.model_dump() for b in m.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": calls[0].id, "content": "sunny"}]}]
m = client.messages.create(model=SONNET, max_tokens=300, tools=tools, messages=follow)
assert m.stop_reason == "end_turn" and m.content[0].type == "text", m

# Streamed tool use: the SDK rebuilds the input from input_json_delta events.
with client.messages.stream(model=SONNET, max_tokens=300, tools=tools, messages=ask) as stream:
    final = stream.get_final_message()
calls = [b for b in final.content if b.type == "tool_use"]
assert calls and calls[0].input.get("city"), final

# Thinking, signed, and a second turn carrying it back; streamed too.
thinking = {"type": "enabled", "budget_tokens": 1024}
ask = [{"role": "user", "content": "Is 91 prime?"}]
m = client.messages.create(model=SONNET, max_tokens=2048, thinking=thinking, messages=ask)
assert m.content[0].type == "thinking" and m.content[0].signature, m
again = ask + [{"role": "assistant", "content": [b.model_dump() for b in m.content]},
               {"role": "user", "content": "And 97?"}]
m = client.messages.create(model=SONNET, max_tokens=2048, thinking=thinking, messages=again)
assert any(b.type == "text" for b in m.content), m
with client.messages.stream(model=SONNET, max_tokens=2048, thinking=thinking, messages=ask) as stream:
    final = stream.get_final_message()
assert final.content[0].type == "thinking" and final.content[0].thinking and final.content[0].signature, final
assert final.content[1].type == "text" and final.content[1].text, final

# count_tokens
n = client.messages.count_tokens(model=SONNET, messages=[{"role": "user", "content": "Hello there"}])
assert n.input_tokens > 0, n

# Errors arrive in Anthropic's shape, as the SDK's typed exceptions.
try:
    client.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("no error for an unknown model")
except anthropic.BadRequestError as e:
    assert e.body["type"] == "error" and e.body["error"]["type"] == "invalid_request_error", e.body
try:
    Anthropic(base_url=os.environ["QUARRY_URL"], api_key="wrong", max_retries=0).messages.create(
        model=SONNET, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("no error for a wrong key")
except anthropic.AuthenticationError as e:
    assert e.body["error"]["type"] == "authentication_error", e.body
try:
    client.messages.create(model=SONNET, max_tokens=10, messages=[{"role": "user", "content": "x"}],
                           tools=[{"type": "web_search_20250305", "name": "web_search"}])
    raise AssertionError("a server tool was taken")
except anthropic.BadRequestError as e:
    assert "tools[0]" in str(e), e

print("anthropic OK")
