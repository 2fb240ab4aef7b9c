//! Bulk operations: `bulkOperationRunQuery` exports a whole connection to JSONL (nested
//! connections flattened into lines that carry `__parentId`), `bulkOperationRunMutation` runs
//! one mutation per line of a staged JSONL upload. Both finish with `bulk_operations/finish`.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{Map, Value as Json, json};

use super::cost::is_connection;
use super::exec::{Context, Executor, gid, timestamp};
use super::graphql::{OperationKind, ResolvedField, parse, prepare};
use super::mutations::{self, Effect, MutationContext};
use super::server::Shared;

/// Bound on the lines of a bulk mutation file (the 20 MB cap bounds it too).
const MAX_MUTATION_LINES: usize = 1_000_000;

/// Flattens the rendered result of a bulk query into JSONL lines.
pub fn to_jsonl(fields: &[ResolvedField], data: &Json) -> (Vec<Json>, u64) {
    let mut lines = Vec::new();
    let mut roots = 0;
    for field in fields {
        let Some(value) = data.get(&field.key) else { continue };
        if !is_connection(field) {
            continue;
        }
        for (node, selections) in connection_nodes(field, value) {
            roots += 1;
            emit(node.clone(), selections, None, &mut lines);
        }
    }
    (lines, roots)
}

fn connection_nodes<'a>(field: &'a ResolvedField, value: &'a Json) -> Vec<(&'a Json, &'a [ResolvedField])> {
    let mut nodes = Vec::new();
    for selection in &field.selections {
        match selection.name.as_str() {
            "edges" => {
                for node_field in selection.selections.iter().filter(|s| s.name == "node") {
                    for edge in value.get(&selection.key).and_then(Json::as_array).into_iter().flatten() {
                        if let Some(node) = edge.get(&node_field.key) {
                            nodes.push((node, node_field.selections.as_slice()));
                        }
                    }
                }
            }
            "nodes" => {
                for node in value.get(&selection.key).and_then(Json::as_array).into_iter().flatten() {
                    nodes.push((node, selection.selections.as_slice()));
                }
            }
            _ => {}
        }
    }
    nodes
}

/// Writes a node, then the nodes of its nested connections as their own lines pointing back
/// with `__parentId`, as Shopify's JSONL does.
fn emit(mut node: Json, selections: &[ResolvedField], parent: Option<&str>, lines: &mut Vec<Json>) {
    let mut children: Vec<(Json, Vec<ResolvedField>)> = Vec::new();
    extract_connections(&mut node, selections, &mut children);
    if let (Some(parent), Json::Object(map)) = (parent, &mut node) {
        map.insert("__parentId".into(), json!(parent));
    }
    let id = node.get("id").and_then(Json::as_str).map(str::to_string);
    lines.push(node);
    for (child, child_selections) in children {
        emit(child, &child_selections, id.as_deref(), lines);
    }
}

fn extract_connections(value: &mut Json, selections: &[ResolvedField], out: &mut Vec<(Json, Vec<ResolvedField>)>) {
    let Json::Object(map) = value else { return };
    for selection in selections {
        if is_connection(selection) {
            if let Some(connection) = map.remove(&selection.key) {
                for (node, node_selections) in connection_nodes(selection, &connection) {
                    out.push((node.clone(), node_selections.to_vec()));
                }
            }
        } else if !selection.selections.is_empty()
            && let Some(inner) = map.get_mut(&selection.key)
        {
            extract_connections(inner, &selection.selections, out);
        }
    }
}

fn finish_payload(shared: &Shared, id: u64) -> Json {
    let state = shared.lock_state();
    let Some(operation) = state.bulk_operations.get(&id) else { return json!({}) };
    json!({
        "admin_graphql_api_id": gid("BulkOperation", id),
        "completed_at": operation.completed_at.map(timestamp),
        "created_at": timestamp(operation.created_at),
        "error_code": operation.error_code.as_ref().map(|c| c.to_lowercase()),
        "status": operation.status.to_lowercase(),
        "type": operation.kind.to_lowercase(),
    })
}

fn set_status(shared: &Shared, id: u64, status: &str) -> bool {
    let mut state = shared.lock_state();
    match state.bulk_operations.get_mut(&id) {
        Some(operation) if operation.status != "CANCELED" => {
            operation.status = status.into();
            true
        }
        _ => false,
    }
}

pub async fn run_query(shared: Arc<Shared>, id: u64) {
    // A short delay so that pollers see CREATED and RUNNING, as they would on Shopify.
    tokio::time::sleep(shared.config.bulk_step_delay).await;
    if !set_status(&shared, id, "RUNNING") {
        return;
    }
    tokio::time::sleep(shared.config.bulk_step_delay).await;
    let now = shared.clock.now();
    let outcome = {
        let state = shared.lock_state();
        let query = state.bulk_operations.get(&id).map(|b| b.query.clone()).unwrap_or_default();
        match parse(&query).and_then(|d| prepare(&d, None, &Map::new())) {
            Ok(prepared) => {
                let context = Context {
                    state: &state,
                    base_url: &shared.base_url,
                    shop_name: &shared.config.shop,
                    unbounded: true,
                };
                let mut executor = Executor::new(context);
                let data = executor.run_query(&prepared.fields);
                Ok(to_jsonl(&prepared.fields, &data))
            }
            Err(error) => Err(error.message),
        }
    };
    {
        let mut state = shared.lock_state();
        let Some(operation) = state.bulk_operations.get_mut(&id) else { return };
        if operation.status == "CANCELED" {
            return;
        }
        operation.completed_at = Some(now);
        match outcome {
            Ok((lines, roots)) => {
                let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                operation.object_count = lines.len() as u64;
                operation.root_object_count = roots;
                operation.file_size = Some(text.len() as u64);
                operation.result = if lines.is_empty() { None } else { Some(text) };
                operation.status = "COMPLETED".into();
            }
            Err(_) => {
                operation.status = "FAILED".into();
                operation.error_code = Some("INTERNAL_SERVER_ERROR".into());
            }
        }
    }
    let payload = finish_payload(&shared, id);
    shared.dispatch(vec![Effect::Webhook { topic: "bulk_operations/finish".into(), payload }], None);
}

