//! The connection to one Elasticsearch cluster: raw requests through the `elasticsearch`
//! crate's transport, index creation, and the small admin calls the operator needs (alias swap,
//! alias targets, count, refresh) plus a read-back helper for tests.

use std::time::Duration;

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::{Method, Url};
use serde_json::Value;

use super::config::{Auth, SinkConfig};
use super::error::SinkError;
use super::request::{alias_actions, error_reason};

/// Content type of `_bulk` bodies.
const NDJSON: &str = "application/x-ndjson";
/// Error type Elasticsearch answers when creating an index that exists.
pub const ALREADY_EXISTS: &str = "resource_already_exists_exception";
/// Most hits [`Cluster::search_all`] returns (the default `index.max_result_window`).
pub const SEARCH_ALL_LIMIT: u64 = 10_000;

/// What [`Cluster::create_index`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexStatus {
    /// The index was created by this call.
    Created,
    /// The index existed already (a restart, or another creator won a race); left as it is.
    AlreadyExisted,
}

/// A cluster to talk to. Cheap to clone (the HTTP connection pool is shared).
#[derive(Debug, Clone)]
pub struct Cluster {
    transport: Transport,
    url: String,
    timeout: Duration,
}

/// A response: status and body.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Vec<u8>,
}

impl Answer {
    fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl Cluster {
    /// Builds the HTTP client for `config`'s URL, credentials, TLS and request timeout. No
    /// request is made.
    pub fn connect(config: &SinkConfig) -> Result<Self, SinkError> {
        let client_error = |message: String| SinkError::Client { url: config.url.clone(), message };
        let url = Url::parse(&config.url).map_err(|e| client_error(e.to_string()))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(config.request_timeout);
        match &config.auth {
            Auth::None => {}
            Auth::Basic { username, password } => {
                builder = builder.auth(Credentials::Basic(username.clone(), password.clone()));
            }
            Auth::ApiKey(key) => builder = builder.auth(Credentials::EncodedApiKey(key.clone())),
        }
        if config.tls.accept_invalid_certs {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(path) = &config.tls.ca_cert_pem {
            let pem = std::fs::read(path)
                .map_err(|e| client_error(format!("cannot read CA certificate {path:?}: {e}")))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| client_error(format!("invalid PEM CA certificate {path:?}: {e}")))?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder.build().map_err(|e| client_error(e.to_string()))?;
        Ok(Self { transport, url: config.url.clone(), timeout: config.request_timeout })
    }

    /// The cluster URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request. Only transport failures are errors here; any HTTP status is an
    /// [`Answer`] for the caller to judge.
    pub(super) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        ndjson: bool,
        action: &str,
    ) -> Result<Answer, SinkError> {
        let mut headers = HeaderMap::new();
        if ndjson {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(NDJSON));
        }
        let transport_error = |source: elasticsearch::Error| {
            if source.is_timeout() {
                SinkError::Timeout {
                    url: self.url.clone(),
                    action: action.to_owned(),
                    timeout: self.timeout,
                }
            } else {
                SinkError::Connection { url: self.url.clone(), action: action.to_owned(), source }
            }
        };
        let response = self
            .transport
            .send(method, path, headers, None::<&()>, body, None)
            .await
            .map_err(transport_error)?;
        let status = response.status_code().as_u16();
        // A body cut off mid-way is a transport failure too (retryable).
        let body = response.bytes().await.map_err(transport_error)?.to_vec();
        Ok(Answer { status, body })
    }

