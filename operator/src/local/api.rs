//! An in-memory Kubernetes API server behind a real [`kube::Client`]: the control plane of
//! `kappa up` (served on loopback by [`super::serve`]) and of the controller tests.
//!
//! [`FakeKube`] is a [`tower::Service`] that answers the REST paths `kube::Api` uses, for any
//! kind: objects are stored as JSON, keyed by (apiVersion, plural, namespace, name). Controller
//! code runs unchanged against [`FakeKube::client`], and tests inspect or seed the store directly
//! ([`FakeKube::get`], [`FakeKube::insert`]), read the request log and inject faults.
//!
//! Faithful: `metav1.Status` errors (404 NotFound, 409 AlreadyExists/Conflict, 422 Invalid) that
//! kube turns into [`kube::Error::Api`]; optimistic locking on `resourceVersion` (a global
//! counter bumped by every write; no-op writes bump nothing); `generation` bumped on `.spec`
//! changes; the `/status` subresource (status writes touch only `.status`, main writes keep the
//! stored status and a create drops it) for every resource except configmaps, secrets, events,
//! leases and serviceaccounts; finalizers and `deletionTimestamp`; label selectors (`=`, `==`,
//! `!=`, `in`, `notin`, `key`, `!key`) and equality field selectors; list-then-watch with resume
//! from a `resourceVersion` (410 Expired once it is older than the kept history), selector
//! transitions reported as ADDED/DELETED, `timeoutSeconds` and bookmarks.
//!
//! Approximated: server-side apply is a JSON merge patch of the applied object (lists replace
//! whole, fields left out of a later apply are not removed). Field ownership is tracked per leaf
//! (a list is one leaf) only to report apply conflicts: an apply without `force` that changes a
//! value another manager wrote is a 409. Strategic merge patch is a JSON merge patch. Not
//! modelled: admission, defaulting, schema validation and CEL rules, garbage collection by owner
//! references, namespaces as a precondition, pagination (`limit` is ignored), `dryRun` (answered
//! with 400), `managedFields` in returned objects.
//!
//! [`kube::Client`] spawns its request buffer, so [`FakeKube::client`] must be called inside a
//! tokio runtime.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt as _, StreamExt as _};
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use kube::core::{ApiResource, GroupVersionKind};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast;
use tokio::time::{Instant, Interval};

/// The response body of [`FakeKube`]: one JSON document, or a watch stream of JSON lines.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// Resources whose main-resource writes may change `.status` (they have no status subresource).
const WITHOUT_STATUS_SUBRESOURCE: &[&str] =
    &["configmaps", "secrets", "events", "leases", "serviceaccounts"];
/// List kinds for plurals whose kind is not the capitalised singular.
const KNOWN_KINDS: &[(&str, &str)] = &[
    ("configmaps", "ConfigMap"),
    ("serviceaccounts", "ServiceAccount"),
    ("statefulsets", "StatefulSet"),
    ("replicasets", "ReplicaSet"),
    ("streamjobs", "StreamJob"),
    ("endpoints", "Endpoints"),
];
/// Fields the server owns; they never take part in field ownership.
const SERVER_FIELDS: &[&str] = &[
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/uid",
    "/metadata/resourceVersion",
    "/metadata/generation",
    "/metadata/creationTimestamp",
    "/metadata/deletionTimestamp",
    "/metadata/managedFields",
];
/// Watch events kept for watches that resume from a `resourceVersion`.
const HISTORY_LIMIT: usize = 4096;
/// How often a watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Watch duration when the client sets no `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(3600);
const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// An in-memory Kubernetes API server; clones share one store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use k8s_openapi::api::core::v1::ConfigMap;
/// use kube::api::{Api, PostParams};
///
/// let kube = kappa_operator::local::api::FakeKube::new();
/// let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
/// let mut cm = ConfigMap::default();
/// cm.metadata.name = Some("settings".into());
/// cms.create(&PostParams::default(), &cm).await.unwrap();
/// assert!(kube.get_as::<ConfigMap>(Some("default"), "settings").is_some());
/// # }
/// ```
#[derive(Clone, Default)]
pub struct FakeKube {
    state: Arc<Mutex<State>>,
}

/// One request as [`FakeKube`] received it, with the status code it answered.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// The HTTP method.
    pub method: Method,
    /// Path and query, e.g. `/api/v1/namespaces/default/configmaps?labelSelector=app%3Dx`.
    pub path: String,
    /// The `Content-Type` header, when the request had one.
    pub content_type: Option<String>,
    /// The body, when it was JSON.
    pub body: Option<Value>,
    /// The HTTP status code of the answer (200 for a watch that started).
    pub status: u16,
}

impl RecordedRequest {
    /// The decoded value of query parameter `key`, e.g. `fieldManager`.
    pub fn query(&self, key: &str) -> Option<String> {
        let query = self.path.split_once('?').map_or("", |(_, q)| q);
        Query::parse(query).get(key).map(str::to_owned)
    }
}

type Matcher = Box<dyn Fn(&RecordedRequest) -> bool + Send + Sync>;

