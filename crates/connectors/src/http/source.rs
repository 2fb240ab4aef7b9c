//! Reading pages from a REST API: page number, offset/limit, a cursor in the body, or `Link`
//! headers; incremental with a "changed since" parameter that reaches back by an overlap.
//!
//! The boundary rule: a run asks for records changed since `watermark - overlap`. When it
//! ends, the new watermark is the newest change time it saw, but never later than the moment
//! the run started: a record changed while the scan ran (and perhaps moved to a page already
//! read) is then asked for again by the next run. Records read twice cost nothing, the engine
//! skips them by hash.

use crate::http::HttpConnector;
use crate::http::config::Pagination;
use crate::http::map::{format_time, get_path, id_text, parse_time, to_canonical};
use crate::{Capabilities, ConnectorError, ErrorKind, ReadRequest, RecordProblem, Source, SourcePage, SourceRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use erpsync_model::{Checkpoint, EntityKind};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a run is: kept in the checkpoint's cursor between pages.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunCursor {
    v: u32,
    since: Option<DateTime<Utc>>,
    started: DateTime<Utc>,
    newest: Option<DateTime<Utc>>,
    position: Position,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Position {
    Page(u64),
    Offset(u64),
    Cursor(String),
    Url(String),
}

#[async_trait]
impl Source for HttpConnector {
    fn capabilities(&self, entity: EntityKind) -> Capabilities {
        let read = self.entities.get(&entity).and_then(|settings| settings.read.as_ref());
        Capabilities {
            read: read.is_some(),
            incremental_read: read.is_some_and(|read| read.config.incremental.is_some()),
            webhook: self.webhook.is_some(),
            ..Capabilities::default()
        }
    }

    fn can_fetch(&self, entity: EntityKind) -> bool {
        self.entities
            .get(&entity)
            .and_then(|settings| settings.read.as_ref())
            .is_some_and(|read| read.config.item_path.is_some())
    }

    async fn fetch(&self, entity: EntityKind, ids: &[String]) -> Result<Vec<Option<SourceRecord>>, ConnectorError> {
        let context = format!("reading {entity} by id from http {:?}", self.system);
        let settings = self.entity(entity, &context)?;
        let read = settings.read.as_ref().ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidRequest, &context, format!("no read settings for {entity}"))
        })?;
        let Some(item_path) = &read.config.item_path else {
            return Err(ConnectorError::new(ErrorKind::InvalidRequest, &context, "no item_path is configured"));
        };
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            let encoded: String = url_escape(id);
            let url = format!("{}{}", self.base_url, item_path.replace("{id}", &encoded));
            let response = match self.send(Method::GET, &url, None, &context).await {
                Ok(response) => response,
                Err(error) if error.kind == ErrorKind::NotFound => {
                    found.push(None);
                    continue;
                }
                Err(error) => return Err(error),
            };
            let body: Value = serde_json::from_slice(&response.body).map_err(|error| {
                ConnectorError::new(ErrorKind::InvalidResponse, &context, format!("the response is not JSON: {error}"))
            })?;
            let Some(item) = get_path(&body, &read.config.item_record) else {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidResponse,
                    &context,
                    format!("no record at {:?} in the response", read.config.item_record),
                ));
            };
            let content = to_canonical(entity, read.to_canonical.as_ref(), item)
                .map_err(|message| RecordProblem { kind: "parse".into(), message, raw: item.clone() })
                .and_then(|record| match record.validate() {
                    Ok(()) => Ok(record),
                    Err(errors) => {
                        Err(RecordProblem { kind: "validation".into(), message: errors.to_string(), raw: item.clone() })
                    }
                });
            found.push(Some(SourceRecord {
                source_id: id.clone(),
                origin: Some(format!("{} (by id)", item_path.replace("{id}", id))),
                origin_group: None,
                content,
            }));
        }
        Ok(found)
    }

    async fn read_page(&self, request: &ReadRequest<'_>) -> Result<SourcePage, ConnectorError> {
        let context = format!("reading {} from http {:?}", request.entity, self.system);
        let settings = self.entity(request.entity, &context)?;
        let read = settings.read.as_ref().ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidRequest, &context, format!("no read settings for {}", request.entity))
        })?;
        let config = &read.config;
        let run = match request.checkpoint.cursor.as_deref() {
            Some(text) => serde_json::from_str::<RunCursor>(text).map_err(|error| {
                ConnectorError::new(
                    ErrorKind::InvalidRequest,
                    &context,
                    format!("the stored cursor is not ours: {error}"),
                )
            })?,
            None => RunCursor {
                v: 1,
                since: request
                    .checkpoint
                    .watermark
                    .map(|at| at - chrono::Duration::from_std(read.overlap).unwrap_or_default()),
                started: Utc::now(),
                newest: None,
                position: match &config.pagination {
                    Pagination::Page { first, .. } => Position::Page(*first),
                    Pagination::Offset { .. } => Position::Offset(0),
                    Pagination::Cursor { .. } => Position::Cursor(String::new()),
                    Pagination::Link { .. } | Pagination::None => Position::Url(String::new()),
                },
            },
        };
        let size = HttpConnector::page_size(&config.pagination);
        let url = match &run.position {
            Position::Url(next) if !next.is_empty() => next.clone(),
            position => {
                let mut query: Vec<(String, String)> =
                    config.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                if let (Some(incremental), Some(since)) = (&config.incremental, run.since) {
                    query.push((incremental.param.clone(), format_time(since, &incremental.format)));
                }
                match (&config.pagination, position) {
                    (Pagination::Page { page_param, size_param, size, .. }, Position::Page(page)) => {
                        query.push((page_param.clone(), page.to_string()));
                        query.push((size_param.clone(), size.to_string()));
                    }
                    (Pagination::Offset { offset_param, limit_param, size }, Position::Offset(offset)) => {
                        query.push((offset_param.clone(), offset.to_string()));
                        query.push((limit_param.clone(), size.to_string()));
                    }
                    (Pagination::Cursor { cursor_param, size_param, size, .. }, Position::Cursor(cursor)) => {
                        if !cursor.is_empty() {
                            query.push((cursor_param.clone(), cursor.clone()));
                        }
                        if let Some(size_param) = size_param {
                            query.push((size_param.clone(), size.to_string()));
                        }
                    }
                    (Pagination::Link { size_param: Some(size_param), size }, _) => {
                        query.push((size_param.clone(), size.to_string()));
                    }
                    _ => {}
                }
                let mut url = reqwest::Url::parse(&format!("{}{}", self.base_url, config.path)).map_err(|error| {
                    ConnectorError::new(ErrorKind::InvalidRequest, &context, format!("bad url: {error}"))
                })?;
                if !query.is_empty() {
                    url.query_pairs_mut().extend_pairs(query.iter());
                }
                url.to_string()
            }
        };

        let response = self.send(Method::GET, &url, None, &context).await?;
        let body: Value = serde_json::from_slice(&response.body).map_err(|error| {
            ConnectorError::new(ErrorKind::InvalidResponse, &context, format!("the response is not JSON: {error}"))
        })?;
        let items = match get_path(&body, &config.records) {
            Some(Value::Array(items)) => items.as_slice(),
            Some(Value::Null) | None if !config.records.is_empty() => &[],
            _ => {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidResponse,
                    &context,
                    format!("no array at {:?} in the response", config.records),
                ));
            }
        };

        let mut newest = run.newest;
        let mut records = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let origin = format!("{} item {}", config.path, index + 1);
            let Some(source_id) = get_path(item, &config.id).and_then(id_text) else {
                records.push(SourceRecord {
                    source_id: format!("{url}#{index}"),
                    origin: Some(origin),
                    origin_group: None,
                    content: Err(RecordProblem {
                        kind: "parse".into(),
                        message: format!("the record has no id at {:?}", config.id),
                        raw: item.clone(),
                    }),
                });
                continue;
            };
            if let Some(incremental) = &config.incremental
                && let Some(at) =
                    get_path(item, &incremental.field).and_then(|value| parse_time(value, &incremental.format))
            {
                newest = newest.max(Some(at));
            }
            let content = to_canonical(request.entity, read.to_canonical.as_ref(), item)
                .map_err(|message| RecordProblem { kind: "parse".into(), message, raw: item.clone() })
                .and_then(|record| match record.validate() {
                    Ok(()) => Ok(record),
                    Err(errors) => {
                        Err(RecordProblem { kind: "validation".into(), message: errors.to_string(), raw: item.clone() })
                    }
                });
            records.push(SourceRecord { source_id, origin: Some(origin), origin_group: None, content });
        }

        let next = match (&config.pagination, &run.position) {
            (Pagination::Page { .. }, Position::Page(page)) => (items.len() >= size).then(|| Position::Page(page + 1)),
            (Pagination::Offset { .. }, Position::Offset(offset)) => {
                (items.len() >= size).then(|| Position::Offset(offset + items.len() as u64))
            }
            (Pagination::Cursor { next_cursor, .. }, _) => get_path(&body, next_cursor)
                .and_then(|value| value.as_str().map(str::to_string).or_else(|| id_text(value)))
                .filter(|cursor| !cursor.is_empty() && !items.is_empty())
                .map(Position::Cursor),
            (Pagination::Link { .. }, _) => next_link(&response.headers).map(Position::Url),
            _ => None,
        };
        let done = next.is_none();
        let checkpoint = match next {
            Some(position) => Checkpoint {
                watermark: request.checkpoint.watermark,
                cursor: Some(
                    serde_json::to_string(&RunCursor { newest, position, ..run }).expect("cursors always serialize"),
                ),
            },
            None => Checkpoint {
                watermark: match newest {
                    Some(newest) => Some(newest.min(run.started)),
                    None => request.checkpoint.watermark,
                },
                cursor: None,
            },
        };
        Ok(SourcePage { records, checkpoint, done })
    }
}

/// An id as one path segment: everything but unreserved characters percent-encoded.
fn url_escape(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `rel="next"` target of RFC 8288 `Link` headers.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|param| {
                let param = param.trim().replace(' ', "");
                param == "rel=\"next\"" || param == "rel=next"
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, LINK};

    #[test]
    fn finds_the_next_link() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(r#"<https://x/items?page=1>; rel="prev", <https://x/items?page=3>; rel="next""#),
        );
        assert_eq!(next_link(&headers).as_deref(), Some("https://x/items?page=3"));
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
