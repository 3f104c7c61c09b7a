//! cost-alarm: runs on an EventBridge schedule (every 5 minutes) and on SNS messages
//! carrying CloudWatch alarm state changes. Each run:
//!
//! 1. replays the ledger spill (usage whose DynamoDB write failed), each record once, and
//!    the audit spill (audit records Firehose did not take), reporting what still waits;
//! 2. computes every tenant's month-to-date spend from the ledger and writes its budget
//!    state (`ok`, `warning`, `degraded`, `blocked`) with the reason;
//! 3. notifies once per threshold crossing per month, and once per hour of runaway spend
//!    (the last hour above N times the trailing hourly average).
//!
//! A malformed event never fails the invocation: it is logged and the run goes on.

pub mod trigger;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use chrono::{DateTime, Duration as Span, Utc};
use lambda_runtime::LambdaEvent;
use quarry_aws::bootstrap::Metrics;
use quarry_aws::budgets::DynamoBudgets;
use quarry_aws::ledger::{Buckets, DynamoLedger, LedgerReader, hour_pk, month_pk};
use quarry_aws::{SdkPorts, Settings, ports_from_sdk};
use quarry_core::budget::{BudgetLevel, Budgets, evaluate, percent, reached};
use quarry_core::config::Configs;
use quarry_core::ports::{BudgetStore, Notifier};
use quarry_core::pricing::MicroUsd;
use serde::Serialize;
use serde_json::{Value, json};

pub use trigger::{Trigger, classify};

/// What one invocation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub triggers: Vec<Trigger>,
    pub replayed: usize,
    pub replay_duplicates: usize,
    pub replay_left: usize,
    /// Audit records delivered from the audit spill, and still waiting there.
    pub audit_replayed: usize,
    pub audit_waiting: u64,
    pub tenants: Vec<TenantReport>,
    pub notifications: Vec<String>,
    /// Budget states that changed in this run: `tenant: warning -> blocked at 134%`.
    pub transitions: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantReport {
    pub tenant: String,
    pub level: BudgetLevel,
    pub spend_usd: String,
    pub reason: String,
}

pub struct CostAlarm {
    configs: Configs,
    reader: Arc<LedgerReader>,
    ledger: Arc<DynamoLedger>,
    audit: Arc<quarry_aws::audit::FirehoseAudit>,
    budgets: Arc<DynamoBudgets>,
    notifier: Arc<dyn Notifier>,
    stage: String,
}

/// Notices are kept past the month they concern.
const NOTICE_RETENTION: Duration = Duration::from_secs(40 * 24 * 3600);

impl CostAlarm {
    pub fn from_sdk(sdk: &SdkConfig, settings: &Settings) -> Self {
        Self::from_sdk_ports(&ports_from_sdk(sdk, settings))
    }

    /// Of the shared bundle: the parameters (read fresh on every run), the ledger and its
    /// reader, the budget states and the alerts topic.
    pub fn from_sdk_ports(ports: &SdkPorts) -> Self {
        Self {
            configs: Configs::new(
                ports.params(),
                &ports.settings().param_prefix,
                Duration::ZERO,
            ),
            reader: ports.ledger_reader(),
            ledger: ports.ledger(),
            audit: ports.audit(),
            budgets: ports.budgets(),
            notifier: ports.alerts(),
            stage: ports.settings().stage.clone(),
        }
    }

    /// One Lambda invocation: the run, then its metrics flushed before the summary is
    /// returned (Lambda may freeze the process once it is sent).
    pub async fn invoke(
        &self,
        metrics: &Metrics,
        event: LambdaEvent<Value>,
    ) -> Result<Value, lambda_runtime::Error> {
        let summary = self.handle(&event.payload, Utc::now()).await;
        metrics.flush();
        Ok(serde_json::to_value(summary)?)
    }

    /// Handles one invocation's event, at `now`.
    pub async fn handle(&self, event: &Value, now: DateTime<Utc>) -> Summary {
        let mut summary = Summary {
            triggers: classify(event),
            ..Summary::default()
        };
        for t in &summary.triggers {
            match t {
                Trigger::Malformed { reason } => tracing::warn!(%reason, "malformed event ignored"),
                Trigger::Unknown => tracing::warn!("unrecognised event ignored"),
                Trigger::Alarm(a) => {
                    tracing::info!(alarm = %a.alarm_name, state = %a.new_state, "alarm state change")
                }
                Trigger::Schedule { .. } => tracing::info!("scheduled run"),
            }
        }
        match self.ledger.replay_spill(20).await {
            Ok((counted, duplicates, left)) => {
                summary.replayed = counted;
                summary.replay_duplicates = duplicates;
                summary.replay_left = left;
            }
            Err(e) => summary.errors.push(format!("spill replay: {e}")),
        }
        match self.audit.replay_spill(20).await {
            Ok((delivered, _)) => summary.audit_replayed = delivered,
            Err(e) => summary.errors.push(format!("audit spill replay: {e}")),
        }
        // What still waits is a metric, so an alarm can say records are not arriving.
        match self.audit.waiting().await {
            Ok(n) => {
                summary.audit_waiting = n;
                quarry_core::telemetry::gauge("AuditSpillWaiting", n as f64);
            }
            Err(e) => summary.errors.push(format!("audit spill depth: {e}")),
        }
        if let Err(e) = self.evaluate(now, &mut summary).await {
            summary.errors.push(e);
        }
        for e in &summary.errors {
            tracing::error!(error = %e, "cost-alarm step failed");
        }
        summary
    }