struct Fault {
    matches: Matcher,
    code: u16,
    remaining: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    api_version: String,
    plural: String,
    namespace: Option<String>,
    name: String,
}

#[derive(Clone)]
struct Stored {
    object: Value,
    /// JSON pointer of a leaf field → the field manager that last wrote it.
    owners: BTreeMap<String, String>,
}

#[derive(Clone)]
struct Change {
    revision: u64,
    kind: &'static str,
    key: Key,
    object: Value,
    previous: Option<Value>,
}

struct State {
    objects: BTreeMap<Key, Stored>,
    revision: u64,
    history: VecDeque<Change>,
    changes: broadcast::Sender<Change>,
    requests: Vec<RecordedRequest>,
    /// Off for a long-running server (`kappa up`), whose request log would only grow.
    record_requests: bool,
    faults: Vec<Fault>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            revision: 0,
            history: VecDeque::new(),
            changes: broadcast::channel(HISTORY_LIMIT).0,
            requests: Vec::new(),
            record_requests: true,
            faults: Vec::new(),
        }
    }
}

/// Who writes an object, for field ownership.
enum Writer<'a> {
    /// A test fixture: owns nothing.
    Fixture,
    /// create, replace or a non-apply patch by this field manager: owns what it changed.
    Update(&'a str),
    /// Server-side apply: the manager owns every field of the applied object.
    Apply(&'a str, &'a Value),
}

impl FakeKube {
    /// An empty API server.
    pub fn new() -> Self {
        Self::default()
    }

    /// A server that keeps no request log ([`FakeKube::requests`] stays empty), for one that
    /// runs for days.
    pub fn without_request_log() -> Self {
        let api = Self::default();
        api.lock().record_requests = false;
        api
    }

    /// Every stored object and the revision counter, as one JSON document for
    /// [`FakeKube::import`]. Field ownership and watch history are not kept.
    pub fn export(&self) -> Value {
        let state = self.lock();
        let objects: Vec<Value> = state.objects.values().map(|s| s.object.clone()).collect();
        json!({"revision": state.revision, "objects": objects})
    }

