//! `quarry dev`: the local stack in one command.
//!
//! 1. moto server (from `.venv`, on a free loopback port) unless `--aws-endpoint` is given;
//! 2. the Bedrock emulator (in this process, free port) unless `--bedrock-endpoint` is given;
//! 3. the stage's tables, queues, topic and parameters (as template.yaml declares them),
//!    `infra/` pushed, two demo tenants (`acme`, `globex`) with fresh API keys;
//! 4. `quarry serve` as a child whose environment holds only the SDK's standard endpoint
//!    variables, like a Lambda's.
//!
//! Ctrl-C stops every child: moto also exits by itself when this process's pipe to it closes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssm::config::Credentials;
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use quarry_admin::infra::{InfraSources, push_config, push_prompts};
use quarry_aws::Settings;
use quarry_aws::ssm::SsmParams;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Port of the API on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Use this AWS endpoint (a running moto, LocalStack, ...) instead of starting moto.
    #[arg(long)]
    pub aws_endpoint: Option<String>,
    /// Use this Bedrock Runtime endpoint instead of starting the emulator.
    #[arg(long)]
    pub bedrock_endpoint: Option<String>,
    /// Stage name: resource names and the parameter prefix derive from it.
    #[arg(long, default_value = "dev")]
    pub stage: String,
    /// Directory of routing.yaml, pricing.yaml, budgets.yaml and prompts/.
    #[arg(long, default_value = "infra")]
    pub infra: PathBuf,
}

const DEMO_TENANTS: [&str; 2] = ["acme", "globex"];

fn python() -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("QUARRY_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let p = PathBuf::from(".venv/bin/python");
    if p.exists() {
        Ok(p)
    } else {
        Err("no Python with moto: run `make dev` (it creates .venv), or give --aws-endpoint".into())
    }
}

/// Starts moto; returns its URL and the child (which exits when its stdin closes).
async fn start_moto(infra: &Path) -> Result<(String, Child), String> {
    let script = infra.join("local/moto_server.py");
    let mut child = Command::new(python()?)
        .arg(&script)
        .arg("0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start moto ({}): {e}", script.display()))?;
    let stdout = child.stdout.take().ok_or("moto has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .next_line()
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let url = line
        .strip_prefix("moto listening on ")
        .ok_or_else(|| format!("moto did not start (it said {line:?})"))?
        .to_owned();
    Ok((url, child))
}

async fn start_emulator(infra: &Path, aws_url: &str) -> Result<RunningEmulator, String> {
    let file = infra.join("local/emulator.yaml");
    let mut config = if file.exists() {
        EmulatorConfig::from_file(&file).map_err(|e| e.to_string())?
    } else {
        EmulatorConfig::builtin()
    };
    // The sample Knowledge Bases (`infra/knowledge-bases/{id}/`), unless the file names its own.
    let corpus = infra.join("knowledge-bases");
    if config.knowledge_bases_dir.is_none() && corpus.is_dir() {
        config.knowledge_bases_dir = Some(corpus);
    }
    // Batch inference jobs read their input from, and write their output to, the same S3.
    if config.batch.s3_endpoint.is_none() {
        config.batch.s3_endpoint = Some(aws_url.to_owned());
    }
    bedrock_emulator::start(config, "127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot start the Bedrock emulator: {e}"))
}

