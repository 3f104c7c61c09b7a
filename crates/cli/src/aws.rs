//! The AWS connection of the operator commands: the environment (profiles, SSO, roles),
//! or `--aws-endpoint` for a local stack (moto under `make dev`).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_ssm::config::Credentials;
use quarry_aws::Settings;

#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// Stage: the parameters under /quarry/{stage}, the tables and queues named for it.
    #[arg(long, default_value = "dev", env = "QUARRY_STAGE", global = true)]
    pub stage: String,
    /// An AWS endpoint to use instead of the environment's (e.g. the moto URL `make dev`
    /// prints); local test credentials are used when none are set.
    #[arg(long, env = "QUARRY_AWS_ENDPOINT", global = true)]
    pub aws_endpoint: Option<String>,
    /// A Bedrock Runtime endpoint to use instead of the environment's (e.g. the emulator URL
    /// `make dev` prints); only `quarry eval` and gated promotion call models.
    #[arg(long, env = "QUARRY_BEDROCK_ENDPOINT", global = true)]
    pub bedrock_endpoint: Option<String>,
    /// The KMS key that encrypts SecureString parameters (the tenant directory): the stack's
    /// customer-managed key (output `KmsKeyAlias`). SSM's `aws/ssm` key when unset.
    #[arg(long, env = "QUARRY_KMS_KEY_ID", global = true)]
    pub kms_key_id: Option<String>,
    /// The Bedrock guardrail that scores grounding (`ID:VERSION`), for prompts whose
    /// grounding check names none (`quarry dev`'s emulator: `quarrygrounding:DRAFT`).
    #[arg(long, env = "QUARRY_GROUNDING_GUARDRAIL", global = true)]
    pub grounding_guardrail: Option<String>,
}

impl AwsArgs {
    /// The parameter store, writing SecureStrings with `--kms-key-id`.
    pub async fn ssm(&self) -> quarry_aws::ssm::SsmParams {
        quarry_aws::ssm::SsmParams::new(&self.sdk().await).with_kms_key(self.kms_key_id.clone())
    }

    /// Where the operator commands read and write: for error messages.
    pub fn target(&self) -> String {
        match &self.aws_endpoint {
            Some(url) => format!("{url} (stage {})", self.stage),
            None => format!(
                "AWS (stage {}, the environment's account and region)",
                self.stage
            ),
        }
    }

    /// A failure to reach or read a dependency, as one plain line: what, where, why, and
    /// what to try.
    pub fn failure(&self, what: &str, error: &dyn std::fmt::Display) -> String {
        let error = error.to_string().replace(['\n', '\r'], " ");
        let hint = if error.contains("dispatch failure") || error.contains("onnection refused") {
            match &self.aws_endpoint {
                Some(_) => " — is `quarry dev` (or the stack behind --aws-endpoint) running?",
                None => {
                    " — check the credentials and region, or pass --aws-endpoint for a local stack"
                }
            }
        } else {
            ""
        };
        format!("cannot read {what} at {}: {error}{hint}", self.target())
    }

    pub fn settings(&self) -> Settings {
        let mut settings = Settings::for_stage(&self.stage);
        settings.grounding_guardrail = self.grounding_guardrail.clone();
        settings
    }

    /// The SDK configuration of SSM, DynamoDB and SQS: `--aws-endpoint` when given.
    pub async fn sdk(&self) -> SdkConfig {
        self.load(self.aws_endpoint.as_deref()).await
    }

    /// The SDK configuration of Bedrock Runtime: `--bedrock-endpoint` when given, else the
    /// environment's (`AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, or Bedrock itself). `--aws-endpoint`
    /// never applies: moto has no Bedrock.
    pub async fn bedrock_sdk(&self) -> SdkConfig {
        self.load(self.bedrock_endpoint.as_deref()).await
    }

    async fn load(&self, endpoint: Option<&str>) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(url) = endpoint {
            loader = loader.endpoint_url(url);
        }
        // A local stack: a region and test credentials unless the environment has them.
        if self.aws_endpoint.is_some() || endpoint.is_some() {
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err()
            {
                loader = loader.region(Region::new("us-east-1"));
            }
            if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
                loader = loader.credentials_provider(Credentials::new(
                    "testing",
                    "testing",
                    None,
                    None,
                    "quarry-local",
                ));
            }
        }
        quarry_aws::sdk::load_with(loader).await
    }
}