    /// Sends a JSON request and turns any non-2xx status into [`SinkError::Http`].
    async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        action: &str,
    ) -> Result<Answer, SinkError> {
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON values serialize"));
        let answer = self.send(method, path, body, false, action).await?;
        if answer.is_success() {
            Ok(answer)
        } else {
            Err(self.http_error(&answer, action))
        }
    }

    pub(super) fn http_error(&self, answer: &Answer, action: &str) -> SinkError {
        let (reason_type, reason) = error_reason(&answer.body);
        SinkError::Http {
            url: self.url.clone(),
            action: action.to_owned(),
            status: answer.status,
            reason_type,
            reason,
        }
    }

    pub(super) fn protocol_error(&self, action: &str, message: String) -> SinkError {
        SinkError::Protocol { url: self.url.clone(), action: action.to_owned(), message }
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        answer: &Answer,
        action: &str,
    ) -> Result<T, SinkError> {
        serde_json::from_slice(&answer.body)
            .map_err(|e| self.protocol_error(action, format!("invalid JSON body: {e}")))
    }

    /// Creates `index` with `body` (`{"settings": .., "mappings": ..}`) unless it exists. An
    /// index that exists is left alone, whatever its mappings. A 429/5xx or transport failure
    /// is returned as is (retryable); any other refusal is [`SinkError::IndexCreation`].
    pub async fn create_index(&self, index: &str, body: &Value) -> Result<IndexStatus, SinkError> {
        let action = format!("create index {index}");
        let body = serde_json::to_vec(body).expect("JSON values serialize");
        let answer = self.send(Method::Put, index, Some(body), false, &action).await?;
        if answer.is_success() {
            return Ok(IndexStatus::Created);
        }
        let (reason_type, reason) = error_reason(&answer.body);
        if reason_type == ALREADY_EXISTS {
            return Ok(IndexStatus::AlreadyExisted);
        }
        let error = self.http_error(&answer, &action);
        if error.is_retryable() || matches!(answer.status, 401 | 403) {
            return Err(error);
        }
        Err(SinkError::IndexCreation {
            index: index.to_owned(),
            url: self.url.clone(),
            status: answer.status,
            reason_type,
            reason,
        })
    }

    /// Points `alias` at `add`, removing it from every index in `remove` in the same request,
    /// so readers see either the old index or the new one, never none or both.
    pub async fn swap_alias(
        &self,
        alias: &str,
        remove: &[&str],
        add: &str,
    ) -> Result<(), SinkError> {
        let from = if remove.is_empty() { "nothing".to_owned() } else { remove.join(", ") };
        let action = format!("move alias {alias} from {from} to {add}");
        let body = alias_actions(alias, remove, add);
        self.send_json(Method::Post, "_aliases", Some(&body), &action).await?;
        Ok(())
    }

    /// The indices `alias` points at, sorted; empty when the alias does not exist.
    pub async fn alias_targets(&self, alias: &str) -> Result<Vec<String>, SinkError> {
        let action = format!("get alias {alias}");
        let answer =
            self.send(Method::Get, &format!("_alias/{alias}"), None, false, &action).await?;
        if answer.status == 404 {
            return Ok(Vec::new());
        }
        if !answer.is_success() {
            return Err(self.http_error(&answer, &action));
        }
        let targets: serde_json::Map<String, Value> = self.parse(&answer, &action)?;
        let mut indices: Vec<String> = targets.into_iter().map(|(index, _)| index).collect();
        indices.sort();
        Ok(indices)
    }

    /// Documents in `index` (as of its last refresh).
    pub async fn count(&self, index: &str) -> Result<u64, SinkError> {
        let action = format!("count documents of {index}");
        let answer = self.send_json(Method::Get, &format!("{index}/_count"), None, &action).await?;
        let value: Value = self.parse(&answer, &action)?;
        value["count"]
            .as_u64()
            .ok_or_else(|| self.protocol_error(&action, "no numeric `count`".to_owned()))
    }

    /// Documents in `index` matching `query` (a query DSL object, e.g. a `range`).
    pub async fn count_matching(&self, index: &str, query: &Value) -> Result<u64, SinkError> {
        let action = format!("count matching documents of {index}");
        let body = serde_json::json!({ "query": query });
        let path = format!("{index}/_count");
        let answer = self.send_json(Method::Post, &path, Some(&body), &action).await?;
        let value: Value = self.parse(&answer, &action)?;
        value["count"]
            .as_u64()
            .ok_or_else(|| self.protocol_error(&action, "no numeric `count`".to_owned()))
    }

    /// Deletes `index`. Returns `false` when it did not exist (already deleted).
    pub async fn delete_index(&self, index: &str) -> Result<bool, SinkError> {
        let action = format!("delete index {index}");
        let answer = self.send(Method::Delete, index, None, false, &action).await?;
        match answer.status {
            404 => Ok(false),
            _ if answer.is_success() => Ok(true),
            _ => Err(self.http_error(&answer, &action)),
        }
    }

    /// Makes recent writes to `index` visible to search and count.
    pub async fn refresh(&self, index: &str) -> Result<(), SinkError> {
        let action = format!("refresh {index}");
        self.send_json(Method::Post, &format!("{index}/_refresh"), None, &action).await?;
        Ok(())
    }

    /// The mappings of `index` (the `mappings` object of `GET /<index>/_mapping`).
    pub async fn mappings(&self, index: &str) -> Result<Value, SinkError> {
        let action = format!("get mappings of {index}");
        let answer =
            self.send_json(Method::Get, &format!("{index}/_mapping"), None, &action).await?;
        let mut value: Value = self.parse(&answer, &action)?;
        match value.get_mut(index).map(|v| v["mappings"].take()) {
            Some(mappings) if mappings.is_object() => Ok(mappings),
            _ => Err(self.protocol_error(&action, format!("no mappings for {index}"))),
        }
    }

    /// Every document of `index` as (id, source), sorted by id. For tests and small indices:
    /// fails when the index holds more than [`SEARCH_ALL_LIMIT`] documents.
    pub async fn search_all(&self, index: &str) -> Result<Vec<(String, Value)>, SinkError> {
        let action = format!("read all documents of {index}");
        let query = serde_json::json!({
            "size": SEARCH_ALL_LIMIT,
            "track_total_hits": true,
            "query": { "match_all": {} }
        });
        let path = format!("{index}/_search");
        let answer = self.send_json(Method::Post, &path, Some(&query), &action).await?;
        let mut value: Value = self.parse(&answer, &action)?;
        let total = value["hits"]["total"]["value"].as_u64().unwrap_or(0);
        if total > SEARCH_ALL_LIMIT {
            return Err(self.protocol_error(
                &action,
                format!("{total} documents, more than the {SEARCH_ALL_LIMIT} this helper reads"),
            ));
        }
        let Value::Array(hits) = value["hits"]["hits"].take() else {
            return Err(self.protocol_error(&action, "no `hits.hits` array".to_owned()));
        };
        let mut docs = hits
            .into_iter()
            .map(|mut hit| {
                let id = hit["_id"].as_str().unwrap_or_default().to_owned();
                (id, hit["_source"].take())
            })
            .collect::<Vec<_>>();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(docs)
    }
}
