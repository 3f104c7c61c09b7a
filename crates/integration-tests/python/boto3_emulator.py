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

print("boto3 OK")
