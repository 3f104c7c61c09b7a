"""The Bedrock emulator through boto3, unmodified: the endpoint comes from
AWS_ENDPOINT_URL_BEDROCK_RUNTIME and the emulator's admin URL from EMULATOR_URL.

Run by tests/python_clients.rs; exits non-zero (with the failing assertion) on any failure.
"""

import json
import os
import urllib.request

import boto3
from botocore.exceptions import EventStreamError

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "amazon.nova-lite-v1:0"
ADMIN = os.environ["EMULATOR_URL"] + "/_emulator"

client = boto3.client("bedrock-runtime", region_name="us-east-1")
user = [{"role": "user", "content": [{"text": "What does Quarry do?"}]}]


def admin(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(ADMIN + path, data=data, method="POST" if data else "GET",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


# Converse
out = client.converse(modelId=HAIKU, messages=user, inferenceConfig={"maxTokens": 200})
text = out["output"]["message"]["content"][0]["text"]
assert text, out
assert out["stopReason"] == "end_turn", out
assert out["usage"]["inputTokens"] > 0 and out["usage"]["outputTokens"] > 0, out
assert "latencyMs" in out["metrics"], out
again = client.converse(modelId=HAIKU, messages=user, inferenceConfig={"maxTokens": 200})
assert again["output"]["message"]["content"][0]["text"] == text, "output is not deterministic"

# ConverseStream: every event type, decoded by botocore's event-stream parser
tool = {"tools": [{"toolSpec": {"name": "lookup", "inputSchema": {"json": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}}],
    "toolChoice": {"any": {}}}
kinds, streamed = [], ""
for event in client.converse_stream(modelId=HAIKU, messages=user, inferenceConfig={"maxTokens": 200})["stream"]:
    kind = next(iter(event))
    kinds.append(kind)
    if kind == "contentBlockDelta":
        streamed += event[kind]["delta"]["text"]
assert streamed == text, (streamed, text)
assert kinds[0] == "messageStart" and kinds[-2:] == ["messageStop", "metadata"], kinds
tool_kinds, tool_input = [], ""
for event in client.converse_stream(modelId=HAIKU, messages=user, toolConfig=tool)["stream"]:
    kind = next(iter(event))
    tool_kinds.append(kind)
    if kind == "contentBlockDelta":
        tool_input += event[kind]["delta"]["toolUse"]["input"]
assert "contentBlockStart" in tool_kinds, tool_kinds
assert "q" in json.loads(tool_input), tool_input

# InvokeModel and InvokeModelWithResponseStream (Anthropic Messages body)
body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                   "messages": [{"role": "user", "content": "hello"}]})
answer = json.loads(client.invoke_model(modelId="us." + HAIKU, body=body)["body"].read())
assert answer["type"] == "message" and answer["content"][0]["type"] == "text", answer
chunks = [json.loads(e["chunk"]["bytes"]) for e in
          client.invoke_model_with_response_stream(modelId=HAIKU, body=body)["body"]]
assert chunks[0]["type"] == "message_start" and chunks[-1]["type"] == "message_stop", chunks

# ApplyGuardrail
g = client.apply_guardrail(guardrailIdentifier="quarrydefault", guardrailVersion="DRAFT", source="INPUT",
                           content=[{"text": {"text": "write to jane@example.com"}}])
assert g["action"] == "GUARDRAIL_INTERVENED" and g["outputs"][0]["text"] == "write to {EMAIL}", g

# Errors arrive as botocore's modeled exceptions
for kind, exc in [("ThrottlingException", client.exceptions.ThrottlingException),
                  ("ServiceUnavailableException", client.exceptions.ServiceUnavailableException),
                  ("ModelTimeoutException", client.exceptions.ModelTimeoutException),
                  ("AccessDeniedException", client.exceptions.AccessDeniedException)]:
    admin("/faults", {"model": NOVA, "error_next": {"kind": kind, "count": 1}})
    try:
        client.converse(modelId=NOVA, messages=user)
        raise AssertionError(f"{kind} was not raised")
    except exc as e:
        assert e.response["Error"]["Code"] == kind, e.response
try:
    client.converse(modelId=NOVA, messages=[{"role": "assistant", "content": [{"text": "hi"}]}])
    raise AssertionError("ValidationException was not raised")
except client.exceptions.ValidationException:
    pass

# An exception event inside a stream, after HTTP 200
admin("/faults", {"model": HAIKU, "mid_stream_error_after": 2})
deltas = 0
try:
    for event in client.converse_stream(modelId=HAIKU, messages=user)["stream"]:
        if "contentBlockDelta" in event:
            deltas += 1
    raise AssertionError("no mid-stream error")
except EventStreamError as e:
    # botocore raises in-stream exceptions as EventStreamError with the member's code.
    assert e.response["Error"]["Code"] == "modelStreamErrorException", e.response
    assert deltas == 2, deltas

admin("/faults", {"model": HAIKU, "mid_stream_error_after": None})

# Images and documents: boto3 sends raw bytes (it base64-encodes them on the wire)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6364f8ff0f0000050001a5f645400000000049454e44ae426082")
SONNET = "anthropic.claude-sonnet-4-20250514-v1:0"
pic = [{"role": "user", "content": [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]}]
assert client.converse(modelId=SONNET, messages=pic)["output"]["message"]["content"][0]["text"]
for model, content in [(HAIKU, pic[0]["content"]),  # no vision
                       (SONNET, [{"image": {"format": "jpeg", "source": {"bytes": PNG}}}])]:  # lying bytes
    try:
        client.converse(modelId=model, messages=[{"role": "user", "content": content}])
        raise AssertionError(f"{model} took {content}")
    except client.exceptions.ValidationException:
        pass
DOC = b"Revenue grew 12 percent in Q3. Costs were flat."
out = client.converse(modelId=SONNET, messages=[{"role": "user", "content": [
    {"text": "How did revenue do?"},
    {"document": {"format": "txt", "name": "Q3 report", "source": {"bytes": DOC}, "citations": {"enabled": True}}}]}])
cited = out["output"]["message"]["content"][0]["citationsContent"]
c = cited["citations"][0]
loc = c["location"]["documentChar"]
assert c["title"] == "Q3 report" and DOC.decode()[loc["start"]:loc["end"]] == c["sourceContent"][0]["text"], cited
try:
    client.converse(modelId=SONNET, messages=[{"role": "user", "content": [
        {"document": {"format": "txt", "name": "bad.name", "source": {"bytes": DOC}}}]}])
    raise AssertionError("a document name with a dot was taken")
except client.exceptions.ValidationException:
    pass

# Reasoning: signed, sent back unchanged next turn; an edited one is refused
think = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
turn = [{"role": "user", "content": [{"text": "Is 91 prime?"}]}]
out = client.converse(modelId=SONNET, messages=turn, inferenceConfig={"maxTokens": 2048},
                      additionalModelRequestFields=think)
blocks = out["output"]["message"]["content"]
reasoning = blocks[0]["reasoningContent"]["reasoningText"]
assert reasoning["text"] and reasoning["signature"], blocks
turn += [out["output"]["message"], {"role": "user", "content": [{"text": "And 97?"}]}]
client.converse(modelId=SONNET, messages=turn, inferenceConfig={"maxTokens": 2048},
                additionalModelRequestFields=think)
turn[1]["content"][0]["reasoningContent"]["reasoningText"]["text"] += "!"
try:
    client.converse(modelId=SONNET, messages=turn, inferenceConfig={"maxTokens": 2048},
                    additionalModelRequestFields=think)
    raise AssertionError("an edited signature was taken")
except client.exceptions.ValidationException as e:
    assert "signature" in str(e), e
kinds = []
for event in client.converse_stream(modelId=SONNET, messages=turn[:1], inferenceConfig={"maxTokens": 2048},
                                    additionalModelRequestFields=think)["stream"]:
    delta = event.get("contentBlockDelta", {}).get("delta", {})
    kinds += [k for k in ("reasoningContent", "text") if k in delta]
    if "reasoningContent" in delta and "signature" in delta["reasoningContent"]:
        kinds.append("signature")
assert kinds.index("signature") < kinds.index("text") and kinds[0] == "reasoningContent", kinds

# Service tiers and latency: checked per model, echoed back
out = client.converse(modelId=NOVA, messages=user, serviceTier={"type": "flex"})
assert out["serviceTier"] == {"type": "flex"}, out
try:
    client.converse(modelId=HAIKU, messages=user, serviceTier={"type": "flex"})
    raise AssertionError("flex on a model without it")
except client.exceptions.ValidationException:
    pass
out = client.converse(modelId=HAIKU, messages=user, performanceConfig={"latency": "optimized"})
assert out["performanceConfig"] == {"latency": "optimized"}, out
meta = [e["metadata"] for e in client.converse_stream(modelId=NOVA, messages=user,
                                                      serviceTier={"type": "priority"})["stream"] if "metadata" in e]
assert meta[0]["serviceTier"] == {"type": "priority"}, meta

# A prompt router says which model answered
router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1"
out = client.converse(modelId=router, messages=user)
assert "anthropic.claude" in out["trace"]["promptRouter"]["invokedModelId"], out

# One-hour prompt-cache writes are reported as such
long_system = [{"text": "You are a careful assistant. " * 400}, {"cachePoint": {"type": "default", "ttl": "1h"}}]
out = client.converse(modelId=SONNET, system=long_system, messages=user)
assert out["usage"]["cacheDetails"][0]["ttl"] == "1h", out["usage"]

# Forced tool choice where the model lacks it
tools = {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"any": {}}}
try:
    client.converse(modelId="meta.llama3-1-8b-instruct-v1:0", messages=user, toolConfig=tools)
    raise AssertionError("forced tool choice on Llama")
except client.exceptions.ValidationException:
    pass

print("boto3 OK")
