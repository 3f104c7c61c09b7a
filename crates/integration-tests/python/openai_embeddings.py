"""The official openai client, unmodified, on /v1/embeddings: single and batch input (the
client asks for base64 and decodes it), dimensions, a partly cached batch, and errors."""

import json
import os
import urllib.request

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["QUARRY_URL"] + "/v1", api_key=os.environ["QUARRY_KEY"], max_retries=0)
ADMIN = os.environ["EMULATOR_URL"] + "/_emulator"


def titan_calls():
    with urllib.request.urlopen(ADMIN + "/calls") as r:
        calls = json.loads(r.read())
    return calls["operations"].get("InvokeModel", {}).get("amazon.titan-embed-text-v2:0", {}).get("calls", 0)


one = client.embeddings.create(model="embed", input="the cat sat on the mat", dimensions=512)
assert len(one.data) == 1 and len(one.data[0].embedding) == 512, one
assert one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens, one.usage
before = titan_calls()
batch = client.embeddings.create(model="amazon.titan-embed-text-v2:0", dimensions=512,
                                 input=["the cat sat on the mat", "a dog slept", "rain in spain"])
assert [d.index for d in batch.data] == [0, 1, 2], batch
assert batch.data[0].embedding == one.data[0].embedding, "the cached vector is the same vector"
assert titan_calls() - before == 2, "only the two new texts reach the model"
assert batch.model_extra["quarry"]["cached_texts"] == 1, batch.model_extra

try:
    client.embeddings.create(model="fast", input="x")
    raise AssertionError("a chat tier embedded")
except openai.BadRequestError as e:
    assert e.status_code == 400, e

print("embeddings OK")