    /// Loads what [`FakeKube::export`] wrote into an empty server, keeping resource versions,
    /// so clients that cached objects before a restart still get conflicts right.
    pub fn import(&self, exported: &Value) -> Result<usize, String> {
        let objects = exported["objects"].as_array().ok_or("no `objects` list")?;
        let mut state = self.lock();
        for object in objects {
            let text = |v: &Value| v.as_str().map(str::to_owned);
            let (Some(api_version), Some(kind), Some(name)) = (
                text(&object["apiVersion"]),
                text(&object["kind"]),
                text(&object["metadata"]["name"]),
            ) else {
                return Err(format!("an object without apiVersion, kind or name: {object}"));
            };
            let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
            let plural =
                ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind)).plural;
            let namespace = text(&object["metadata"]["namespace"]);
            let key = key(&api_version, &plural, namespace.as_deref(), &name);
            state.objects.insert(key, Stored { object: object.clone(), owners: BTreeMap::new() });
        }
        let newest = objects
            .iter()
            .filter_map(|o| o["metadata"]["resourceVersion"].as_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        state.revision = exported["revision"].as_u64().unwrap_or(0).max(newest);
        Ok(objects.len())
    }

    /// The revision counter: it moves on every write, so a saver can tell whether anything
    /// changed since it last looked.
    pub fn revision(&self) -> u64 {
        self.lock().revision
    }

    /// A [`kube::Client`] whose requests this server answers, with default namespace `default`.
    ///
    /// Must be called inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// The stored object, e.g. `get("apps/v1", "deployments", Some("default"), "engine")`.
    pub fn get(
        &self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let key = key(api_version, plural, ns, name);
        self.lock().objects.get(&key).map(|s| s.object.clone())
    }

    /// The stored objects of one resource, in one namespace or (`None`) in all.
    pub fn list(&self, api_version: &str, plural: &str, ns: Option<&str>) -> Vec<Value> {
        let state = self.lock();
        let scope = Scope { api_version, plural, namespace: ns, selector: &Selector::default() };
        state
            .objects
            .iter()
            .filter(|(k, s)| scope.matches(k, &s.object))
            .map(|(_, s)| s.object.clone())
            .collect()
    }

    /// The stored object as a typed resource, e.g. `get_as::<Deployment>(Some("default"), "engine")`.
    ///
    /// Panics when the stored JSON does not deserialize as `K`.
    pub fn get_as<K>(&self, ns: Option<&str>, name: &str) -> Option<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let object = self.get(&K::api_version(&()), &K::plural(&()), ns, name)?;
        Some(
            serde_json::from_value(object)
                .expect("stored object deserializes as the requested kind"),
        )
    }

    /// The stored objects of a typed resource, in one namespace or (`None`) in all.
    pub fn list_as<K>(&self, ns: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let items = self.list(&K::api_version(&()), &K::plural(&()), ns);
        items
            .into_iter()
            .map(|o| serde_json::from_value(o).expect("stored object deserializes"))
            .collect()
    }

    /// Creates or replaces an object as a fixture would (`kubectl apply`), status included, and
    /// returns it as stored. Watches see the change; no field manager owns what it wrote.
    ///
    /// Panics when `object` lacks `apiVersion`, `kind` or `metadata.name`.
    pub fn insert(&self, object: impl Serialize) -> Value {
        let mut object = serde_json::to_value(object).expect("fixture serializes to JSON");
        let text = |v: &Value| v.as_str().map(str::to_owned);
        let api_version = text(&object["apiVersion"]).expect("fixture has an apiVersion");
        let kind = text(&object["kind"]).expect("fixture has a kind");
        let name = text(&object["metadata"]["name"]).expect("fixture has metadata.name");
        let namespace = text(&object["metadata"]["namespace"]);
        let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
        let plural = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &kind)).plural;
        let key = key(&api_version, &plural, namespace.as_deref(), &name);
        let mut state = self.lock();
        match state.objects.get(&key).cloned() {
            Some(old) => state.finish_update(key, &old, object, Writer::Fixture),
            None => {
                stamp_new(&mut object, state.revision + 1);
                state.commit(key, object, BTreeMap::new())
            }
        }
    }

    /// Removes an object at once, finalizers or not (as garbage collection or `kubectl delete
    /// --force` would), and returns it; watches see DELETED.
    pub fn remove(
        &self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.lock().remove(&key(api_version, plural, ns, name))
    }

    /// Which field manager owns each leaf field of an object, by JSON pointer (`/spec/replicas`).
    pub fn field_owners(
        &self,
        api_version: &str,
        plural: &str,
        ns: Option<&str>,
        name: &str,
    ) -> BTreeMap<String, String> {
        let key = key(api_version, plural, ns, name);
        self.lock().objects.get(&key).map(|s| s.owners.clone()).unwrap_or_default()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Answers the next `times` requests with this method whose path and query contain
    /// `path_contains` with an error `Status` of HTTP `code` (e.g. 500) instead of serving them.
    pub fn fail_next(&self, method: Method, path_contains: &str, code: u16, times: usize) {
        let needle = path_contains.to_owned();
        self.fail_next_when(move |r| r.method == method && r.path.contains(&needle), code, times);
    }

    /// Answers the next `times` requests for which `matches` holds with an error `Status` of
    /// HTTP `code` instead of serving them. The request's `status` is still 0 when `matches` runs.
    pub fn fail_next_when(
        &self,
        matches: impl Fn(&RecordedRequest) -> bool + Send + Sync + 'static,
        code: u16,
        times: usize,
    ) {
        self.lock().faults.push(Fault { matches: Box::new(matches), code, remaining: times });
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its message behind ours.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(self, request: Request<kube::client::Body>) -> Response<FakeBody> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let mut recorded = RecordedRequest {
            method: parts.method,
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned()),
            content_type: parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: serde_json::from_slice(&bytes).ok(),
            status: 0,
        };
        let mut state = self.lock();
        let reply = match state.take_fault(&recorded) {
            Some(code) => Err(ApiError::new(code, reason_for(code), "fault injected by FakeKube")),
            None => state.dispatch(&recorded),
        };
        recorded.status = match &reply {
            Ok(Reply::Json(code, _)) => *code,
            Ok(Reply::Watch(_)) => 200,
            Err(e) => e.code,
        };
        if state.record_requests {
            state.requests.push(recorded);
        }
        drop(state);
        match reply {
            Ok(Reply::Json(code, body)) => json_response(code, &body),
            Ok(Reply::Watch(watch)) => {
                let lines = futures::stream::unfold(*watch, |mut w| async move {
                    w.next_line().await.map(|l| (l, w))
                });
                let body =
                    StreamBody::new(lines.map(|line| Ok::<_, Infallible>(Frame::data(line))));
                let response =
                    Response::builder().status(200).header(CONTENT_TYPE, "application/json");
                response.body(body.boxed_unsync()).expect("static response parts are valid")
            }
            Err(e) => json_response(e.code, &e.status()),
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeKube {
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        Box::pin(self.clone().handle(request).map(Ok))
    }
}

fn json_response(code: u16, body: &Value) -> Response<FakeBody> {
    let body = Full::new(Bytes::from(body.to_string())).boxed_unsync();
    let response = Response::builder().status(code).header(CONTENT_TYPE, "application/json");
    response.body(body).expect("static response parts are valid")
}

enum Reply {
    Json(u16, Value),
    Watch(Box<Watch>),
}

/// The resource a request path names.
struct Target {
    api_version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Target {
    /// `/api/{v}/...` or `/apis/{group}/{v}/...`, then `[namespaces/{ns}/]{plural}[/{name}[/status]]`.
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (api_version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (version.to_string(), rest),
            ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (plural, name, status) = match rest {
            [plural] => (plural, None, false),
            [plural, name] => (plural, Some(name.to_string()), false),
            [plural, name, "status"] => (plural, Some(name.to_string()), true),
            _ => return None,
        };
        Some(Self { api_version, plural: plural.to_string(), namespace, name, status })
    }

    fn key(&self, name: &str) -> Key {
        key(&self.api_version, &self.plural, self.namespace.as_deref(), name)
    }

    fn has_status_subresource(&self) -> bool {
        !WITHOUT_STATUS_SUBRESOURCE.contains(&self.plural.as_str())
    }

    fn scope<'a>(&'a self, selector: &'a Selector) -> Scope<'a> {
        Scope {
            api_version: &self.api_version,
            plural: &self.plural,
            namespace: self.namespace.as_deref(),
            selector,
        }
    }
}

fn key(api_version: &str, plural: &str, namespace: Option<&str>, name: &str) -> Key {
    Key {
        api_version: api_version.into(),
        plural: plural.into(),
        namespace: namespace.map(Into::into),
        name: name.into(),
    }
}

/// The objects a list or watch covers.
struct Scope<'a> {
    api_version: &'a str,
    plural: &'a str,
    namespace: Option<&'a str>,
    selector: &'a Selector,
}

impl Scope<'_> {
    fn matches(&self, key: &Key, object: &Value) -> bool {
        key.api_version == self.api_version
            && key.plural == self.plural
            && self.namespace.is_none_or(|ns| key.namespace.as_deref() == Some(ns))
            && self.selector.matches(object)
    }
}

