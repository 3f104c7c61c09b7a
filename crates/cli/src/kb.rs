//! `quarry kb query`: what a Knowledge Base returns for a question, with scores, as a
//! prompt's retrieval would ask for it: for tuning `top_k`, `min_score` and filters.

use std::sync::Arc;
use std::time::Duration;

use clap::Subcommand;
use quarry_aws::knowledge::BedrockRetriever;
use quarry_core::ports::Retriever;
use quarry_core::retrieval::plan::tenant_clause;
use quarry_core::retrieval::spec::{MAX_TOP_K, check_filter, short_id, valid_id};
use quarry_core::retrieval::{RetrievalQuery, SearchType};
use serde_json::{Value, json};

use crate::aws::AwsArgs;

#[derive(Debug, clap::Args)]
pub struct KbArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: KbCommand,
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Retrieve passages for a question, best first, with their scores and sources.
    Query {
        /// The Knowledge Base ID (or ARN).
        kb: String,
        question: String,
        #[arg(long, default_value_t = 5)]
        top_k: u32,
        /// SEMANTIC or HYBRID (the Knowledge Base's default when absent).
        #[arg(long, value_parser = ["SEMANTIC", "HYBRID"])]
        search_type: Option<String>,
        /// A RetrievalFilter, as JSON.
        #[arg(long)]
        filter: Option<String>,
        /// Retrieve as this tenant would: with the tenant's filter clause when routing.yaml
        /// declares the Knowledge Base shared (read from the stage's parameters).
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: KbArgs) -> Result<(), String> {
    let KbCommand::Query {
        kb,
        question,
        top_k,
        search_type,
        filter,
        tenant,
        json: as_json,
    } = args.command;
    if !valid_id(&kb) {
        return Err(format!(
            "'{kb}' is not a Knowledge Base ID (10 letters and digits) or ARN"
        ));
    }
    if !(1..=MAX_TOP_K).contains(&top_k) {
        return Err(format!("--top-k must be 1 to {MAX_TOP_K}"));
    }
    let mut filter: Option<Value> = match filter {
        None => None,
        Some(f) => {
            let v: Value = serde_json::from_str(&f).map_err(|e| format!("--filter: {e}"))?;
            check_filter(&v, "--filter")?;
            Some(v)
        }
    };
    if let Some(tenant) = &tenant {
        let params = Arc::new(args.aws.ssm().await);
        let configs = quarry_core::config::Configs::new(
            params,
            &args.aws.settings().param_prefix,
            Duration::from_secs(60),
        );
        let routing = configs
            .routing()
            .await
            .map_err(|e| args.aws.failure("the routing configuration", &e))?;
        let entry = routing.knowledge_bases.get(short_id(&kb)).ok_or_else(|| {
            format!(
                "knowledge base '{}' is not declared in routing.yaml's knowledge_bases: no prompt can retrieve from it",
                short_id(&kb)
            )
        })?;
        if let Some(attribute) = &entry.tenant_attribute {
            let clause = tenant_clause(attribute, tenant);
            filter = Some(match filter {
                Some(f) => json!({"andAll": [f, clause]}),
                None => clause,
            });
        }
    }
    let query = RetrievalQuery {
        knowledge_base_id: kb.clone(),
        text: question,
        top_k,
        search_type: search_type.as_deref().map(|t| match t {
            "HYBRID" => SearchType::Hybrid,
            _ => SearchType::Semantic,
        }),
        filter,
        rerank: None,
    };
    let retriever = BedrockRetriever::new(&args.aws.bedrock_sdk().await);
    let passages = retriever
        .retrieve(&query, Duration::from_secs(30))
        .await
        .map_err(|e| format!("cannot retrieve from {kb}: {e}"))?;
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&passages).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    if passages.is_empty() {
        println!("no passages");
    }
    for (i, p) in passages.iter().enumerate() {
        let score = p.score.map_or("-".to_owned(), |s| format!("{s:.3}"));
        println!("{:>2}. {score}  {}", i + 1, p.uri.as_deref().unwrap_or("-"));
        let excerpt: String = p.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let short: String = excerpt.chars().take(160).collect();
        let more = if excerpt.chars().count() > 160 {
            "…"
        } else {
            ""
        };
        println!("    {short}{more}");
    }
    Ok(())
}