pub async fn run(args: DevArgs) -> Result<(), String> {
    let sources = InfraSources::load(&args.infra).map_err(|e| e.to_string())?;
    let (aws_url, moto) = match &args.aws_endpoint {
        Some(url) => (url.clone(), None),
        None => {
            let (url, child) = start_moto(&args.infra).await?;
            (url, Some(child))
        }
    };
    let (bedrock_url, _emulator) = match &args.bedrock_endpoint {
        Some(url) => (url.clone(), None),
        None => {
            let e = start_emulator(&args.infra, &aws_url).await?;
            (e.url(), Some(e))
        }
    };

    let settings = Settings::for_stage(&args.stage);
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&aws_url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "quarry-dev",
        ))
        .load()
        .await;
    quarry_admin::provision::provision(&sdk, &settings)
        .await
        .map_err(|e| e.to_string())?;
    let ssm = SsmParams::new(&sdk);
    push_config(&ssm, &settings, &sources)
        .await
        .map_err(|e| e.to_string())?;
    let pushed = push_prompts(&ssm, &settings, &sources.prompts)
        .await
        .map_err(|e| e.to_string())?;
    // The demo prompts are labelled `prod`, so requests that name the label (the README's
    // first example) work on a fresh stack.
    let admin = quarry_admin::prompt_admin::PromptAdmin::new(&ssm, &settings);
    for (spec, p) in sources.prompts.iter().zip(&pushed) {
        admin
            .promote(&spec.name, p.version, "prod")
            .await
            .map_err(|e| e.to_string())?;
    }
    // The demo tenants may retrieve from every Knowledge Base routing.yaml declares.
    let knowledge_bases: Vec<String> = sources.routing.knowledge_bases.keys().cloned().collect();
    let keys = quarry_admin::tenants::seed(&ssm, &settings, &DEMO_TENANTS, &knowledge_bases)
        .await
        .map_err(|e| e.to_string())?;

    let exe = std::env::current_exe().map_err(|e| format!("cannot find the quarry binary: {e}"))?;
    let mut serve = Command::new(&exe);
    serve
        .arg("serve")
        .arg("--exit-on-stdin-close")
        .arg("--port")
        .arg(args.port.to_string())
        .env("AWS_ENDPOINT_URL", &aws_url)
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", &bedrock_url)
        // The one Bedrock endpoint serves Agent Runtime (Retrieve) and the control plane too.
        .env("AWS_ENDPOINT_URL_BEDROCK_AGENT_RUNTIME", &bedrock_url)
        .env("AWS_ENDPOINT_URL_BEDROCK", &bedrock_url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env("QUARRY_STAGE", &settings.stage)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if std::env::var("QUARRY_GROUNDING_GUARDRAIL").is_err() && args.bedrock_endpoint.is_none() {
        // The emulator's guardrail with a contextual grounding policy.
        serve.env("QUARRY_GROUNDING_GUARDRAIL", "quarrygrounding:DRAFT");
    }
    if std::env::var("QUARRY_CONFIG_MAX_AGE_SECS").is_err() {
        // Short locally, so a pushed prompt or label shows within seconds.
        serve.env("QUARRY_CONFIG_MAX_AGE_SECS", "5");
    }
    // Bulk jobs locally: the emulator's batch jobs finish in seconds, so the tracker runs and
    // polls every few seconds; the role is the stack's in AWS, any valid ARN here.
    for (key, value) in [
        ("QUARRY_BULK_TRACKER_INTERVAL_SECS", "2"),
        ("QUARRY_BULK_POLL_SECS", "2"),
        (
            "QUARRY_BATCH_ROLE_ARN",
            "arn:aws:iam::000000000000:role/quarry-dev-batch",
        ),
    ] {
        if std::env::var(key).is_err() {
            serve.env(key, value);
        }
    }
    if std::env::var("QUARRY_COST_ALARM_INTERVAL_SECS").is_err() {
        serve.env("QUARRY_COST_ALARM_INTERVAL_SECS", "60");
    }
    let mut child = serve
        .spawn()
        .map_err(|e| format!("cannot start quarry serve: {e}"))?;
    // Held until we return: its closing is what stops the server if this process dies.
    // (Child::wait would close it, so it must not stay inside the Child.)
    let _serve_stdin = child.stdin.take();
    let stdout = child.stdout.take().ok_or("quarry serve has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let listening = loop {
        match lines.next_line().await.map_err(|e| e.to_string())? {
            Some(line) if line.starts_with("Quarry listening on ") => break line,
            Some(line) => println!("{line}"),
            None => {
                return Err("quarry serve exited before listening (see its errors above)".into());
            }
        }
    };
    let base = listening
        .trim_start_matches("Quarry listening on ")
        .to_owned();
    println!("{listening}");
    for k in &keys {
        if k.admin {
            println!("Admin API key (tenant {}): {}", k.tenant, k.key);
        } else {
            println!("API key (tenant {}): {}", k.tenant, k.key);
        }
    }
    println!("AWS endpoint (moto): {aws_url}");
    println!("Bedrock endpoint: {bedrock_url}");
    println!(
        "Evaluate: {} eval --aws-endpoint {aws_url} --bedrock-endpoint {bedrock_url} --stage {} run --prompt summarize --set infra/evals/summarize.jsonl (the emulator answers with filler text: a failed gate here is expected)",
        exe.display(),
        settings.stage
    );
    if let Some(key) = keys.first().map(|k| &k.key) {
        println!(
            "Try: curl -s {base}/v1/chat -H 'Authorization: Bearer {key}' -H 'content-type: application/json' -d '{{\"messages\":[{{\"role\":\"user\",\"content\":\"Hello, Quarry!\"}}]}}'"
        );
        println!(
            "Try retrieval (Knowledge Base QUARRYDOCS, as acme): curl -s {base}/v1/chat -H 'Authorization: Bearer {key}' -H 'content-type: application/json' -d '{{\"prompt\":\"docs-qa\",\"variables\":{{\"question\":\"How much does Acme pay per sensor?\"}}}}'"
        );
    }
    println!("Ctrl-C stops everything.");
    let _ = std::io::stdout().flush();

    // Keep forwarding the server's output until it ends or we are told to stop.
    let forward = async {
        while let Ok(Some(line)) = lines.next_line().await {
            println!("{line}");
        }
    };
    tokio::select! {
        _ = crate::serve::shutdown() => {}
        _ = forward => {}
        status = child.wait() => {
            if let Ok(s) = status && !s.success() {
                eprintln!("quarry serve exited: {s}");
            }
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    if let Some(mut m) = moto {
        let _ = m.start_kill();
        let _ = m.wait().await;
    }
    Ok(())
}
