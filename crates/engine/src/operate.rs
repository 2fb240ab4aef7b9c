//! Operator actions, for the admin API and the CLI: pausing and resuming flows, runs on demand,
//! editing and bulk-retrying dead letters, checks of the configured systems, and the access
//! tokens of the admin API. Every action that changes something is written to the audit log
//! with who did it (a token name or `cli:<os user>`).

use crate::work::{RunRequest, flow_key};
use crate::{Engine, EngineError};
use chrono::Utc;
use erpsync_connectors::ReadRequest;
use erpsync_model::{Checkpoint, envelope};
use erpsync_store::{
    ApiToken, DeadLetter, DeadLetterFilter, DeadLetterId, DeadLetterStatus, FlowPause, JobId, NewApiToken,
    NewAuditEntry, StoreError, TokenRole,
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Prefix of every token secret, so that a leaked one is recognizable (secret scanners, logs).
const TOKEN_PREFIX: &str = "erpsync_";
/// How long a system check waits for the system to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Most dead letters one bulk retry takes on; the rest wait for the next request.
pub const MAX_BULK_RETRY: u32 = 1000;

/// A configured system and the flows that use it.
#[derive(Debug, Clone, Serialize)]
pub struct SystemSummary {
    pub name: String,
    /// The connector type (`files`, `http`, `shopify`, ...).
    pub connector: String,
    /// Flows reading from it.
    pub source_of: Vec<String>,
    /// Flows writing to it.
    pub target_of: Vec<String>,
    pub receives_webhooks: bool,
}

/// The result of checking one system: each check, and whether all passed.
#[derive(Debug, Clone, Serialize)]
pub struct SystemHealth {
    pub system: String,
    pub healthy: bool,
    pub checks: Vec<SystemCheck>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemCheck {
    /// What was checked: `read products`, `build the connector`, ...
    pub check: String,
    pub ok: bool,
    pub detail: String,
    pub milliseconds: u64,
}

/// A new token with its secret, which is shown once and stored nowhere.
pub struct IssuedToken {
    pub token: ApiToken,
    pub secret: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is never printed, not even by a stray `{:?}`.
        f.debug_struct("IssuedToken").field("token", &self.token).finish_non_exhaustive()
    }
}

/// What one retry of a bulk retry did.
#[derive(Debug, Clone, Serialize)]
pub struct RetryResult {
    pub id: DeadLetterId,
    pub resolved: bool,
    /// Why it still fails, or why it could not be retried.
    pub error: Option<String>,
}

impl Engine {
    /// Names of the flows an operator paused.
    pub async fn paused_flow_names(&self) -> Result<HashSet<String>, EngineError> {
        Ok(self.store().paused_flows().await?.into_iter().map(|pause| pause.flow).collect())
    }

    /// Pauses a flow: the scheduler and webhooks start no run of it until it is resumed; a
    /// run already going finishes. `false` when it was paused already.
    pub async fn pause_flow(&self, flow: &str, actor: &str, reason: &str) -> Result<bool, EngineError> {
        self.flow_config(flow)?;
        let now = Utc::now();
        let pause = FlowPause {
            flow: flow.to_string(),
            paused_by: actor.to_string(),
            reason: reason.to_string(),
            paused_at: now,
        };
        let changed = self.store().pause_flow(&pause).await?;
        self.audit(
            actor,
            "flow.pause",
            &format!("flow:{flow}"),
            serde_json::json!({ "reason": reason, "changed": changed }),
        )
        .await?;
        Ok(changed)
    }

    /// Resumes a paused flow. `false` when it was not paused.
    pub async fn resume_flow(&self, flow: &str, actor: &str) -> Result<bool, EngineError> {
        self.flow_config(flow)?;
        let changed = self.store().resume_flow(flow).await?;
        self.audit(actor, "flow.resume", &format!("flow:{flow}"), serde_json::json!({ "changed": changed })).await?;
        Ok(changed)
    }

    /// Queues a run of `flow` for `serve` to pick up, as the scheduler does: incremental from
    /// the checkpoint, or with `full` a full resync that reads everything. Refused for a
    /// disabled or paused flow, and when a run of it is queued or going already.
    pub async fn enqueue_run(&self, flow: &str, full: bool, actor: &str) -> Result<JobId, EngineError> {
        let config = self.flow_config(flow)?;
        let action = if full { format!("resync flow {flow:?}") } else { format!("run flow {flow:?}") };
        if !config.enabled {
            return Err(EngineError::Refused { action, reason: "it is disabled in the configuration".into() });
        }
        if let Some(pause) = self.store().paused_flows().await?.into_iter().find(|pause| pause.flow == flow) {
            return Err(EngineError::Refused {
                action,
                reason: format!("it was paused by {} ({}); resume it first", pause.paused_by, pause.reason),
            });
        }
        // One queued request per flow until a run of it starts: the dedupe id names the flow's
        // latest run, so it changes once the queued request is taken up.
        let latest = self.store().list_runs(Some(flow), 1).await?.first().map(|run| run.id).unwrap_or_default();
        let request = RunRequest::pull(flow, "manual", full);
        let published = self.publish_run(flow_key(flow), &request, format!("manual:{flow}:{latest}")).await?;
        let erpsync_queue::Published::Published { id } = published else {
            return Err(EngineError::AlreadyRunning {
                flow: flow.to_string(),
                job_id: 0,
                state: "queued".to_string(),
                owner: String::new(),
            });
        };
        let job_id: JobId = id.parse().unwrap_or_default();
        let what = if full { "flow.resync" } else { "flow.run" };
        self.audit(actor, what, &format!("flow:{flow}"), serde_json::json!({ "job_id": job_id })).await?;
        Ok(job_id)
    }

    /// Replaces the payload of an unresolved dead letter, for a retry to use. The payload must
    /// be a record in erpsync's versioned form (`{"v":1,"record":{...}}`), which is what a
    /// retry processes.
    pub async fn edit_dead_letter_payload(
        &self,
        id: DeadLetterId,
        payload: &serde_json::Value,
        actor: &str,
    ) -> Result<DeadLetter, EngineError> {
        let letter = self.store().dead_letter(id).await?.ok_or(EngineError::DeadLetterNotFound { id })?;
        let action = format!("edit dead letter {id}");
        if matches!(letter.status, DeadLetterStatus::Resolved | DeadLetterStatus::Discarded) {
            return Err(EngineError::Refused { action, reason: format!("it is {}", letter.status.as_str()) });
        }
        let bytes = serde_json::to_vec(payload).map_err(|error| EngineError::Refused {
            action: action.clone(),
            reason: format!("the payload cannot be serialized: {error}"),
        })?;
        if let Err(error) = envelope::from_slice(&bytes) {
            return Err(EngineError::Refused {
                action,
                reason: format!(
                    "the payload is not a record in the versioned form {{\"v\":1,\"record\":...}}: {error}"
                ),
            });
        }
        self.store().update_dead_letter_payload(id, payload, &format!("payload edited by {actor}")).await?;
        self.audit(
            actor,
            "dead_letter.edit",
            &format!("dead_letter:{id}"),
            serde_json::json!({ "flow": letter.flow, "source_id": letter.source_id }),
        )
        .await?;
        self.store().dead_letter(id).await?.ok_or(EngineError::DeadLetterNotFound { id })
    }

    /// Retries many dead letters: those named by `ids`, or else every open one (of `flow` if
    /// given), at most [`MAX_BULK_RETRY`]. Each retry is audited on its own.
    pub async fn retry_dead_letters(
        &self,
        ids: &[DeadLetterId],
        flow: Option<&str>,
        actor: &str,
    ) -> Result<Vec<RetryResult>, EngineError> {
        let ids: Vec<DeadLetterId> = if ids.is_empty() {
            if let Some(flow) = flow {
                self.flow_config(flow)?;
            }
            self.store()
                .list_dead_letters(&DeadLetterFilter {
                    flow: flow.map(str::to_string),
                    status: Some(DeadLetterStatus::Open),
                    limit: MAX_BULK_RETRY,
                })
                .await?
                .into_iter()
                .map(|letter| letter.id)
                .collect()
        } else {
            ids.iter().copied().take(MAX_BULK_RETRY as usize).collect()
        };
        let mut results = Vec::with_capacity(ids.len());
        for id in ids {
            let result = match self.retry_dead_letter(id, actor).await {
                Ok(summary) if summary.counts.failed == 0 && summary.error.is_none() => {
                    RetryResult { id, resolved: true, error: None }
                }
                Ok(summary) => {
                    let reason = match self.store().dead_letter(id).await? {
                        Some(letter) => letter.error,
                        None => summary.error.unwrap_or_default(),
                    };
                    RetryResult { id, resolved: false, error: Some(reason) }
                }
                // The store failing is not about this letter: stop and say so.
                Err(EngineError::Store(error)) => return Err(error.into()),
                Err(error) => RetryResult { id, resolved: false, error: Some(error.to_string()) },
            };
            results.push(result);
        }
        Ok(results)
    }

    /// Every configured system with the flows that use it.
    pub fn systems(&self) -> Vec<SystemSummary> {
        self.config()
            .systems
            .iter()
            .map(|(name, system)| SystemSummary {
                name: name.clone(),
                connector: system.type_name().to_string(),
                source_of: self.config().flows.values().filter(|f| &f.source == name).map(|f| f.name.clone()).collect(),
                target_of: self.config().flows.values().filter(|f| &f.target == name).map(|f| f.name.clone()).collect(),
                receives_webhooks: matches!(system.build_webhook_receiver(name), Ok(Some(_))),
            })
            .collect()
    }

    /// Checks one system: for each entity a flow reads from it, reads one record from the
    /// start (a read, never a write); for a system that is only written to, builds its
    /// connector, which resolves its settings and secrets.
    pub async fn check_system(&self, system: &str) -> Result<SystemHealth, EngineError> {
        let config = self
            .config()
            .systems
            .get(system)
            .ok_or_else(|| EngineError::UnknownSystem { flow: String::new(), system: system.to_string() })?;
        let mut checks = Vec::new();
        let mut read_entities = BTreeSet::new();
        for flow in self.config().flows.values().filter(|flow| flow.source == system) {
            if !read_entities.insert(flow.entity) {
                continue;
            }
            let started = Instant::now();
            let check = format!("read {}", flow.entity);
            let outcome = match self.source(flow, system) {
                Err(error) => Err(error.to_string()),
                Ok(source) => {
                    let checkpoint = Checkpoint::default();
                    let request = ReadRequest { entity: flow.entity, checkpoint: &checkpoint, page_size: 1 };
                    match tokio::time::timeout(CHECK_TIMEOUT, source.read_page(&request)).await {
                        Ok(Ok(page)) => Ok(format!("answered with {} record(s)", page.records.len())),
                        Ok(Err(error)) => Err(error.to_string()),
                        Err(_) => Err(format!("no answer within {} seconds", CHECK_TIMEOUT.as_secs())),
                    }
                }
            };
            checks.push(system_check(check, outcome, started));
        }
        if let Some(flow) = self.config().flows.values().find(|flow| flow.target == system) {
            let started = Instant::now();
            let outcome = self
                .sink(flow, system)
                .map(|_| "settings and secrets resolve; writes are not tried".to_string())
                .map_err(|error| error.to_string());
            checks.push(system_check("build the writing connector".into(), outcome, started));
        }
        if checks.is_empty() {
            let started = Instant::now();
            let outcome = config
                .build_source(system)
                .map(|_| "settings and secrets resolve; no flow uses this system".to_string())
                .map_err(|error| error.to_string());
            checks.push(system_check("build the connector".into(), outcome, started));
        }
        Ok(SystemHealth { system: system.to_string(), healthy: checks.iter().all(|check| check.ok), checks })
    }

    /// Creates an access token of the admin API. The secret is returned once; only its
    /// SHA-256 digest is stored.
    pub async fn create_token(&self, name: &str, role: TokenRole, actor: &str) -> Result<IssuedToken, EngineError> {
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
        if !valid_name {
            return Err(EngineError::Refused {
                action: format!("create token {name:?}"),
                reason: "a name has 1 to 64 letters, digits, '-', '_', '.' or '@'".into(),
            });
        }
        // rand's thread generator is a CSPRNG seeded from the operating system.
        let random: [u8; 32] = rand::random();
        let secret = format!("{TOKEN_PREFIX}{}", hex::encode(random));
        let token = self
            .store()
            .create_api_token(&NewApiToken {
                name: name.to_string(),
                role,
                secret_hash: token_hash(&secret),
                created_by: actor.to_string(),
                created_at: Utc::now(),
            })
            .await?;
        self.audit(actor, "token.create", &format!("token:{name}"), serde_json::json!({ "role": role.as_str() }))
            .await?;
        Ok(IssuedToken { token, secret })
    }

    /// Revokes the active token called `name`; `false` when there is none.
    pub async fn revoke_token(&self, name: &str, actor: &str) -> Result<bool, EngineError> {
        let revoked = self.store().revoke_api_token(name, Utc::now()).await?;
        if revoked {
            self.audit(actor, "token.revoke", &format!("token:{name}"), serde_json::json!({})).await?;
        }
        Ok(revoked)
    }

    /// The active token whose secret is `presented`, if any. Every active token's digest is
    /// compared in constant time, and all of them are compared, so the time taken says
    /// nothing about how close a guess came.
    pub async fn authenticate(&self, presented: &str) -> Result<Option<ApiToken>, EngineError> {
        let presented = token_hash(presented);
        let mut found = None;
        for token in self.store().api_tokens(false).await? {
            if bool::from(token.secret_hash.ct_eq(&presented)) {
                found = Some(token);
            }
        }
        Ok(found)
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.store()
            .audit(&NewAuditEntry {
                actor: actor.to_string(),
                action: action.to_string(),
                target: target.to_string(),
                details,
                at: Utc::now(),
            })
            .await
    }
}

fn token_hash(secret: &str) -> [u8; 32] {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&digest);
    hash
}

fn system_check(check: String, outcome: Result<String, String>, started: Instant) -> SystemCheck {
    let milliseconds = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(detail) => SystemCheck { check, ok: true, detail, milliseconds },
        Err(detail) => SystemCheck { check, ok: false, detail, milliseconds },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_are_sha256_of_the_whole_secret() {
        // SHA-256 of "abc", from FIPS 180-2.
        assert_eq!(hex::encode(token_hash("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
