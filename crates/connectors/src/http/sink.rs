//! Writing to a REST API: one request per record (create, update by id, or upsert by key) or
//! batches (`{"create": [...], "update": [...]}` answered item by item), and finding existing
//! records by natural key before creating.

use crate::http::HttpConnector;
use crate::http::client::WriteSettings;
use crate::http::config::BatchEndpoint;
use crate::http::map::{from_canonical, get_path, id_text};
use crate::{Capabilities, ConnectorError, ErrorKind, Sink, WriteBatch, WriteItem, WriteOutcome};
use async_trait::async_trait;
use erpsync_model::EntityKind;
use reqwest::Method;
use serde_json::Value;
use std::str::FromStr;

#[async_trait]
impl Sink for HttpConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let write = self.entities.get(&entity).and_then(|settings| settings.write.as_ref());
        Capabilities {
            write: write.is_some(),
            lookup: write.is_some_and(|write| write.config.lookup.is_some()),
            ..Capabilities::default()
        }
    }

    fn max_batch_size(&self, entity: EntityKind) -> usize {
        let write = self.entities.get(&entity).and_then(|settings| settings.write.as_ref());
        match write.and_then(|write| write.config.batch.as_ref()) {
            Some(batch) => batch.max,
            None => 50,
        }
    }

    async fn lookup(&self, entity: EntityKind, natural_keys: &[String]) -> Result<Vec<Option<String>>, ConnectorError> {
        let context = format!("looking up {entity} in http {:?}", self.system);
        let write = self.write_settings(entity, &context)?;
        let Some(lookup) = &write.config.lookup else {
            return Ok(vec![None; natural_keys.len()]);
        };
        let mut found = Vec::with_capacity(natural_keys.len());
        for key in natural_keys {
            let mut url = reqwest::Url::parse(&format!("{}{}", self.base_url, lookup.path))
                .map_err(|error| ConnectorError::new(ErrorKind::InvalidRequest, &context, error.to_string()))?;
            url.query_pairs_mut().append_pair(&lookup.param, key);
            let response = self.send(Method::GET, url.as_str(), None, &context).await?;
            let body: Value = serde_json::from_slice(&response.body).map_err(|error| {
                ConnectorError::new(ErrorKind::InvalidResponse, &context, format!("not JSON: {error}"))
            })?;
            let first = match get_path(&body, &lookup.records) {
                Some(Value::Array(items)) => items.first(),
                Some(Value::Object(_)) => Some(&body),
                _ => None,
            };
            found.push(first.and_then(|item| get_path(item, &lookup.id)).and_then(id_text));
        }
        Ok(found)
    }

    async fn write_batch(&self, batch: &WriteBatch) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let context = format!("writing {} to http {:?}", batch.entity, self.system);
        let write = self.write_settings(batch.entity, &context)?;
        match &write.config.batch {
            Some(endpoint) => self.write_in_batches(batch, write, endpoint, &context).await,
            None => {
                let mut outcomes = Vec::with_capacity(batch.items.len());
                for item in &batch.items {
                    outcomes.push(self.write_one(item, write, &context).await);
                }
                Ok(outcomes)
            }
        }
    }
}

