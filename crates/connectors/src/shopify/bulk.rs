//! Full catalog writes through a bulk operation: the `productSet` variables of every product
//! as one JSONL file, uploaded to a staged target (`stagedUploadsCreate`), run with
//! `bulkOperationRunMutation`, polled until it ends, and its result file read back line by
//! line into one outcome per product. Bulk operations do not spend the cost bucket; only one
//! runs at a time from this connector.

use crate::shopify::ShopifyConnector;
use crate::shopify::client::read_body;
use crate::shopify::client::transport_error;
use crate::shopify::map::{describe_user_errors, text};
use crate::shopify::sink::{PRODUCT_SET_MUTATION, failed};
use crate::{ConnectorError, ErrorKind, WriteBatch, WriteOutcome};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Shopify refuses staged uploads above 20 MB.
const MAX_UPLOAD_BYTES: usize = 20 * 1024 * 1024;

impl ShopifyConnector {
    pub(crate) async fn write_products_in_bulk(
        &self,
        batch: &WriteBatch,
        context: &str,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("{context} (bulk operation)");
        let inputs = self.product_inputs(batch, &context).await?;
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        // JSONL line number -> item index.
        let mut sent: Vec<usize> = Vec::new();
        let mut jsonl = String::new();
        for (index, (item, input)) in batch.items.iter().zip(inputs).enumerate() {
            match input {
                Ok(input) => {
                    let identifier = item.target_id.as_ref().map(|id| json!({ "id": id }));
                    let line = json!({ "input": input, "identifier": identifier });
                    jsonl.push_str(&line.to_string());
                    jsonl.push('\n');
                    sent.push(index);
                }
                Err(message) => {
                    outcomes[index] =
                        Some(failed(ErrorKind::InvalidRequest, &format!("{context}: {}", item.natural_key), message))
                }
            }
        }
        if jsonl.len() > MAX_UPLOAD_BYTES {
            return Err(ConnectorError::new(
                ErrorKind::InvalidRequest,
                &context,
                format!(
                    "the batch is {} bytes of JSONL, more than the 20 MB Shopify accepts: lower the flow's batch size",
                    jsonl.len()
                ),
            ));
        }
        if !sent.is_empty() {
            let _running = self.bulk_lock.lock().await;
            let path = self.stage_upload(jsonl.into_bytes(), &context).await?;
            let operation_id = self.run_bulk_mutation(&path, &batch.batch_id, &context).await?;
            let (status, url, error_code) = self.wait_for_bulk(&operation_id, &context).await?;
            if status != "COMPLETED" {
                let message = format!(
                    "bulk operation {operation_id} ended {status}{}",
                    match &error_code {
                        Some(code) => format!(" ({code})"),
                        None => String::new(),
                    }
                );
                // A failed operation may still have written some lines; their results, when
                // Shopify gives a partial file, are read below. The rest is retried.
                if url.is_none() {
                    return Err(ConnectorError::new(ErrorKind::Unavailable, &context, message));
                }
            }
            let results = match url {
                Some(url) => self.fetch_results(&url, &context).await?,
                None => String::new(),
            };
            for (position, line) in results.lines().filter(|line| !line.trim().is_empty()).enumerate() {
                let value: Value = serde_json::from_str(line).map_err(|error| {
                    ConnectorError::new(
                        ErrorKind::InvalidResponse,
                        &context,
                        format!("result line {}: {error}", position + 1),
                    )
                })?;
                let line_number =
                    value.get("__lineNumber").and_then(Value::as_u64).map(|number| number as usize).unwrap_or(position);
                let Some(&index) = sent.get(line_number) else { continue };
                let item = &batch.items[index];
                let item_context = format!("{context}: {}", item.natural_key);
                let outcome = match value.get("errors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
                    Some(errors) => failed(
                        ErrorKind::InvalidRequest,
                        &item_context,
                        errors.iter().filter_map(|error| text(error, "message")).collect::<Vec<_>>().join("; "),
                    ),
                    None => self.product_outcome(
                        item,
                        value.get("data").and_then(|data| data.get("productSet")),
                        &item_context,
                    ),
                };
                outcomes[index] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .enumerate()
            .map(|(index, outcome)| {
                outcome.unwrap_or_else(|| {
                    WriteOutcome::Failed(
                        ConnectorError::new(
                            ErrorKind::Unavailable,
                            format!("{context}: {}", batch.items[index].natural_key),
                            "the bulk operation's result has no line for this product",
                        )
                        .with_retryable(true),
                    )
                })
            })
            .collect())
    }

    /// Uploads the JSONL to a staged target and returns its path for the bulk mutation.
    async fn stage_upload(&self, jsonl: Vec<u8>, context: &str) -> Result<String, ConnectorError> {
        let query = "mutation Stage($input: [StagedUploadInput!]!) { stagedUploadsCreate(input: $input) { stagedTargets { url resourceUrl parameters { name value } } userErrors { field message } } }";
        let input = json!([{ "resource": "BULK_MUTATION_VARIABLES", "filename": "products.jsonl", "mimeType": "text/jsonl", "httpMethod": "POST" }]);
        let data = self.graphql("staged_upload", 11.0, query, json!({ "input": input }), context).await?;
        let payload = data.get("stagedUploadsCreate").cloned().unwrap_or(Value::Null);
        if let Some(errors) = payload.get("userErrors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
            return Err(ConnectorError::new(ErrorKind::InvalidRequest, context, describe_user_errors(errors)));
        }
        let target = payload
            .get("stagedTargets")
            .and_then(Value::as_array)
            .and_then(|targets| targets.first())
            .cloned()
            .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "no staged target"))?;
        let url = text(&target, "url")
            .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "no upload url"))?;
        let parameters: Vec<(String, String)> = target
            .get("parameters")
            .and_then(Value::as_array)
            .map(|parameters| {
                parameters
                    .iter()
                    .filter_map(|parameter| {
                        Some((text(parameter, "name")?, text(parameter, "value").unwrap_or_default()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let key =
            parameters.iter().find(|(name, _)| name == "key").map(|(_, value)| value.clone()).ok_or_else(|| {
                ConnectorError::new(ErrorKind::InvalidResponse, context, "the staged target has no key parameter")
            })?;
        // multipart/form-data, written here: the form fields first, the file last, as the
        // storage service requires.
        let boundary = format!("erpsync-{:016x}", rand_boundary());
        let mut body = Vec::with_capacity(jsonl.len() + 1024);
        for (name, value) in &parameters {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"products.jsonl\"\r\nContent-Type: text/jsonl\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let upload_context = format!("{context}: uploading the JSONL");
        let response = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .map_err(|error| transport_error(&upload_context, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_body(response, &upload_context).await?;
        if !status.is_success() {
            return Err(crate::http::client::status_error(&upload_context, status, &headers, &bytes));
        }
        Ok(key)
    }

    async fn run_bulk_mutation(&self, path: &str, batch_id: &str, context: &str) -> Result<String, ConnectorError> {
        let query = "mutation RunBulk($mutation: String!, $path: String!, $client: String) { bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path, clientIdentifier: $client) { bulkOperation { id status } userErrors { field message code } } }";
        let variables = json!({ "mutation": PRODUCT_SET_MUTATION, "path": path, "client": batch_id });
        let data = self.graphql("bulk_run", 10.0, query, variables, context).await?;
        let payload = data.get("bulkOperationRunMutation").cloned().unwrap_or(Value::Null);
        if let Some(errors) = payload.get("userErrors").and_then(Value::as_array).filter(|errors| !errors.is_empty()) {
            let busy = errors.iter().any(|error| {
                matches!(error.get("code").and_then(Value::as_str), Some("OPERATION_IN_PROGRESS" | "LIMIT_REACHED"))
            });
            let error = ConnectorError::new(
                if busy { ErrorKind::RateLimited } else { ErrorKind::InvalidRequest },
                context,
                describe_user_errors(errors),
            );
            return Err(if busy { error.with_retry_after(Duration::from_secs(30)) } else { error });
        }
        payload
            .get("bulkOperation")
            .and_then(|operation| text(operation, "id"))
            .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidResponse, context, "no bulk operation was created"))
    }

    /// Polls until the operation ends: (status, result url, error code).
    async fn wait_for_bulk(
        &self,
        id: &str,
        context: &str,
    ) -> Result<(String, Option<String>, Option<String>), ConnectorError> {
        let query =
            "query Bulk($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount url partialDataUrl } }";
        let started = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let data = self.graphql("bulk_poll", 1.0, query, json!({ "id": id }), context).await?;
            let operation = data.get("bulkOperation").cloned().unwrap_or(Value::Null);
            let status = text(&operation, "status").unwrap_or_default();
            if matches!(status.as_str(), "COMPLETED" | "FAILED" | "CANCELED" | "CANCELLED" | "EXPIRED") {
                let url = text(&operation, "url").or_else(|| text(&operation, "partialDataUrl"));
                return Ok((status, url, text(&operation, "errorCode")));
            }
            if started.elapsed() > self.bulk_timeout {
                return Err(ConnectorError::new(
                    ErrorKind::Timeout,
                    context,
                    format!("bulk operation {id} still {status} after {}s (bulk_timeout)", self.bulk_timeout.as_secs()),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    async fn fetch_results(&self, url: &str, context: &str) -> Result<String, ConnectorError> {
        let context = format!("{context}: reading the results");
        let response = self.http.get(url).send().await.map_err(|error| transport_error(&context, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = read_body(response, &context).await?;
        if !status.is_success() {
            return Err(crate::http::client::status_error(&context, status, &headers, &bytes));
        }
        String::from_utf8(bytes)
            .map_err(|_| ConnectorError::new(ErrorKind::InvalidResponse, &context, "the result file is not UTF-8"))
    }
}

/// A boundary that does not occur in the JSON (it is not escaped JSON text): time-derived.
fn rand_boundary() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    (nanos as u64) ^ 0x9e37_79b9_7f4a_7c15
}