    /// Every tenant's state. Tenants are evaluated one by one: a tenant whose figures cannot
    /// be read is reported in `errors` and the others still run. Memory stays bounded: per
    /// tenant, the total and the configured features only (never every feature a caller
    /// named).
    async fn evaluate(&self, now: DateTime<Utc>, summary: &mut Summary) -> Result<(), String> {
        let Some(budgets) = self.configs.budgets().await.map_err(|e| e.to_string())? else {
            return Ok(());
        };
        let month = Buckets::of(now.timestamp_millis()).month;
        let mut tenants: BTreeSet<String> = budgets.tenants.keys().cloned().collect();
        match self.configs.tenants().await {
            Ok(directory) => tenants.extend(directory.tenants.keys().cloned()),
            Err(e) => summary.errors.push(format!(
                "tenant directory unreadable ({e}): only tenants with a budget evaluated, and the global spend may be low"
            )),
        }
        let mut spend: BTreeMap<String, MicroUsd> = BTreeMap::new();
        for t in &tenants {
            // What bulk jobs hold (estimates awaiting their results) counts as spent: a
            // budget their results would pass refuses online work before they land.
            let held = self
                .reader
                .get(&quarry_aws::reservations::reserved_pk(t), "TOTAL")
                .await;
            match (self.reader.get(&month_pk(t, &month), "TOTAL").await, held) {
                (Ok(totals), Ok(held)) => {
                    spend.insert(
                        t.clone(),
                        MicroUsd(totals.cost_micro.saturating_add(held.cost_micro)),
                    );
                }
                (_, Err(e)) => summary
                    .errors
                    .push(format!("{t}: bulk holds unreadable ({e}); not evaluated")),
                (Err(e), _) => summary
                    .errors
                    .push(format!("{t}: spend unreadable ({e}); not evaluated")),
            }
        }
        let global: MicroUsd = spend.values().copied().sum();
        for (tenant, tenant_spend) in &spend {
            match self
                .evaluate_tenant(
                    &budgets,
                    tenant,
                    &month,
                    *tenant_spend,
                    global,
                    now,
                    summary,
                )
                .await
            {
                Ok(report) => summary.tenants.push(report),
                Err(e) => summary.errors.push(format!("{tenant}: {e}")),
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn evaluate_tenant(
        &self,
        budgets: &Budgets,
        tenant: &str,
        month: &str,
        tenant_spend: MicroUsd,
        global: MicroUsd,
        now: DateTime<Utc>,
        summary: &mut Summary,
    ) -> Result<TenantReport, String> {
        let mut features: BTreeMap<String, MicroUsd> = BTreeMap::new();
        for feature in budgets
            .tenants
            .get(tenant)
            .into_iter()
            .flat_map(|b| b.features.keys())
        {
            let totals = self
                .reader
                .get(&month_pk(tenant, month), &format!("FEATURE#{feature}"))
                .await
                .map_err(|e| e.to_string())?;
            features.insert(feature.clone(), MicroUsd(totals.cost_micro));
        }
        // Per-key limits: the spend of every key of the tenant this month.
        let mut keys: BTreeMap<String, MicroUsd> = BTreeMap::new();
        if budgets
            .tenants
            .get(tenant)
            .is_some_and(|b| b.per_key.is_some())
        {
            for (key, totals) in self
                .reader
                .list(&month_pk(tenant, month), "KEY#")
                .await
                .map_err(|e| e.to_string())?
            {
                keys.insert(key, MicroUsd(totals.cost_micro));
            }
        }
        let state = evaluate(
            budgets,
            tenant,
            month,
            tenant_spend,
            &features,
            &keys,
            global,
        );
        let before = self
            .budgets
            .state(tenant)
            .await
            .map_err(|e| e.to_string())?
            .filter(|s| s.month == month)
            .map_or(BudgetLevel::Ok, |s| s.level);
        self.budgets
            .set_state(tenant, &state)
            .await
            .map_err(|e| e.to_string())?;
        // Each transition is a line an operator can find: who, from, to, and at what spend.
        if before != state.level {
            let used = budgets
                .tenants
                .get(tenant)
                .map(|b| format!(" at {}%", percent(tenant_spend, b.monthly_usd.0)))
                .unwrap_or_default();
            tracing::warn!(
                %tenant,
                from = ?before,
                to = ?state.level,
                spend_usd = %tenant_spend.to_usd_string(),
                reason = %state.reason,
                "tenant {tenant}: {} -> {}{used}",
                level_name(before),
                level_name(state.level)
            );
            summary.transitions.push(format!(
                "{tenant}: {} -> {}{used}",
                level_name(before),
                level_name(state.level)
            ));
        }
        if let Some(b) = budgets.tenants.get(tenant) {
            for threshold in reached(b, tenant_spend) {
                let key = format!("{month}#threshold#{threshold}");
                if self
                    .budgets
                    .first_notice(tenant, &key, NOTICE_RETENTION)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    let subject = format!(
                        "Quarry {}: {tenant} reached {threshold}% of its budget",
                        self.stage
                    );
                    let message = json!({
                        "type": "budget_threshold", "stage": self.stage, "tenant": tenant, "month": month,
                        "threshold_percent": threshold, "spend_usd": tenant_spend.to_usd_string(),
                        "limit_usd": b.monthly_usd.0.to_usd_string(), "state": state.level, "reason": state.reason,
                    });
                    self.send(tenant, &key, &subject, &message, summary).await;
                }
            }
        }
        self.runaway(budgets, tenant, now, summary).await?;
        Ok(TenantReport {
            tenant: tenant.to_owned(),
            level: state.level,
            spend_usd: tenant_spend.to_usd_string(),
            reason: state.reason,
        })
    }

    /// The last complete hour against the average of the 24 before it.
    async fn runaway(
        &self,
        budgets: &Budgets,
        tenant: &str,
        now: DateTime<Utc>,
        summary: &mut Summary,
    ) -> Result<(), String> {
        let hour = |back: i64| Buckets::of((now - Span::hours(back)).timestamp_millis()).hour;
        let last_hour = hour(1);
        let last = self
            .reader
            .get(&hour_pk(tenant, &last_hour), "TOTAL")
            .await
            .map_err(|e| e.to_string())?
            .cost_micro;
        if last < budgets.runaway_min_usd.0.0 {
            return Ok(());
        }
        let mut trailing = 0u64;
        for back in 2..=25 {
            trailing += self
                .reader
                .get(&hour_pk(tenant, &hour(back)), "TOTAL")
                .await
                .map_err(|e| e.to_string())?
                .cost_micro;
        }
        let average = trailing / 24;
        let key = format!("runaway#{last_hour}");
        if last > average.saturating_mul(u64::from(budgets.runaway_factor))
            && self
                .budgets
                .first_notice(tenant, &key, NOTICE_RETENTION)
                .await
                .map_err(|e| e.to_string())?
        {
            let message = json!({
                "type": "runaway_spend", "stage": self.stage, "tenant": tenant, "hour": last_hour,
                "last_hour_usd": MicroUsd(last).to_usd_string(), "trailing_hourly_average_usd": MicroUsd(average).to_usd_string(),
                "factor": budgets.runaway_factor,
            });
            let subject = format!("Quarry {}: runaway spend for {tenant}", self.stage);
            self.send(tenant, &key, &subject, &message, summary).await;
        }
        Ok(())
    }

    /// Sends a notification whose notice was just taken; if sending fails the notice is
    /// given back, so the next run tries again rather than the alert being lost.
    async fn send(
        &self,
        tenant: &str,
        key: &str,
        subject: &str,
        message: &Value,
        summary: &mut Summary,
    ) {
        match self.notifier.notify(subject, message).await {
            Ok(()) => {
                tracing::info!(%tenant, %key, %subject, "notification sent");
                summary.notifications.push(subject.to_owned());
            }
            Err(e) => {
                if let Err(forget) = self.budgets.forget_notice(tenant, key).await {
                    summary
                        .errors
                        .push(format!("notice '{key}' not released: {forget}"));
                }
                summary
                    .errors
                    .push(format!("notification '{subject}' not sent: {e}"));
            }
        }
    }
}

fn level_name(level: BudgetLevel) -> &'static str {
    match level {
        BudgetLevel::Ok => "ok",
        BudgetLevel::Warning => "warning",
        BudgetLevel::Degraded => "degraded",
        BudgetLevel::Blocked => "blocked",
    }
}