impl State {
    fn take_fault(&mut self, request: &RecordedRequest) -> Option<u16> {
        let fault = self.faults.iter_mut().find(|f| f.remaining > 0 && (f.matches)(request))?;
        fault.remaining -= 1;
        let code = fault.code;
        self.faults.retain(|f| f.remaining > 0);
        Some(code)
    }

    fn dispatch(&mut self, request: &RecordedRequest) -> Result<Reply, ApiError> {
        let (path, query) = request.path.split_once('?').unwrap_or((&request.path, ""));
        let not_found = || {
            ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            )
        };
        let target = Target::parse(path).ok_or_else(not_found)?;
        let query = Query::parse(query);
        if request.method != Method::GET && query.get("dryRun").is_some() {
            return Err(ApiError::bad_request("dryRun is not supported by FakeKube"));
        }
        let body = || {
            request
                .body
                .clone()
                .filter(Value::is_object)
                .ok_or_else(|| ApiError::bad_request("the request body is not a JSON object"))
        };
        let manager = query.get("fieldManager").unwrap_or("unknown");
        match (&request.method, target.name.as_deref()) {
            (&Method::GET, None) if query.flag("watch") => self.watch(&target, &query),
            (&Method::GET, None) => self.list(&target, &query),
            (&Method::GET, Some(name)) => self.read(&target.key(name)).map(|o| Reply::Json(200, o)),
            (&Method::POST, None) => self.create(&target, body()?, Writer::Update(manager)),
            (&Method::PUT, Some(name)) => self.replace(&target, name, body()?, manager),
            (&Method::PATCH, Some(name)) => {
                let content_type = request.content_type.as_deref().unwrap_or_default();
                let patch = request
                    .body
                    .clone()
                    .ok_or_else(|| ApiError::bad_request("the patch is not JSON"))?;
                self.patch(&target, name, patch, content_type, &query)
            }
            (&Method::DELETE, Some(name)) => {
                let key = target.key(name);
                let (object, removed) = self.delete(&key, request.body.as_ref())?;
                if !removed {
                    return Ok(Reply::Json(200, object));
                }
                let details =
                    json!({"name": key.name, "kind": key.plural, "uid": object["metadata"]["uid"]});
                Ok(Reply::Json(
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
                ))
            }
            (&Method::DELETE, None) => {
                let selector = Selector::from_query(&query)?;
                let scope = target.scope(&selector);
                let keys: Vec<Key> = self
                    .objects
                    .iter()
                    .filter(|(k, s)| scope.matches(k, &s.object))
                    .map(|(k, _)| k.clone())
                    .collect();
                let items = keys
                    .iter()
                    .filter_map(|k| self.delete(k, None).ok())
                    .map(|(object, _)| object)
                    .collect();
                Ok(Reply::Json(200, self.list_document(&target, items)))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{} is not supported on {path}", request.method),
            )),
        }
    }

    fn read(&self, key: &Key) -> Result<Value, ApiError> {
        self.objects.get(key).map(|s| s.object.clone()).ok_or_else(|| ApiError::not_found(key))
    }

    fn list(&self, target: &Target, query: &Query) -> Result<Reply, ApiError> {
        let selector = Selector::from_query(query)?;
        let scope = target.scope(&selector);
        let items = self
            .objects
            .iter()
            .filter(|(k, s)| scope.matches(k, &s.object))
            .map(|(_, s)| s.object.clone())
            .collect();
        Ok(Reply::Json(200, self.list_document(target, items)))
    }

    fn list_document(&self, target: &Target, items: Vec<Value>) -> Value {
        json!({
            "apiVersion": target.api_version,
            "kind": format!("{}List", self.kind_for(target)),
            "metadata": {"resourceVersion": self.revision.to_string()},
            "items": items,
        })
    }

    /// The kind of a resource: from a stored object, else from its plural.
    fn kind_for(&self, target: &Target) -> String {
        let stored = self
            .objects
            .iter()
            .find(|(k, _)| k.api_version == target.api_version && k.plural == target.plural);
        if let Some(kind) = stored.and_then(|(_, s)| s.object["kind"].as_str()) {
            return kind.to_owned();
        }
        if let Some((_, kind)) = KNOWN_KINDS.iter().find(|(p, _)| *p == target.plural) {
            return (*kind).to_owned();
        }
        let singular = target.plural.strip_suffix("ies").map(|s| format!("{s}y"));
        let singular = singular.unwrap_or_else(|| {
            target.plural.strip_suffix('s').unwrap_or(&target.plural).to_owned()
        });
        let mut chars = singular.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
    }

    fn create(
        &mut self,
        target: &Target,
        mut object: Value,
        writer: Writer<'_>,
    ) -> Result<Reply, ApiError> {
        let meta = object
            .as_object_mut()
            .expect("checked to be an object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(name), _) => name.to_owned(),
            (None, Some(prefix)) => format!("{prefix}{}", name_suffix(self.revision + 1)),
            (None, None) => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "metadata.name or metadata.generateName is required",
                ))
            }
        };
        meta["name"] = json!(name);
        match &target.namespace {
            Some(ns) => meta["namespace"] = json!(ns),
            None => remove_field(meta, "namespace"),
        }
        for field in
            ["uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp"]
        {
            remove_field(meta, field);
        }
        if object.get("apiVersion").is_none() {
            object["apiVersion"] = json!(target.api_version);
        }
        if object.get("kind").is_none() {
            object["kind"] = json!(self.kind_for(target));
        }
        if target.has_status_subresource() {
            remove_field(&mut object, "status");
        }
        let key = target.key(&name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", key.plural),
            ));
        }
        stamp_new(&mut object, self.revision + 1);
        let mut owners = BTreeMap::new();
        let manager = match writer {
            Writer::Update(m) | Writer::Apply(m, _) => m,
            Writer::Fixture => "",
        };
        for (path, _) in leaves(&object) {
            owners.insert(path, manager.to_owned());
        }
        Ok(Reply::Json(201, self.commit(key, object, owners)))
    }

    fn replace(
        &mut self,
        target: &Target,
        name: &str,
        object: Value,
        manager: &str,
    ) -> Result<Reply, ApiError> {
        let key = target.key(name);
        let old = self.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(&key))?;
        if object["metadata"]["name"].as_str().is_some_and(|n| n != name) {
            return Err(ApiError::bad_request("metadata.name does not match the name in the path"));
        }
        let new = scoped(target, &old.object, object.clone());
        check_resource_version(&key, &old.object, &object)?;
        Ok(Reply::Json(200, self.finish_update(key, &old, new, Writer::Update(manager))))
    }

    fn patch(
        &mut self,
        target: &Target,
        name: &str,
        patch: Value,
        content_type: &str,
        query: &Query,
    ) -> Result<Reply, ApiError> {
        let key = target.key(name);
        let media_type = content_type.split(';').next().unwrap_or_default().trim();
        let apply = media_type == APPLY_PATCH;
        let manager = query.get("fieldManager");
        if apply && manager.is_none() {
            return Err(ApiError::new(
                422,
                "Invalid",
                "fieldManager: Required value: is required for apply patch",
            ));
        }
        let manager = manager.unwrap_or("unknown");
        let Some(old) = self.objects.get(&key).cloned() else {
            if apply && !target.status && patch.is_object() {
                let mut object = patch.clone();
                object["metadata"]["name"] = json!(name);
                return self.create(target, object, Writer::Apply(manager, &patch));
            }
            return Err(ApiError::not_found(&key));
        };
        let mut new = old.object.clone();
        match media_type {
            APPLY_PATCH
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => json_patch::merge(&mut new, &patch),
            "application/json-patch+json" => {
                let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                for operation in &operations.0 {
                    // As the apiserver's JSON patch does, a test for null passes on an absent
                    // field (kube's finalizer helper relies on it).
                    if let json_patch::PatchOperation::Test(test) = operation {
                        if test.value.is_null() && new.pointer(test.path.as_str()).is_none() {
                            continue;
                        }
                    }
                    json_patch::patch(&mut new, std::slice::from_ref(operation))
                        .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?;
                }
            }
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("unsupported patch type {other:?}"),
                ))
            }
        }
        check_resource_version(&key, &old.object, &new)?;
        let new = scoped(target, &old.object, new);
        if !apply {
            return Ok(Reply::Json(
                200,
                self.finish_update(key, &old, new, Writer::Update(manager)),
            ));
        }
        let applied = scoped(target, &json!({}), patch);
        if !query.flag("force") {
            let conflicts: Vec<String> = leaves(&applied)
                .filter_map(|(path, value)| {
                    let owner = old.owners.get(&path).filter(|o| o.as_str() != manager)?;
                    (old.object.pointer(&path) != Some(value))
                        .then(|| format!("conflict with \"{owner}\": {}", path.replace('/', ".")))
                })
                .collect();
            if !conflicts.is_empty() {
                let message = format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    conflicts.join("; ")
                );
                return Err(ApiError::new(409, "Conflict", message));
            }
        }
        Ok(Reply::Json(200, self.finish_update(key, &old, new, Writer::Apply(manager, &applied))))
    }

    /// Deletes an object, or marks it terminating while it has finalizers; returns it and
    /// whether it is gone.
    fn delete(&mut self, key: &Key, options: Option<&Value>) -> Result<(Value, bool), ApiError> {
        let old = self.read(key)?;
        let preconditions = options.map_or(&Value::Null, |o| &o["preconditions"]);
        for field in ["uid", "resourceVersion"] {
            if preconditions[field].is_string() && preconditions[field] != old["metadata"][field] {
                return Err(ApiError::conflict(
                    key,
                    &format!("the {field} precondition does not match"),
                ));
            }
        }
        let finalizers = old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if !finalizers {
            return Ok((self.remove(key).expect("read above"), true));
        }
        if old["metadata"]["deletionTimestamp"].is_string() {
            return Ok((old, false));
        }
        let mut terminating = old;
        terminating["metadata"]["deletionTimestamp"] = json!(now());
        terminating["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        let owners = self.objects[key].owners.clone();
        Ok((self.commit(key.clone(), terminating, owners), false))
    }

    /// Stores `new` as the next version of `old`: server fields kept, generation bumped on a
    /// spec change, owners updated; a no-op write changes nothing.
    fn finish_update(
        &mut self,
        key: Key,
        old: &Stored,
        mut new: Value,
        writer: Writer<'_>,
    ) -> Value {
        for field in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "resourceVersion",
        ] {
            match (&writer, old.object["metadata"].get(field)) {
                (Writer::Fixture, _) if field == "deletionTimestamp" => {}
                (_, Some(value)) => new["metadata"][field] = value.clone(),
                (_, None) => remove_field(&mut new["metadata"], field),
            }
        }
        if !matches!(writer, Writer::Fixture) || new["metadata"].get("generation").is_none() {
            let generation = old.object["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] =
                json!(generation + i64::from(new.get("spec") != old.object.get("spec")));
        }
        let mut owners = old.owners.clone();
        match writer {
            Writer::Fixture => {}
            Writer::Update(manager) => {
                for (path, value) in leaves(&new) {
                    if old.object.pointer(&path) != Some(value) {
                        owners.insert(path, manager.to_owned());
                    }
                }
            }
            Writer::Apply(manager, applied) => {
                for (path, _) in leaves(applied) {
                    owners.insert(path, manager.to_owned());
                }
            }
        }
        owners.retain(|path, _| new.pointer(path).is_some_and(|v| !v.is_null()));
        if new == old.object {
            self.objects.get_mut(&key).expect("updating a stored object").owners = owners;
            return new;
        }
        self.commit(key, new, owners)
    }

    /// Writes the next revision of an object, or removes it when it is terminating without
    /// finalizers, and tells the watches.
    fn commit(&mut self, key: Key, mut object: Value, owners: BTreeMap<String, String>) -> Value {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        let no_finalizers = object["metadata"]["finalizers"].as_array().is_none_or(Vec::is_empty);
        if object["metadata"]["deletionTimestamp"].is_string() && no_finalizers {
            let previous = self.objects.remove(&key).map(|s| s.object);
            self.publish("DELETED", key, object.clone(), previous);
            return object;
        }
        let previous = self
            .objects
            .insert(key.clone(), Stored { object: object.clone(), owners })
            .map(|s| s.object);
        self.publish(
            if previous.is_some() { "MODIFIED" } else { "ADDED" },
            key,
            object.clone(),
            previous,
        );
        object
    }

    fn remove(&mut self, key: &Key) -> Option<Value> {
        let stored = self.objects.remove(key)?;
        self.revision += 1;
        let mut object = stored.object.clone();
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.publish("DELETED", key.clone(), object.clone(), Some(stored.object));
        Some(object)
    }

    fn publish(&mut self, kind: &'static str, key: Key, object: Value, previous: Option<Value>) {
        let change = Change { revision: self.revision, kind, key, object, previous };
        if self.history.len() == HISTORY_LIMIT {
            self.history.pop_front();
        }
        self.history.push_back(change.clone());
        // No receiver just means no watch is open.
        let _ = self.changes.send(change);
    }

    /// Starts a watch: the replayed or initial events are computed under the store lock together
    /// with the subscription, so no change falls between them.
    fn watch(&self, target: &Target, query: &Query) -> Result<Reply, ApiError> {
        let selector = Selector::from_query(query)?;
        let mut watch = Watch {
            pending: VecDeque::new(),
            changes: self.changes.subscribe(),
            api_version: target.api_version.clone(),
            plural: target.plural.clone(),
            namespace: target.namespace.clone(),
            selector,
            ended: false,
            deadline: Instant::now()
                + query
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs),
            bookmarks: query.flag("allowWatchBookmarks").then(|| {
                let interval =
                    tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
                (interval, self.kind_for(target))
            }),
            revision: self.revision,
        };
        match query.get("resourceVersion").filter(|rv| !rv.is_empty() && *rv != "0") {
            None => {
                let scope = target.scope(&watch.selector);
                let current = self.objects.iter().filter(|(k, s)| scope.matches(k, &s.object));
                watch.pending.extend(current.map(|(_, s)| event_line("ADDED", &s.object)));
            }
            Some(rv) => {
                let rv: u64 = rv.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}"))
                })?;
                let oldest = self.history.front().map_or(self.revision + 1, |c| c.revision);
                if rv < self.revision && rv + 1 < oldest {
                    watch.expire(rv);
                } else {
                    let replay: Vec<Bytes> = self
                        .history
                        .iter()
                        .filter(|c| c.revision > rv)
                        .filter_map(|c| watch.render(c))
                        .collect();
                    watch.pending.extend(replay);
                }
            }
        }
        Ok(Reply::Watch(Box::new(watch)))
    }
}

