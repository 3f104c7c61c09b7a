"""The official openai client, unmodified, on the Converse surface beyond text: images, a
PDF, reasoning over two turns (the signature sent back), tool calls streamed after text,
tool_choice none with tool history, and the flex service tier."""

import json
import os

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["QUARRY_URL"] + "/v1", api_key=os.environ["QUARRY_KEY"], max_retries=0)

PNG = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
       "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
PDF = "data:application/pdf;base64," + __import__("base64").b64encode(
    b"%PDF-1.4\n1 0 obj << /Type /Page >> endobj\nBT (Revenue grew 12 percent in Q3.) Tj ET\n%%EOF").decode()

# An image: the smart tier's models all see.
r = client.chat.completions.create(model="smart", messages=[{"role": "user", "content": [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]}])
assert r.choices[0].message.content, r

# A text-only model gets a 400 naming the image, before any call.
try:
    client.chat.completions.create(model="us.anthropic.claude-3-5-haiku-20241022-v1:0", messages=[
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}])
    raise AssertionError("an image reached a text-only model")
except openai.BadRequestError as e:
    assert "images" in str(e), e

# A tier whose first model is text-only skips to the next one that sees.
r = client.chat.completions.create(model="fast", messages=[{"role": "user", "content": [
    {"type": "text", "text": "Describe it."}, {"type": "image_url", "image_url": {"url": PNG}}]}])
assert "nova-lite" in r.model, r.model

# A PDF, with citations asked for.
r = client.chat.completions.create(model="smart", messages=[{"role": "user", "content": [
    {"type": "text", "text": "How did revenue do?"},
    {"type": "file", "file": {"filename": "Q3 report.pdf", "file_data": PDF, "citations": {"enabled": True}}}]}])
message = r.choices[0].message
assert message.content, r
citations = (message.model_extra or {}).get("citations") or []
assert citations and citations[0]["title"] == "Q3 report", message

# A lying image: refused with the part named.
try:
    client.chat.completions.create(model="smart", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + PNG.split(",", 1)[1]}}]}])
    raise AssertionError("a PNG sent as JPEG was taken")
except openai.BadRequestError as e:
    assert (e.body or {}).get("param") == "messages[0].content[0]" and "png" in str(e), (e.body, e)

# Reasoning, then a second turn carrying the signed reasoning back.
messages = [{"role": "user", "content": "Think it through: is 91 prime?"}]
r = client.chat.completions.create(model="smart", reasoning_effort="low", messages=messages)
message = r.choices[0].message
extra = message.model_extra or {}
assert extra.get("reasoning_content"), message
assert extra.get("thinking_blocks") and extra["thinking_blocks"][0]["signature"], message
messages.append(message.model_dump(exclude_none=True))
messages.append({"role": "user", "content": "And 97?"})
r = client.chat.completions.create(model="smart", reasoning_effort="low", messages=messages)
assert r.choices[0].message.content, r

# A forged signature is Bedrock's to refuse: the client gets a 400, not an answer.
forged = json.loads(json.dumps(messages))
forged[1]["thinking_blocks"][0]["thinking"] += " (edited)"
try:
    client.chat.completions.create(model="smart", reasoning_effort="low", messages=forged)
    raise AssertionError("edited reasoning was accepted")
except openai.BadRequestError as e:
    assert "signature" in str(e), e

# Reasoning streams as reasoning_content deltas; the signature comes on the last chunk.
reasoning, text, blocks = "", "", []
for chunk in client.chat.completions.create(model="smart", reasoning_effort="low", stream=True,
                                            messages=[{"role": "user", "content": "Is 51 prime?"}]):
    for choice in chunk.choices:
        delta = choice.delta.model_extra or {}
        reasoning += delta.get("reasoning_content") or ""
        blocks += delta.get("thinking_blocks") or []
        text += choice.delta.content or ""
assert reasoning and text and blocks and blocks[0]["signature"], (reasoning, text, blocks)

# Reasoning with a temperature Claude cannot take: a 400 naming it.
try:
    client.chat.completions.create(model="smart", reasoning_effort="low", temperature=0.2,
                                   messages=[{"role": "user", "content": "x"}])
    raise AssertionError("reasoning with temperature was sent")
except openai.BadRequestError as e:
    assert "temperature" in str(e), e

# Streamed tool calls after text: the tool call's index is 0.
tools = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
text, calls = "", {}
for chunk in client.chat.completions.create(model="smart", stream=True, tools=tools, messages=[
        {"role": "user", "content": "Use get_weather for Oslo."}]):
    for choice in chunk.choices:
        text += choice.delta.content or ""
        for tc in choice.delta.tool_calls or []:
            calls.setdefault(tc.index, "")
            calls[tc.index] += tc.function.arguments or ""
assert text, "no text before the tool call"
assert list(calls) == [0] and "city" in json.loads(calls[0]), calls

# tool_choice none with tool calls in the history: answered in text.
r = client.chat.completions.create(model="smart", tools=tools, tool_choice="none", messages=[
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}])
assert r.choices[0].message.content and not r.choices[0].message.tool_calls, r

# The flex tier: served by a model that has it, priced and reported as flex.
r = client.chat.completions.create(model="fast", service_tier="flex", messages=[{"role": "user", "content": "hi"}])
assert r.service_tier == "flex", r
assert "nova-lite" in r.model, r.model
default = client.chat.completions.create(model="us.amazon.nova-lite-v1:0", messages=[{"role": "user", "content": "hi"}])
assert default.service_tier == "default", default

# Legacy function calling: mapped to tools, answered in the legacy shape.
functions = [{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}]
ask = [{"role": "user", "content": "Weather in Rome?"}]
r = client.chat.completions.create(model="fast", functions=functions, function_call={"name": "get_weather"},
                                   messages=ask)
msg = r.choices[0].message
assert r.choices[0].finish_reason == "function_call", r
assert msg.function_call.name == "get_weather" and not msg.tool_calls, msg
history = ask + [{"role": "assistant", "content": None, "function_call": {
    "name": "get_weather", "arguments": msg.function_call.arguments}},
    {"role": "function", "name": "get_weather", "content": "sunny"}]
r = client.chat.completions.create(model="fast", functions=functions, messages=history)
assert r.choices[0].message.content and r.choices[0].finish_reason == "stop", r
name, args, finish = None, "", None
for chunk in client.chat.completions.create(model="fast", stream=True, functions=functions,
                                            function_call={"name": "get_weather"}, messages=ask):
    for choice in chunk.choices:
        fc = choice.delta.function_call
        if fc:
            name = fc.name or name
            args += fc.arguments or ""
        finish = choice.finish_reason or finish
assert name == "get_weather" and "city" in json.loads(args) and finish == "function_call", (name, args, finish)

# A prompt that retrieves, named in the extension: the sources come back beside the answer,
# whole and on the stream's usage chunk.
rag = {"prompt": "docs-qa", "variables": {"question": "How much does Acme pay per sensor each month?"}}
r = client.chat.completions.create(model="fast", messages=[], extra_body=rag)
extra = r.model_extra
assert any(s["uri"].endswith("/pricing.md") for s in extra["sources"]), extra
assert extra["quarry"]["retrieval"]["knowledge_base_id"] == "QUARRYDOCS", extra
assert isinstance(extra["quarry"]["grounding"]["score"], float), extra
last = None
for chunk in client.chat.completions.create(model="fast", messages=[], extra_body=rag, stream=True,
                                            stream_options={"include_usage": True}):
    last = chunk
assert last.usage and last.model_extra["quarry"]["sources"], last

print("openai fidelity OK")