impl HttpConnector {
    fn write_settings(&self, entity: EntityKind, context: &str) -> Result<&WriteSettings, ConnectorError> {
        self.entity(entity, context)?.write.as_ref().ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidRequest, context, format!("no write settings for {entity}"))
        })
    }

    async fn write_one(&self, item: &WriteItem, write: &WriteSettings, context: &str) -> WriteOutcome {
        let context = format!("{context}: {}", item.natural_key);
        let body = match from_canonical(write.from_canonical.as_ref(), &item.record) {
            Ok(body) => body,
            Err(message) => {
                return WriteOutcome::Failed(ConnectorError::new(ErrorKind::InvalidRequest, &context, message));
            }
        };
        let config = &write.config;
        let (endpoint, path) = match (&item.target_id, &config.update, &config.upsert, &config.create) {
            (Some(id), Some(update), _, _) => (update, update.path.replace("{id}", &encode(id))),
            (_, _, Some(upsert), _) => (upsert, upsert.path.replace("{key}", &encode(&item.natural_key))),
            (None, _, None, Some(create)) => (create, create.path.clone()),
            _ => {
                return WriteOutcome::Failed(ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    &context,
                    "the record exists in the target, but no `update` or `upsert` endpoint is configured",
                ));
            }
        };
        let method = Method::from_str(&endpoint.method.to_ascii_uppercase()).unwrap_or(Method::POST);
        let bytes = serde_json::to_vec(&body).expect("JSON values always serialize");
        let response = match self.send(method, &format!("{}{path}", self.base_url), Some(bytes), &context).await {
            Ok(response) => response,
            Err(error) => return WriteOutcome::Failed(error),
        };
        let returned = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|value| get_path(&value, &config.response_id).and_then(id_text));
        let target_id = returned.or_else(|| item.target_id.clone()).unwrap_or_else(|| item.natural_key.clone());
        match item.target_id {
            Some(_) => WriteOutcome::Updated { target_id },
            None => WriteOutcome::Created { target_id },
        }
    }

    async fn write_in_batches(
        &self,
        batch: &WriteBatch,
        write: &WriteSettings,
        endpoint: &BatchEndpoint,
        context: &str,
    ) -> Result<Vec<WriteOutcome>, ConnectorError> {
        let mut outcomes: Vec<Option<WriteOutcome>> = batch.items.iter().map(|_| None).collect();
        let id_field = write.config.response_id.split('.').next().unwrap_or("id").to_string();
        for (chunk_index, chunk) in batch.items.chunks(endpoint.max).enumerate() {
            let offset = chunk_index * endpoint.max;
            let mut creates = Vec::new();
            let mut updates = Vec::new();
            for (index, item) in chunk.iter().enumerate() {
                let mut body = match from_canonical(write.from_canonical.as_ref(), &item.record) {
                    Ok(body) => body,
                    Err(message) => {
                        outcomes[offset + index] = Some(WriteOutcome::Failed(ConnectorError::new(
                            ErrorKind::InvalidRequest,
                            context,
                            message,
                        )));
                        continue;
                    }
                };
                match (&item.target_id, &mut body) {
                    (Some(id), Value::Object(object)) => {
                        let id_value = id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(id.clone()));
                        object.insert(id_field.clone(), id_value);
                        updates.push((offset + index, body));
                    }
                    (Some(_), _) => {
                        outcomes[offset + index] = Some(WriteOutcome::Failed(ConnectorError::new(
                            ErrorKind::InvalidRequest,
                            context,
                            "an update in a batch must be a JSON object",
                        )));
                    }
                    (None, _) => creates.push((offset + index, body)),
                }
            }
            if creates.is_empty() && updates.is_empty() {
                continue;
            }
            let mut request = serde_json::Map::new();
            request.insert(
                endpoint.create_key.clone(),
                Value::Array(creates.iter().map(|(_, body)| body.clone()).collect()),
            );
            request.insert(
                endpoint.update_key.clone(),
                Value::Array(updates.iter().map(|(_, body)| body.clone()).collect()),
            );
            let method = Method::from_str(&endpoint.method.to_ascii_uppercase()).unwrap_or(Method::POST);
            let bytes = serde_json::to_vec(&Value::Object(request)).expect("JSON values always serialize");
            // A failure of the whole request (outage, throttling) is the batch's: the engine
            // retries it whole with the same batch id.
            let response =
                self.send(method, &format!("{}{}", self.base_url, endpoint.path), Some(bytes), context).await?;
            let body: Value = serde_json::from_slice(&response.body).map_err(|error| {
                ConnectorError::new(
                    ErrorKind::InvalidResponse,
                    context,
                    format!("the batch response is not JSON: {error}"),
                )
            })?;
            for (key, sent, created) in
                [(&endpoint.create_key, &creates, true), (&endpoint.update_key, &updates, false)]
            {
                if sent.is_empty() {
                    continue;
                }
                let results =
                    get_path(&body, key).and_then(Value::as_array).filter(|results| results.len() == sent.len());
                let Some(results) = results else {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidResponse,
                        context,
                        format!(
                            "the batch response has no {key:?} array with one result per record ({} sent)",
                            sent.len()
                        ),
                    ));
                };
                for ((index, _), result) in sent.iter().zip(results) {
                    let item = &batch.items[*index];
                    let error = result.get(&endpoint.error_field).filter(|error| !error.is_null());
                    outcomes[*index] = Some(match error {
                        Some(error) => {
                            let message = error
                                .get("message")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| error.to_string());
                            WriteOutcome::Failed(ConnectorError::new(
                                ErrorKind::InvalidRequest,
                                format!("{context}: {}", item.natural_key),
                                message,
                            ))
                        }
                        None => {
                            let target_id = get_path(result, &write.config.response_id)
                                .and_then(id_text)
                                .or_else(|| item.target_id.clone())
                                .unwrap_or_else(|| item.natural_key.clone());
                            if created {
                                WriteOutcome::Created { target_id }
                            } else {
                                WriteOutcome::Updated { target_id }
                            }
                        }
                    });
                }
            }
        }
        Ok(outcomes.into_iter().map(|outcome| outcome.expect("every item of every chunk got an outcome")).collect())
    }
}

/// Percent-encodes an id for a path segment.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