/// Keeps `new` to what the path may change: only `.status` on `/status`, everything but
/// `.status` on a main resource that has a status subresource.
fn scoped(target: &Target, old: &Value, new: Value) -> Value {
    let (mut result, status) = if target.status {
        (old.clone(), new.get("status").cloned())
    } else if target.has_status_subresource() {
        (new, old.get("status").cloned())
    } else {
        return new;
    };
    match status {
        Some(status) => result["status"] = status,
        None => remove_field(&mut result, "status"),
    }
    result
}

fn remove_field(object: &mut Value, field: &str) {
    if let Some(map) = object.as_object_mut() {
        map.remove(field);
    }
}

fn check_resource_version(key: &Key, old: &Value, new: &Value) -> Result<(), ApiError> {
    match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            Err(ApiError::conflict(key, "the object has been modified; please apply your changes to the latest version and try again"))
        }
        _ => Ok(()),
    }
}

/// Server-filled metadata of a new object; values a fixture set are kept.
fn stamp_new(object: &mut Value, revision: u64) {
    let meta = &mut object["metadata"];
    let defaults = [
        ("uid", json!(format!("00000000-0000-4000-8000-{revision:012x}"))),
        ("creationTimestamp", json!(now())),
        ("generation", json!(1)),
    ];
    for (field, value) in defaults {
        if meta.get(field).is_none() {
            meta[field] = value;
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Five characters from the alphabet the apiserver uses for `generateName`.
fn name_suffix(mut n: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Leaf fields of an object as (JSON pointer, value); objects are walked, lists are one leaf.
fn leaves(value: &Value) -> impl Iterator<Item = (String, &Value)> {
    fn walk<'a>(value: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(v, format!("{path}/{}", k.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            _ if !path.is_empty() => out.push((path, value)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out.into_iter()
        .filter(|(p, _)| !SERVER_FIELDS.iter().any(|f| p == f || p.starts_with(&format!("{f}/"))))
}

/// An open watch: lines still to send, then live changes until the deadline.
struct Watch {
    pending: VecDeque<Bytes>,
    changes: broadcast::Receiver<Change>,
    api_version: String,
    plural: String,
    namespace: Option<String>,
    selector: Selector,
    ended: bool,
    deadline: Instant,
    /// The bookmark timer and the kind bookmarks name, when the client allows bookmarks.
    bookmarks: Option<(Interval, String)>,
    revision: u64,
}

impl Watch {
    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            if self.ended {
                return None;
            }
            let (bookmarks, changes) = (&mut self.bookmarks, &mut self.changes);
            let wake = tokio::select! {
                () = tokio::time::sleep_until(self.deadline) => return None,
                () = async {
                    match bookmarks {
                        Some((interval, _)) => _ = interval.tick().await,
                        None => std::future::pending().await,
                    }
                } => None,
                change = changes.recv() => Some(change),
            };
            match wake {
                None => {
                    let kind = self.bookmarks.as_ref().map(|(_, kind)| kind.clone());
                    let meta = json!({"resourceVersion": self.revision.to_string()});
                    let object =
                        json!({"apiVersion": self.api_version, "kind": kind, "metadata": meta});
                    self.pending.push_back(event_line("BOOKMARK", &object));
                }
                Some(Ok(change)) => {
                    self.revision = change.revision;
                    if let Some(line) = self.render(&change) {
                        return Some(line);
                    }
                }
                Some(Err(broadcast::error::RecvError::Lagged(_))) => self.expire(self.revision),
                Some(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }

    /// The event line for a change, if it concerns this watch. Objects that start or stop
    /// matching the selector are reported as ADDED or DELETED, as the apiserver does.
    fn render(&self, change: &Change) -> Option<Bytes> {
        let key = &change.key;
        let in_scope = key.api_version == self.api_version
            && key.plural == self.plural
            && self.namespace.as_ref().is_none_or(|ns| key.namespace.as_ref() == Some(ns));
        if !in_scope {
            return None;
        }
        let before = change.previous.as_ref().is_some_and(|p| self.selector.matches(p));
        let after = change.kind != "DELETED" && self.selector.matches(&change.object);
        let kind = match (before, after) {
            (false, true) => "ADDED",
            (true, true) => "MODIFIED",
            (true, false) => "DELETED",
            (false, false) => return None,
        };
        Some(event_line(kind, &change.object))
    }

    fn expire(&mut self, rv: u64) {
        let status =
            ApiError::new(410, "Expired", format!("too old resource version: {rv}")).status();
        self.pending.push_back(event_line("ERROR", &status));
        self.ended = true;
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

/// A failed request, answered as a `metav1.Status`.
#[derive(Debug)]
struct ApiError {
    code: u16,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    fn not_found(key: &Key) -> Self {
        Self::new(404, "NotFound", format!("{} \"{}\" not found", key.plural, key.name))
    }

    fn conflict(key: &Key, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{}\": {why}", key.plural, key.name),
        )
    }

    fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        })
    }
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}

/// Decoded query parameters.
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(query: &str) -> Self {
        let pairs = query.split('&').filter(|p| !p.is_empty());
        Self(
            pairs
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .map(|(k, v)| (percent_decode(k), percent_decode(v)))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A label and field selector, each a list of requirements that must all hold.
#[derive(Default)]
struct Selector {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    fn from_query(query: &Query) -> Result<Self, ApiError> {
        let parse = |param| query.get(param).map_or(Ok(Vec::new()), parse_requirements);
        Ok(Self { labels: parse("labelSelector")?, fields: parse("fieldSelector")? })
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = |key: &str| object["metadata"]["labels"][key].as_str().map(str::to_owned);
        let fields = |path: &str| {
            let value = path.split('.').try_fold(object, |v, segment| v.get(segment))?;
            Some(value.as_str().map_or_else(|| value.to_string(), str::to_owned))
        };
        self.labels.iter().all(|r| r.matches(labels))
            && self.fields.iter().all(|r| r.matches(fields))
    }
}

impl Requirement {
    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        match self {
            Self::Equals(key, value) => lookup(key).as_ref() == Some(value),
            Self::NotEquals(key, value) => lookup(key).as_ref() != Some(value),
            Self::In(key, values) => lookup(key).is_some_and(|v| values.contains(&v)),
            Self::NotIn(key, values) => lookup(key).is_none_or(|v| !values.contains(&v)),
            Self::Exists(key) => lookup(key).is_some(),
            Self::NotExists(key) => lookup(key).is_none(),
        }
    }
}

/// `a=b,c!=d,e in (f,g),h notin (i),j,!k`: commas inside parentheses belong to a set.
fn parse_requirements(selector: &str) -> Result<Vec<Requirement>, ApiError> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&selector[start..]);
    let set = |text: &str| -> Result<Vec<String>, ApiError> {
        let inner = text.trim().strip_prefix('(').and_then(|t| t.strip_suffix(')'));
        let inner =
            inner.ok_or_else(|| ApiError::bad_request(format!("invalid selector {selector:?}")))?;
        Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
    };
    let mut requirements = Vec::new();
    for term in terms.into_iter().map(str::trim).filter(|t| !t.is_empty()) {
        let requirement = if let Some((key, values)) = term.split_once(" notin ") {
            Requirement::NotIn(key.trim().to_owned(), set(values)?)
        } else if let Some((key, values)) = term.split_once(" in ") {
            Requirement::In(key.trim().to_owned(), set(values)?)
        } else if let Some((key, value)) = term.split_once("!=") {
            Requirement::NotEquals(key.trim().to_owned(), value.trim().to_owned())
        } else if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            Requirement::Equals(key.trim().to_owned(), value.trim().to_owned())
        } else if let Some(key) = term.strip_prefix('!') {
            Requirement::NotExists(key.trim().to_owned())
        } else {
            Requirement::Exists(term.to_owned())
        };
        requirements.push(requirement);
    }
    Ok(requirements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_sets_and_negations() {
        let object = json!({"metadata": {"name": "a", "labels": {"app": "x", "tier": "web"}}});
        let matches = |label: &str| {
            let query = Query::parse(&format!("labelSelector={}", label.replace(' ', "+")));
            Selector::from_query(&query).unwrap().matches(&object)
        };
        assert!(matches("app=x,tier==web"));
        assert!(matches("app in (x, y),!missing,tier"));
        assert!(!matches("app notin (x)"));
        assert!(!matches("app!=x"));
        let by_name =
            Selector::from_query(&Query::parse("fieldSelector=metadata.name%3Da")).unwrap();
        assert!(by_name.matches(&object));
    }

    #[test]
    fn paths_name_namespaced_cluster_and_status_targets() {
        let t =
            Target::parse("/apis/kappa.dev/v1alpha1/namespaces/ns/streamjobs/job/status").unwrap();
        assert_eq!(
            (
                t.api_version.as_str(),
                t.plural.as_str(),
                t.namespace.as_deref(),
                t.name.as_deref(),
                t.status
            ),
            ("kappa.dev/v1alpha1", "streamjobs", Some("ns"), Some("job"), true)
        );
        let t = Target::parse("/api/v1/namespaces/ns").unwrap();
        assert_eq!(
            (t.plural.as_str(), t.namespace, t.name.as_deref()),
            ("namespaces", None, Some("ns"))
        );
        assert!(Target::parse("/version").is_none());
    }
}
