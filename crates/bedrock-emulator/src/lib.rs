//! A local Amazon Bedrock Runtime.
//!
//! It speaks Bedrock's REST-JSON protocol and its `application/vnd.amazon.eventstream`
//! framing, so the unmodified AWS SDKs (aws-sdk-bedrockruntime, boto3) work against it
//! through an endpoint override (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`).
//!
//! Operations: Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream,
//! CountTokens and ApplyGuardrail; Knowledge Bases' Retrieve and RetrieveAndGenerate over a
//! local corpus; embedding models (Titan, Cohere Embed) through InvokeModel; and the control
//! plane's batch inference jobs (CreateModelInvocationJob, GetModelInvocationJob,
//! ListModelInvocationJobs, StopModelInvocationJob) and inference profiles
//! (CreateInferenceProfile, GetInferenceProfile, ListInferenceProfiles,
//! DeleteInferenceProfile, ListTagsForResource); the `bedrock` client reaches them through
//! `AWS_ENDPOINT_URL_BEDROCK` set to the same URL. Output is deterministic (the same request
//! gets the same answer), usage is realistic (about four characters a token, prompt-cache reads and writes
//! when `cachePoint` blocks are sent), latency and faults are configurable per model and per
//! region (the one each call is signed for), and an admin API under `/_emulator/` exposes
//! call counters and the requests received.
//!
//! # Bedrock's rules, as the emulator applies them
//!
//! Each model of the catalog (`default-config.yaml`) states its capabilities; a request that
//! uses one the model lacks gets Bedrock's `ValidationException`.
//!
//! * **InvokeModel bodies** (also InvokeModelWithResponseStream, CountTokens'
//!   `invokeModel` input and batch records): each family's native body, read into a
//!   Converse request so every rule below applies to it too. A body that breaks its
//!   family's schema (unknown keys included) is `Malformed input request: #: extraneous key
//!   [KEY] is not permitted, please reformat your input and try again.`, every violation
//!   listed one after the other.
//!   - **Anthropic** (`anthropic.*`): the Messages body (`anthropic_version`, `max_tokens`,
//!     `messages`, ...), answered `{id, type: message, role, model, content, stop_reason,
//!     stop_sequence, usage}` and streamed as Anthropic's events (`message_start`, ...,
//!     `message_stop`).
//!   - **Amazon Nova** (`amazon.nova-*`): `{schemaVersion?: messages-v1, system?: [{text} |
//!     {cachePoint}], messages: [{role, content: [{text} | {image} | {video} | {toolUse} |
//!     {toolResult} | {cachePoint}]}], inferenceConfig?: {maxTokens | max_new_tokens,
//!     temperature, topP | top_p, topK | top_k, stopSequences}, toolConfig?: {tools,
//!     toolChoice?}}` with base64 media, answered `{output: {message: {role, content}},
//!     stopReason, usage: {inputTokens, outputTokens, totalTokens,
//!     cacheReadInputTokenCount, cacheWriteInputTokenCount}}`; streamed as one chunk per
//!     event: `{messageStart: {role}}`, `{contentBlockStart}` (tool calls),
//!     `{contentBlockDelta: {delta: {text} | {toolUse: {input}}, contentBlockIndex}}`,
//!     `{contentBlockStop}`, `{messageStop: {stopReason}}`, `{metadata: {usage, metrics,
//!     trace}}` (which carries `amazon-bedrock-invocationMetrics`).
//!   - **Meta Llama 3** (`meta.llama3*`): `{prompt, max_gen_len?, temperature?, top_p?}`;
//!     the prompt is one user turn, the chat template's markers read as line breaks.
//!     Answered `{generation, prompt_token_count, generation_token_count, stop_reason:
//!     stop|length}`; streamed as such chunks, one a token (`prompt_token_count` on the
//!     first only, `stop_reason` null until the last, which carries
//!     `amazon-bedrock-invocationMetrics`).
//!   - **Other chat models** (Mistral, Cohere Command, Titan Text): not their real bodies
//!     but the emulator's stand-in `{prompt, max_tokens?, temperature?, top_p?, stop?}`
//!     (`inputText` and `max_gen_len` taken for `prompt` and `max_tokens`), answered and
//!     streamed in Llama's shape.
//! * **Capabilities** (`ModelSpec`): `vision`, `documents`, `citations`, `reasoning`,
//!   `forced_tool_choice` (default on), `service_tiers` (default `[default]`),
//!   `latency_optimized`, `extended_cache_ttl` (1h cache checkpoints). Old config files
//!   load unchanged: every capability has a default.
//! * **Tool choice**: `toolChoice.any` / `.tool` on a model without forced choice (Llama 3.1,
//!   Cohere) is refused. Claude, choosing a tool of its own accord (`auto`), first writes
//!   "I'll use the NAME tool." (block 0) and calls the tool in block 1; forced choices and
//!   other providers call the tool straight away. A last user message naming a tool makes
//!   the model call it.
//! * **Images** (user messages only): png, jpeg, gif or webp whose magic bytes match the
//!   format, at most 3.75 MB each and 20 a request; `s3Location` is refused (only batch
//!   jobs read S3). Tool results' images are checked the same way.
//! * **Documents** (user messages only): pdf, csv, doc, docx, xls, xlsx, html, txt or md;
//!   at most 4.5 MB each and 5 a request; names of 1 to 200 characters that are
//!   alphanumeric, whitespace (never two in a row), hyphens, parentheses or square
//!   brackets; a PDF starts with `%PDF`. Text documents count tokens by their text and
//!   their text goes through the request's guardrail; binary ones cost 50 tokens a KB.
//! * **Citations** (`citations.enabled` on a document, models with `citations`): the answer
//!   is a `citationsContent` block with one citation per such document, quoting a sentence
//!   of it: `documentChar` (text; the quote is exactly characters `[start, end)`),
//!   `documentPage` (PDF, page 1) or `documentChunk` (`content` source). ConverseStream
//!   sends the text as text deltas, then each citation as a `citation` delta.
//! * **Extended thinking** (`additionalModelRequestFields.thinking`, models with
//!   `reasoning`): Anthropic's rules (budget at least 1,024 and below `maxTokens`,
//!   temperature 1 only, `topP` at least 0.95, no `top_k`, no forced tool choice). The
//!   answer opens with a signed `reasoningContent` block (its tokens are output tokens);
//!   reasoning sent back must carry its signature, and with thinking on, the last assistant
//!   message that calls tools must open with its reasoning. Anthropic models refuse
//!   `additionalModelRequestFields` keys other than `top_k`, `anthropic_beta` and `thinking`.
//! * **serviceTier** must be one the model serves (Nova: default, flex, priority; Claude:
//!   default) and is echoed in the response and the stream's `metadata` (`default` when
//!   the request names none). **performanceConfig** `optimized` needs a latency-optimized
//!   model (Claude 3.5 Haiku, Nova Pro, Llama 3.1 70B) and is echoed when sent.
//! * **Prompt routers**: `arn:...:default-prompt-router/ID` and `.../prompt-router/ID` pick
//!   among `prompt_routers.ID` the first model for prompts under 500 input tokens, else the
//!   last (skipping models that refuse the request); `trace.promptRouter.invokedModelId`
//!   names the chosen model's inference profile, and usage is the chosen model's.
//! * **Prompt cache**: `cachePoint.ttl` `5m` (default) or `1h` (models with
//!   `extended_cache_ttl`; one-hour entries live an hour); a cache write reports
//!   `usage.cacheDetails: [{ttl, inputTokens}]`.
//! * **Guardrails** (`guardrailConfig`): input is checked first (only `guardContent` blocks
//!   when there are any); Converse output is checked whole. ConverseStream output is checked
//!   in chunks of about 200 characters: `sync` (default) holds each chunk until checked,
//!   masks ANONYMIZE matches and, on a BLOCK, sends the blocked message instead of the
//!   chunk; `async` sends chunks at once, cannot mask, and stops after the chunk that
//!   broke a rule with the blocked message. Any intervention ends with
//!   `guardrail_intervened`. With `trace: enabled`, `trace.guardrail` lists
//!   `inputAssessment` and `outputAssessments` with each finding's action (`BLOCKED`,
//!   `ANONYMIZED`, or `NONE` where async mode could not mask).
//! * **Contextual grounding** (ApplyGuardrail, `source: OUTPUT` only): a guardrail's
//!   `contextual_grounding: {grounding_threshold, relevance_threshold}` runs a check per
//!   threshold. Text blocks' `qualifiers` say what they are: `grounding_source`, `query`,
//!   or `guard_content` (also a block without qualifiers; only these go through the other
//!   policies; any other qualifier is a ValidationException). GROUNDING (needs a grounding source) is the share of the guarded text's
//!   words found in the source, RELEVANCE (needs a query) the share of the query's words
//!   found in the guarded text; words are lower-cased, common stop words left out, scores
//!   rounded to two decimals. A score below its threshold blocks (`GUARDRAIL_INTERVENED`,
//!   the blocked output message); `assessments[].contextualGroundingPolicy.filters` lists
//!   every check run as `{type, threshold, score, action: BLOCKED|NONE, detected}`, and
//!   `usage.contextualGroundingPolicyUnits` is charged.
//! * **Embedding models** (`kind: embedding`) answer InvokeModel only: Converse and
//!   ConverseStream say "This action doesn't support the model that you provided. Try again
//!   with a supported text or chat model.", InvokeModelWithResponseStream "The model is
//!   unsupported for streaming.", and CountTokens refuses them too. A body is checked against
//!   the model's schema and every violation is listed in one error, one after the other:
//!   `Malformed input request: #: required key [texts] not found#: extraneous key
//!   [inputText] is not permitted, please reformat your input and try again.` (also
//!   `#/dimensions: 300 is not a valid enum value`, `#/normalize: expected type: Boolean,
//!   found: String`, `#/texts: expected maximum item count: 96, found: 97`, ...). Chat models
//!   refuse embedding bodies the same way (extraneous keys).
//!   - **Titan Text Embeddings V2**: `inputText` of 1 to 50,000 characters and at most 8,192
//!     tokens (`400 Bad Request: Too many input tokens. Max input tokens: 8192, request input
//!     token count: N`); `dimensions` 256, 512 or 1024 (default); `normalize` (default true;
//!     off, the vector's norm is 1 + ln(1 + characters)); `embeddingTypes` `float` and/or
//!     `binary` (0 or 1 per dimension, the sign of the float). `embedding` always holds the
//!     floats; `embeddingsByType` the types asked for.
//!   - **Cohere Embed v3** (english, multilingual): 1 to 96 `texts` of at most 2,048
//!     characters (a schema limit `truncate` does not lift) and `input_type` required. A text
//!     over the model's 512 tokens is refused (`Input is too long for requested model.`)
//!     unless `truncate` is `START` (keep the end) or `END` (keep the start). Without
//!     `embedding_types` the answer is `embeddings_floats` (`[[float]]`), else
//!     `embeddings_by_type` with `float`, `int8`, `uint8`, `binary` and `ubinary` (the last
//!     two pack eight dimensions a byte, first dimension in the top bit).
//!   - **Cohere Embed v4**: v3's body plus `output_dimension` 256, 512, 1024 or 1536
//!     (default), `max_tokens` (1 to 128,000, the per-text limit), and `truncate` `LEFT` and
//!     `RIGHT` as well; it always answers by type (`float` when none is named).
//!   - Images (`images`, v4's `inputs`, `input_type: image`) are refused. Vectors are
//!     deterministic per model, text and size, and texts sharing words or word pieces get
//!     closer vectors than unrelated ones; `input_type` does not change a vector. Usage is in
//!     InvokeModel's headers: input tokens summed over the texts (after truncation), 0 output
//!     tokens, and the latency. Faults, counters and recorded requests work as for any model.
//! * **Knowledge Bases** (Agents for Amazon Bedrock Runtime, same endpoint): config
//!   `knowledge_bases: {ID: {path, chunking: {strategy: fixed|headings, max_tokens: 300,
//!   overlap_percent: 20}}}`, or `knowledge_bases_dir` / `--knowledge-bases DIR` where each
//!   subfolder `DIR/ID/` is a knowledge base with the default chunking. `.md`, `.txt` and
//!   `.html` files (tags stripped) are read at the first query and kept in memory (the admin
//!   reset forgets them, so edited files are read again); `FILE.metadata.json` holds
//!   Bedrock's `{"metadataAttributes": {...}}`. `fixed` cuts windows of whole words of at
//!   most `max_tokens` tokens (four characters a token), each starting `overlap_percent` of
//!   the previous window's words before its end; `headings` first splits at Markdown
//!   heading lines. A chunk's location is `s3://{ID}/{path in the folder}` and its metadata
//!   the sidecar's attributes plus `x-amz-bedrock-kb-source-uri`, `-chunk-id` and
//!   `-data-source-id`.
//!   - **IDs**: a knowledge base ARN (`arn:aws:bedrock:REGION:ACCOUNT:knowledge-base/ID`)
//!     names its ID. An unknown ID of Bedrock's shape (ten letters or digits) is a 404
//!     ResourceNotFoundException, any other unknown one a ValidationException quoting the
//!     identifier's pattern; configured or folder names outside the pattern (`quarry-docs`)
//!     are served all the same.
//!   - **Retrieve** (`POST /knowledgebases/{ID}/retrieve`): `retrievalQuery.text` of at most
//!     20,000 characters; `numberOfResults` 1 to 100 (default 5); `overrideSearchType`
//!     `SEMANTIC` (default) scores `(cosine + 1) / 2` of the Titan V2 space's vectors
//!     (512 dimensions), `HYBRID` `0.7 x` that `+ 0.3 x` the share of the query's words
//!     found in the chunk; results best first. `filter` takes `equals`, `notEquals`,
//!     `greaterThan(OrEquals)`, `lessThan(OrEquals)` (numbers), `in`, `notIn` (lists),
//!     `startsWith`, `stringContains` (strings; on a list attribute any member),
//!     `listContains`, and `andAll` / `orAll` of at least two filters; each filter object
//!     sets exactly one operator. A key the chunk lacks passes only `notEquals` and
//!     `notIn`. `rerankingConfiguration` is accepted and changes nothing; no `nextToken` is
//!     returned. Constraint violations are
//!     `1 validation error detected: Value '0' at
//!     'retrievalConfiguration.vectorSearchConfiguration.numberOfResults' failed to satisfy
//!     constraint: ...`. Faults, counters and recorded requests use the knowledge base ID.
//!   - **RetrieveAndGenerate** (`POST /retrieveAndGenerate`, `type: KNOWLEDGE_BASE` only):
//!     `input.text` of at most 1,000 characters, `sessionId` 2 to 100 of
//!     `[0-9a-zA-Z._:-]`; `modelArn` must resolve like a model ID; the answer joins the first sentence of each
//!     of the top three passages, and each sentence is a citation whose `span` covers
//!     characters `start..=end` of `output.text` and whose reference is the passage. The
//!     request's `sessionId` is echoed, else a new one is made.
//! * **Batch inference jobs** (`POST /model-invocation-job`, `GET /model-invocation-job/{id
//!   or ARN}`, `GET /model-invocation-jobs`, `POST /model-invocation-job/{id}/stop`): the
//!   request's constraints are the API model's (`jobName` `[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}`,
//!   an IAM role ARN, `s3://` URIs, `timeoutDurationInHours` 24 to 168, default 168), all
//!   violations listed in one ValidationException; `modelId` must match the API model's
//!   pattern (a foundation-model ARN names no version, an inference-profile ARN is refused;
//!   `us.`-style profile IDs pass), resolve like a model ID
//!   and name a model with `batch` (default on; Cohere's models are off). Job IDs are twelve
//!   lowercase letters or digits; `clientRequestToken` returns the job it first created.
//!   A job goes `Submitted`, `Validating` (reads its input), `Scheduled`, `InProgress`, each
//!   phase `batch.step_ms` long (100 ms), and ends `Completed`, `PartiallyCompleted` (some
//!   records failed), `Failed` (the input is unreadable: no `.jsonl` file, a line that is
//!   not JSON or lacks a `modelInput` object; fewer than `batch.min_records` records;
//!   `message` says why), `Stopped` (StopModelInvocationJob shows `Stopping` until the next
//!   phase; stopping an ended job is a ValidationException) or `Expired`. Get and List
//!   report `totalRecordCount`, `processedRecordCount`, `successRecordCount` and
//!   `errorRecordCount` once the input is read; List filters by `statusEquals`,
//!   `nameContains`, `submitTimeAfter/Before`, newest first unless `sortOrder=Ascending`,
//!   `maxResults` 1 to 1,000 with a `nextToken`.
//!   - **S3**: unsigned path-style requests to `batch.s3_endpoint`, else
//!     `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` (moto). The input `s3Uri` is a
//!     `.jsonl` object or a prefix (every `.jsonl` under it); each line is `{"recordId"?,
//!     "modelInput": <InvokeModel body>}`, a missing `recordId` becoming `RECORD00001`,
//!     ... (eleven characters, numbered across the job). For each input file `F` the job
//!     writes `{output s3Uri}/{jobId}/F.out` (F relative to the input prefix), a line per
//!     record in input order: `{"recordId", "modelInput", "modelOutput"}` where
//!     `modelOutput` is InvokeModel's answer, or `{"recordId", "modelInput", "error":
//!     {"errorCode", "errorMessage"}}` when InvokeModel refuses the record (its status and
//!     message) or a fault fails it; then `{jobId}/manifest.json.out`: `{totalRecordCount,
//!     processedRecordCount, successRecordCount, errorRecordCount, inputTokenCount,
//!     outputTokenCount}`. The files exist before the job reports it ended. Model faults
//!     and latency apply to each record as to a live call; records are not counted as
//!     InvokeModel calls.
//!   - **Faults** (`batch.faults` in the config, or `POST /_emulator/batch/faults` with
//!     any of the same keys; `DELETE` clears them, the admin reset restores the
//!     configured ones and forgets every job): `fail_record_ids: [..]` and `fail_every: N`
//!     make those records (the Nth, 2Nth, ... of a job) error lines with
//!     `record_error_code` (400) and `record_error_message`; `fail_next_jobs: N` fails the
//!     next N jobs after validation with `job_failure_message`; `expire_next_jobs: N`
//!     makes the next N jobs end `Expired`.
//!   - Config `batch: {step_ms: 100, s3_endpoint, min_records: 0, region: us-east-1,
//!     account_id: "123456789012", faults: {...}}`. Operations are recorded and counted
//!     under the model ID (Create), the job ID (Get, Stop; also when named by ARN) or `*` (List).
//! * **Application inference profiles** (`POST /inference-profiles`, `GET` and `DELETE
//!   /inference-profiles/{ID or ARN}`, `GET /inference-profiles`, `POST /listTagsForResource`):
//!   CreateInferenceProfile checks the API model's constraints (`inferenceProfileName` 1 to 64
//!   of `([0-9a-zA-Z][ _-]?)+`, `description` 1 to 200, `clientRequestToken`,
//!   `modelSource.copyFrom` a foundation-model or system-defined inference-profile ARN, at
//!   most 200 `tags`), all violations in one ValidationException; `copyFrom` must resolve like
//!   a model ID. It answers 201 `{inferenceProfileArn, status: ACTIVE}`, the ARN
//!   `arn:aws:bedrock:{caller's region}:{account_id}:application-inference-profile/{twelve
//!   lowercase letters or digits}`; a name in use is a ConflictException (400, as in the API
//!   model) and a `clientRequestToken` seen before returns the profile it created. Get (by ID
//!   or ARN) answers `{inferenceProfileName, description, createdAt, updatedAt,
//!   inferenceProfileArn, models: [{modelArn}], inferenceProfileId, status: ACTIVE, type:
//!   APPLICATION}`; a profile copied from a system-defined one lists that profile's regions'
//!   foundation models. System-defined profiles (`us.`, `eu.`, `global.`, ... before a model
//!   of the catalog) answer Get too, with `type: SYSTEM_DEFINED`. ListInferenceProfiles
//!   (`type` query parameter, `typeEquals` in the SDKs) lists only system-defined profiles
//!   when no type is given, as Bedrock does: those of the caller's geography and `global.`;
//!   `APPLICATION` lists the created ones, oldest first; `maxResults` 1 to 1,000 with a
//!   `nextToken`. Delete of an unknown profile is a ResourceNotFoundException;
//!   ListTagsForResource returns a profile's tags. Converse, ConverseStream, InvokeModel,
//!   InvokeModelWithResponseStream and CountTokens take a profile's ARN (URL-encoded in the
//!   path) and answer as the model it copied; a deleted or unknown profile is a
//!   ResourceNotFoundException. Such calls are recorded under the ARN (`model_id`) and counted
//!   under the base model and the profile (`EmulatorState::calls_via_profile`, the admin
//!   `calls` answer's `profiles`). The admin reset forgets every created profile; the config's
//!   `application_inference_profiles` (ARN -> base model) are served as before.
//! * **Regions**: the region of a call is the one its SigV4 `Authorization` header's
//!   credential scope names (`Credential=AKID/DATE/us-west-2/bedrock/aws4_request`; the
//!   signature is not checked), or the config's `region` (default `us-east-1`) for unsigned
//!   calls; batch records run in `batch.region`. Every recorded request carries its `region`,
//!   calls are counted per region (`EmulatorState::calls_in_region`, the admin `calls`
//!   answer's `regions`), and faults can be limited to one region: `region_faults: {REGION:
//!   {MODEL or *: {...}}}` in the config, `"region"` in `POST /_emulator/faults`, or
//!   `--fault-region`. A call meets, in order, its region's faults for its model, its
//!   region's `*` faults, the model's faults and the `*` ones; the first that fails the call
//!   ends the walk, delays add up.
//! * **Steering the model**: a line `Repeat: TEXT` in the last user message makes the answer
//!   exactly TEXT (to put PII in the output, say); the `stop_reason` fault still ends any
//!   answer with the stop reason it names.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emulator = bedrock_emulator::start(bedrock_emulator::EmulatorConfig::builtin(), "127.0.0.1:0").await?;
//! println!("{}", emulator.url());
//! # Ok(()) }
//! ```

