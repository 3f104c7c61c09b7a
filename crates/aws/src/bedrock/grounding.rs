//! The grounding check on Bedrock's ApplyGuardrail: the passages, the question and the
//! answer as one OUTPUT assessment with the `grounding_source`, `query` and `guard_content`
//! qualifiers; the contextual grounding policy's scores are read back.

use async_trait::async_trait;
use aws_sdk_bedrockruntime::types as bt;
use quarry_core::guardrails::BedrockGuardrail;
use quarry_core::ports::{Dependency, GroundingChecker, StoreError};
use quarry_core::retrieval::GroundingScores;

use super::BedrockModels;
use crate::sdk::describe;

fn block(
    text: &str,
    qualifier: bt::GuardrailContentQualifier,
) -> Result<bt::GuardrailContentBlock, StoreError> {
    bt::GuardrailTextBlock::builder()
        .text(text)
        .qualifiers(qualifier)
        .build()
        .map(bt::GuardrailContentBlock::Text)
        .map_err(|e| StoreError::invalid(Dependency::Bedrock, "grounding check", e.to_string()))
}

#[async_trait]
impl GroundingChecker for BedrockModels {
    async fn score(
        &self,
        guardrail: &BedrockGuardrail,
        source: &str,
        query: &str,
        answer: &str,
    ) -> Result<GroundingScores, StoreError> {
        use bt::GuardrailContentQualifier as Q;
        let out = self
            .client()
            .apply_guardrail()
            .guardrail_identifier(&guardrail.id)
            .guardrail_version(&guardrail.version)
            .source(bt::GuardrailContentSource::Output)
            .content(block(source, Q::GroundingSource)?)
            .content(block(query, Q::Query)?)
            .content(block(answer, Q::GuardContent)?)
            .customize()
            .mutate_request(super::trace_header())
            .send()
            .await
            .map_err(|e| {
                StoreError::unavailable(Dependency::Bedrock, "grounding check", describe(&e))
            })?;
        let mut grounding = None;
        let mut relevance = None;
        for filter in out
            .assessments()
            .iter()
            .filter_map(|a| a.contextual_grounding_policy())
            .flat_map(|p| p.filters())
        {
            match filter.r#type() {
                bt::GuardrailContextualGroundingFilterType::Grounding => {
                    grounding = Some(filter.score())
                }
                bt::GuardrailContextualGroundingFilterType::Relevance => {
                    relevance = Some(filter.score())
                }
                _ => {}
            }
        }
        match (grounding, relevance) {
            (Some(grounding), relevance) => Ok(GroundingScores {
                grounding,
                // A guardrail that checks grounding only: relevance is not judged.
                relevance: relevance.unwrap_or(1.0),
            }),
            (None, _) => Err(StoreError::invalid(
                Dependency::Bedrock,
                "grounding check",
                format!(
                    "guardrail '{}' version {} returned no grounding score: give it a contextual grounding policy",
                    guardrail.id, guardrail.version
                ),
            )),
        }
    }
}