pub async fn run_mutation(shared: Arc<Shared>, id: u64) {
    tokio::time::sleep(shared.config.bulk_step_delay).await;
    if !set_status(&shared, id, "RUNNING") {
        return;
    }
    let (mutation, upload) = {
        let state = shared.lock_state();
        let Some(operation) = state.bulk_operations.get(&id) else { return };
        let path = operation.result.clone().unwrap_or_default();
        (operation.query.clone(), state.staged_uploads.get(&path).cloned().unwrap_or_default())
    };
    let text = String::from_utf8_lossy(&upload).into_owned();
    let document = match parse(&mutation) {
        Ok(document) => document,
        Err(_) => return fail(&shared, id, "INVALID_MUTATION").await,
    };
    let partial_failure_rate = shared.lock_faults().partial_failure_rate;
    let version = shared.config.latest_version();
    let mut results = Vec::new();
    let mut effects = Vec::new();
    for (number, line) in text.lines().filter(|l| !l.trim().is_empty()).take(MAX_MUTATION_LINES).enumerate() {
        let variables = match serde_json::from_str::<Json>(line) {
            Ok(Json::Object(map)) => map,
            _ => {
                results.push(json!({"errors": [{"message": "Invalid JSON on this line"}], "__lineNumber": number}));
                continue;
            }
        };
        let prepared = match prepare(&document, None, &variables) {
            Ok(p) if p.kind == OperationKind::Mutation => p,
            Ok(_) => return fail(&shared, id, "INVALID_MUTATION").await,
            Err(error) => {
                results.push(json!({"errors": [error.to_json()], "__lineNumber": number}));
                continue;
            }
        };
        let mut rng = shared.lock_rng();
        if partial_failure_rate > 0.0 && rng.random_bool(partial_failure_rate.min(1.0)) {
            results.push(
                json!({"errors": [{"message": "Internal error (simulated partial failure)"}], "__lineNumber": number}),
            );
            continue;
        }
        let now = shared.clock.now();
        let mut state = shared.lock_state();
        let mut data = Map::new();
        let mut errors = Vec::new();
        for field in &prepared.fields {
            let mut context = MutationContext {
                now,
                version: &version,
                base_url: &shared.base_url,
                partial_failure_rate: 0.0,
                rng: &mut rng,
                in_bulk: true,
            };
            match mutations::execute(&mut state, &mut context, field) {
                Ok(outcome) => {
                    effects.extend(outcome.effects);
                    let context = Context {
                        state: &state,
                        base_url: &shared.base_url,
                        shop_name: &shared.config.shop,
                        unbounded: false,
                    };
                    let mut executor = Executor::new(context);
                    data.insert(field.key.clone(), executor.render(&outcome.payload, field));
                    errors.extend(executor.errors);
                }
                Err(message) => {
                    data.insert(field.key.clone(), Json::Null);
                    errors.push(json!({"message": message}));
                }
            }
        }
        let mut result = json!({"data": data, "__lineNumber": number});
        if !errors.is_empty() {
            result["errors"] = Json::Array(errors);
        }
        results.push(result);
    }
    let now = shared.clock.now();
    {
        let mut state = shared.lock_state();
        let Some(operation) = state.bulk_operations.get_mut(&id) else { return };
        if operation.status == "CANCELED" {
            return;
        }
        let text: String = results.iter().map(|l| format!("{l}\n")).collect();
        operation.object_count = results.len() as u64;
        operation.root_object_count = results.len() as u64;
        operation.file_size = Some(text.len() as u64);
        operation.result = Some(text);
        operation.status = "COMPLETED".into();
        operation.completed_at = Some(now);
    }
    effects.push(Effect::Webhook { topic: "bulk_operations/finish".into(), payload: finish_payload(&shared, id) });
    shared.dispatch(effects, None);
}

async fn fail(shared: &Arc<Shared>, id: u64, code: &str) {
    let now = shared.clock.now();
    {
        let mut state = shared.lock_state();
        if let Some(operation) = state.bulk_operations.get_mut(&id) {
            operation.status = "FAILED".into();
            operation.error_code = Some(code.into());
            operation.completed_at = Some(now);
            operation.result = None;
        }
    }
    tokio::time::sleep(Duration::ZERO).await;
    let payload = finish_payload(shared, id);
    shared.dispatch(vec![Effect::Webhook { topic: "bulk_operations/finish".into(), payload }], None);
}
