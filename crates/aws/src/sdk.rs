//! Loading the AWS SDK configuration. Endpoints come only from the SDK's standard variables
//! (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, ...) and profile settings, which
//! aws-config resolves itself: production code has no test switch.

use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};

/// The configuration every Lambda and the CLI start from: the process environment.
pub async fn load() -> SdkConfig {
    load_with(aws_config::defaults(BehaviorVersion::latest())).await
}

/// The same, from a loader the caller prepared (the CLI's explicit endpoint flags, tests'
/// simulated environment).
pub async fn load_with(loader: ConfigLoader) -> SdkConfig {
    loader.load().await
}

/// An SDK error with its whole chain of causes, for logs and messages.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(e).to_string()
}
