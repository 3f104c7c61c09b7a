//! Quarry's adapters on the AWS SDK: the core's ports implemented with Bedrock Runtime,
//! Bedrock Agent Runtime, SSM, DynamoDB, SQS and SNS. Endpoints come from the SDK's standard environment variables
//! only (see [`sdk::load`]). This is what the Lambdas link: a Lambda starts with
//! [`bootstrap::init`] and takes its adapters from [`ports_from_sdk`]. Operator tooling
//! (config push, prompt admin, tenants, provisioning) lives in `quarry-admin`.

pub mod audit;
pub mod bedrock;
pub mod bootstrap;
pub mod budgets;
pub mod bulk;
pub mod document;
pub mod dynamo_cache;
pub mod embedding_cache;
pub mod feedback;
pub mod image_fetch;
pub mod inference_profiles;
pub mod jobs;
pub mod json_items;
pub mod knowledge;
pub mod ledger;
pub mod ports;
pub mod queues;
pub mod reservations;
pub mod results;
pub mod sdk;
pub mod settings;
pub mod sns;
pub mod ssm;
pub mod traces;

pub use bootstrap::Bootstrap;
pub use ports::{SdkPorts, ports_from_sdk};
pub use settings::Settings;
