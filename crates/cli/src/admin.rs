//! Operator commands on a stage's configuration: `quarry config push` (infra/ to SSM),
//! `quarry tenants` and `quarry keys` (the tenant directory, a SecureString).

use std::path::PathBuf;

use clap::Subcommand;
use quarry_admin::infra::{InfraSources, push_config, push_prompts};
use quarry_admin::tenants::{new_api_key, write};
use quarry_aws::ssm::SsmParams;
use quarry_core::params::ParamError;
use quarry_core::ports::ParameterStore;
use quarry_core::tenancy::{KeyEntry, TenantDirectory, TenantPolicy, hash_key};

use crate::aws::AwsArgs;
use crate::tenant_policy::{PolicyEdit, diff};

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate infra/ and push routing, pricing, budgets, experiments and prompts (only
    /// changed values get a new version).
    Push {
        #[arg(long, default_value = "infra")]
        infra: PathBuf,
    },
}

pub async fn config(args: ConfigArgs) -> Result<(), String> {
    let ConfigCommand::Push { infra } = args.command;
    let sources = InfraSources::load(&infra).map_err(|e| e.to_string())?;
    let settings = args.aws.settings();
    let ssm = args.aws.ssm().await;
    let mut pushed = push_config(&ssm, &settings, &sources)
        .await
        .map_err(|e| e.to_string())?;
    pushed.extend(
        push_prompts(&ssm, &settings, &sources.prompts)
            .await
            .map_err(|e| e.to_string())?,
    );
    for p in pushed {
        let what = if p.changed {
            format!("version {}", p.version)
        } else {
            format!("unchanged (version {})", p.version)
        };
        println!("{:<48} {what}", p.name);
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct TenantsArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: TenantsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Tenants and their keys (labels and hash prefixes; keys themselves are never stored).
    List,
    /// Create or update a tenant's policy: fields not named keep their values (`--clear
    /// FIELD` removes one); prints what changed.
    Set {
        tenant: String,
        #[command(flatten)]
        edit: Box<PolicyEdit>,
    },
    /// Remove a tenant and every key of it.
    Remove { tenant: String },
}

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for a tenant; it is printed once and stored only as its SHA-256.
    Create {
        tenant: String,
        /// A name for the key (to revoke it later).
        #[arg(long)]
        label: String,
        #[arg(long)]
        admin: bool,
    },
    /// Revoke keys by label.
    Revoke { label: String },
}

async fn load(ssm: &SsmParams, name: &str) -> Result<TenantDirectory, String> {
    match ssm.get(name, true).await {
        Ok(p) => serde_json::from_str(&p.value)
            .map_err(|e| format!("{name} is not a tenant directory: {e}")),
        Err(ParamError::NotFound(_)) => Ok(TenantDirectory::default()),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn tenants(args: TenantsArgs) -> Result<(), String> {
    let settings = args.aws.settings();
    let ssm = args.aws.ssm().await;
    let mut dir = load(&ssm, &settings.param("tenants")).await?;
    match args.command {
        TenantsCommand::List => {
            for (tenant, policy) in &dir.tenants {
                // Every field of the policy, as stored.
                let fields = serde_json::to_string(policy).map_err(|e| e.to_string())?;
                println!("{tenant}: {fields}");
                for (hash, key) in dir.keys.iter().filter(|(_, k)| &k.tenant == tenant) {
                    let role = if key.operator {
                        "operator"
                    } else if key.admin {
                        "admin"
                    } else {
                        "key"
                    };
                    println!(
                        "  {role} {} (sha256 {}...)",
                        key.label.as_deref().unwrap_or("-"),
                        hash.get(..12).unwrap_or(hash)
                    );
                }
            }
            if !dir.operators.is_empty() {
                println!("operators (IAM): {}", dir.operators.join(", "));
            }
            return Ok(());
        }
        TenantsCommand::Set { tenant, edit } => {
            quarry_core::tenancy::check_tenant_name(&tenant)?;
            let before = dir.tenants.get(&tenant).cloned();
            let mut policy = before.clone().unwrap_or_else(|| TenantPolicy {
                allowed_tiers: vec!["*".into()],
                ..TenantPolicy::default()
            });
            let profiles = edit.inference_profiles;
            (*edit).apply(&mut policy)?;
            if profiles {
                crate::tenant_profiles::create(&args.aws, &tenant, &mut policy).await?;
            }
            let changes = diff(before.as_ref(), &policy);
            dir.tenants.insert(tenant.clone(), policy);
            match (before.is_none(), changes.is_empty()) {
                (true, _) => println!("tenant {tenant} created"),
                (false, true) => {
                    println!("tenant {tenant}: no change");
                    return Ok(());
                }
                (false, false) => println!("tenant {tenant} updated"),
            }
            for change in changes {
                println!("  {change}");
            }
        }
        TenantsCommand::Remove { tenant } => {
            let Some(policy) = dir.tenants.get(&tenant) else {
                return Err(format!("no tenant {tenant}"));
            };
            crate::tenant_profiles::delete(&args.aws, policy).await?;
            dir.tenants.remove(&tenant);
            dir.keys.retain(|_, k| k.tenant != tenant);
            println!("tenant {tenant} and its keys removed");
        }
    }
    write(&ssm, &settings, &dir)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

pub async fn keys(args: KeysArgs) -> Result<(), String> {
    let settings = args.aws.settings();
    let ssm = args.aws.ssm().await;
    let mut dir = load(&ssm, &settings.param("tenants")).await?;
    match args.command {
        KeysCommand::Create {
            tenant,
            label,
            admin,
        } => {
            if !dir.tenants.contains_key(&tenant) {
                return Err(format!(
                    "no tenant {tenant}: create it with `quarry tenants set {tenant}`"
                ));
            }
            if dir
                .keys
                .values()
                .any(|k| k.label.as_deref() == Some(label.as_str()))
            {
                return Err(format!(
                    "a key labelled {label} exists: labels name keys for revocation, use another"
                ));
            }
            let key = new_api_key();
            dir.keys.insert(
                hash_key(&key),
                KeyEntry {
                    tenant: tenant.clone(),
                    admin,
                    operator: false,
                    label: Some(label.clone()),
                },
            );
            write(&ssm, &settings, &dir)
                .await
                .map_err(|e| e.to_string())?;
            println!("API key (tenant {tenant}, label {label}): {key}");
            eprintln!("Store it now: only its SHA-256 is kept.");
        }
        KeysCommand::Revoke { label } => {
            let before = dir.keys.len();
            dir.keys
                .retain(|_, k| k.label.as_deref() != Some(label.as_str()));
            if dir.keys.len() == before {
                return Err(format!("no key labelled {label}"));
            }
            write(&ssm, &settings, &dir)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "revoked {} key(s) labelled {label}",
                before - dir.keys.len()
            );
        }
    }
    Ok(())
}
