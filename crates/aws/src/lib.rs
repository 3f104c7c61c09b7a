//! Quarry's adapters on the AWS SDK: the core's ports implemented with Bedrock Runtime,
//! SSM, DynamoDB, SQS and SNS. Endpoints come from the SDK's standard environment variables
//! only (see [`sdk::load`]).

pub mod bedrock;
pub mod budgets;
pub mod document;
pub mod dynamo_cache;

pub mod infra;
pub mod jobs;
pub mod ledger;

pub mod prompt_admin;
pub mod provision;
pub mod results;

pub mod sdk;
pub mod settings;
pub mod sns;
pub mod ssm;
pub mod tenants;

pub use settings::Settings;