pub mod admin;
pub mod batch;
pub mod calls;
pub mod catalog;
pub mod citations;
pub mod config;
pub mod content;
pub mod control;
pub mod converse;
pub mod embedding;
pub mod error;
pub mod eventstream;
pub mod faults;
pub mod generate;
pub mod grounding;
pub mod guarded;
pub mod guardrail;
pub mod invoke;
pub mod knowledge;
pub mod output;
pub mod profiles;
pub mod provisioned;
pub mod reasoning;
pub mod region;
pub mod render;
pub mod request;
pub mod router;
pub mod routes;
pub mod server;
pub mod serving;
pub mod state;
pub mod tally;
pub mod tools;
pub mod validate;

use std::net::SocketAddr;
use std::sync::Arc;

pub use config::{EmbeddingBody, EmulatorConfig, Latency, ModelKind, ModelSpec};
pub use error::{BedrockError, ErrorKind};
pub use faults::FaultSpec;
pub use output::StopReason;
pub use state::EmulatorState;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running emulator. Dropping it stops the server.
pub struct RunningEmulator {
    addr: SocketAddr,
    state: Arc<EmulatorState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl RunningEmulator {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: the value for `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` (and
    /// `AWS_ENDPOINT_URL_BEDROCK`, for batch inference jobs).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Counters, faults and configuration, for tests running in the same process.
    pub fn state(&self) -> &Arc<EmulatorState> {
        &self.state
    }

    /// Stops accepting connections and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Waits until the server ends (it ends when stopped, or on a fatal accept error).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves in a background task.
pub async fn start(
    config: EmulatorConfig,
    addr: impl ToSocketAddrs,
) -> std::io::Result<RunningEmulator> {
    let listener = TcpListener::bind(addr).await?;
    serve(config, listener)
}

/// Serves on an already bound listener.
pub fn serve(config: EmulatorConfig, listener: TcpListener) -> std::io::Result<RunningEmulator> {
    let addr = listener.local_addr()?;
    let state = Arc::new(EmulatorState::new(config));
    let app = server::router(state.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "bedrock-emulator server stopped");
        }
    });
    Ok(RunningEmulator {
        addr,
        state,
        shutdown: Some(tx),
        task: Some(task),
    })
}
