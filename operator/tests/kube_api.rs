//! `FakeKube` through a real `kube::Client`: typed and dynamic `Api`s, kube's watcher,
//! Controller and event Recorder see apiserver behaviour (errors, locking, subresources,
//! finalizers, watches).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ConfigMap;
use kappa_operator::local::api::FakeKube;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, WatchEvent};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{controller::Action, watcher, Controller};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

/// Bound on every wait for a watch event or a reconcile.
const WAIT: Duration = Duration::from_secs(10);

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    let labels: BTreeMap<_, _> = labels.iter().copied().collect();
    let object = json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}});
    serde_json::from_value(object).unwrap()
}

fn deployment(replicas: i32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "engine", "labels": {"app": "engine"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "engine"}},
            "template": {"metadata": {"labels": {"app": "engine"}}, "spec": {"containers": [{"name": "engine", "image": image}]}},
        },
    })
}

fn stream_jobs(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("kappa.dev", "v1alpha1", "StreamJob");
    Api::default_namespaced_with(client, &ApiResource::from_gvk(&gvk))
}

fn stream_job(version: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kappa.dev/v1alpha1", "kind": "StreamJob",
        "metadata": {"name": "tx-stats"},
        "spec": {"version": version},
        "status": {"phase": "ignored on create"},
    }))
    .unwrap()
}

/// The HTTP code of the `kube::Error::Api` that `result` must be.
fn api_code<T: Debug>(result: Result<T, kube::Error>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names<K: ResourceExt>(objects: impl IntoIterator<Item = K>) -> Vec<String> {
    objects.into_iter().map(|o| o.name_any()).collect()
}

#[tokio::test]
async fn lists_filter_by_label_selector_and_namespace() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    let pp = PostParams::default();
    cms.create(&pp, &config_map("a", &[("app", "x"), ("tier", "web")])).await.unwrap();
    cms.create(&pp, &config_map("b", &[("app", "y")])).await.unwrap();
    cms.create(&pp, &config_map("c", &[])).await.unwrap();
    let other: Api<ConfigMap> = Api::namespaced(kube.client(), "other");
    other.create(&pp, &config_map("d", &[("app", "x")])).await.unwrap();

    let select = |s: &str| ListParams::default().labels(s);
    assert_eq!(names(cms.list(&select("app=x,tier=web")).await.unwrap()), ["a"]);
    assert_eq!(names(cms.list(&select("app")).await.unwrap()), ["a", "b"]);
    assert_eq!(names(cms.list(&select("!app")).await.unwrap()), ["c"]);
    assert_eq!(names(cms.list(&select("app in (x,y),tier!=web")).await.unwrap()), ["b"]);
    let all: Api<ConfigMap> = Api::all(kube.client());
    assert_eq!(names(all.list(&select("app=x")).await.unwrap()), ["a", "d"]);
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.metadata.resource_version.as_deref(), Some("4"));
    assert_eq!(kube.list("v1", "configmaps", Some("default")).len(), 3);
}

#[tokio::test]
async fn create_fills_server_metadata_and_refuses_duplicates() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    let created = cms.create(&PostParams::default(), &config_map("a", &[])).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert_eq!(created.metadata.resource_version.as_deref(), Some("1"));
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    assert!(created.metadata.creation_timestamp.is_some(), "RFC 3339 timestamp parses");
    assert_eq!(kube.get_as::<ConfigMap>(Some("default"), "a"), Some(created));

    let duplicate = cms.create(&PostParams::default(), &config_map("a", &[])).await;
    assert_eq!(api_code(duplicate), 409);
    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("engine-".into());
    let generated = cms.create(&PostParams::default(), &generated).await.unwrap();
    assert!(generated.name_any().starts_with("engine-") && generated.name_any().len() == 12);
}

#[tokio::test]
async fn missing_objects_are_api_not_found_errors() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    let err = cms.get("absent").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );
    assert!(cms.get_opt("absent").await.unwrap().is_none());
    let merge = Patch::Merge(json!({"data": {"k": "v"}}));
    assert_eq!(api_code(cms.patch("absent", &PatchParams::default(), &merge).await), 404);
    assert_eq!(api_code(cms.delete("absent", &DeleteParams::default()).await), 404);
    let replace = cms.replace("absent", &PostParams::default(), &config_map("absent", &[])).await;
    assert_eq!(api_code(replace), 404);
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_conflicts() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    let stale = cms.create(&PostParams::default(), &config_map("a", &[])).await.unwrap();
    let mut fresh = stale.clone();
    fresh.data = Some([("k".to_owned(), "fresh".to_owned())].into());
    let fresh = cms.replace("a", &PostParams::default(), &fresh).await.unwrap();
    assert_eq!(fresh.metadata.resource_version.as_deref(), Some("2"));

    let mut late = stale;
    late.data = Some([("k".to_owned(), "late".to_owned())].into());
    let err = cms.replace("a", &PostParams::default(), &late).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "fresh");
}

#[tokio::test]
async fn server_side_apply_creates_then_merges_and_reports_conflicts() {
    let kube = FakeKube::new();
    let deployments: Api<Deployment> = Api::default_namespaced(kube.client());
    let apply = |manager: &str| PatchParams::apply(manager);

    let created = deployments
        .patch("engine", &apply("kappa"), &Patch::Apply(deployment(1, "engine:v1")))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(
        kube.field_owners("apps/v1", "deployments", Some("default"), "engine")["/spec/replicas"],
        "kappa"
    );

    // Another manager changing a field kappa owns conflicts, unless it forces.
    let scale = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 3}});
    let conflict = deployments.patch("engine", &apply("autoscaler"), &Patch::Apply(&scale)).await;
    assert_eq!(api_code(conflict), 409);
    let forced = deployments
        .patch("engine", &apply("autoscaler").force(), &Patch::Apply(&scale))
        .await
        .unwrap();
    let spec = forced.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("engine:v1"),
        "apply merges"
    );
    assert_eq!(forced.metadata.generation, Some(2));

    // Re-applying an unchanged object is a no-op: no new resourceVersion, no watch event.
    let again =
        deployments.patch("engine", &apply("autoscaler"), &Patch::Apply(&scale)).await.unwrap();
    assert_eq!(again.metadata.resource_version, forced.metadata.resource_version);
    let fm = kube.requests().last().unwrap().query("fieldManager");
    assert_eq!(fm.as_deref(), Some("autoscaler"));
}

#[tokio::test]
async fn merge_and_json_patches_edit_the_stored_object() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    cms.create(&PostParams::default(), &config_map("a", &[("app", "x")])).await.unwrap();
    let merge = Patch::Merge(
        json!({"metadata": {"labels": {"app": null, "tier": "web"}}, "data": {"extra": "1"}}),
    );
    let merged = cms.patch("a", &PatchParams::default(), &merge).await.unwrap();
    assert_eq!(merged.metadata.labels, Some([("tier".to_owned(), "web".to_owned())].into()));
    assert_eq!(merged.data.unwrap().len(), 2);

    let ops = |v: Value| Patch::Json::<()>(serde_json::from_value(v).unwrap());
    let add =
        ops(json!([{"op": "add", "path": "/metadata/finalizers", "value": ["kappa.dev/cleanup"]}]));
    let patched = cms.patch("a", &PatchParams::default(), &add).await.unwrap();
    assert_eq!(patched.finalizers(), ["kappa.dev/cleanup"]);
    let failed_test = ops(json!([{"op": "test", "path": "/data/k", "value": "other"}]));
    assert_eq!(api_code(cms.patch("a", &PatchParams::default(), &failed_test).await), 422);
}

#[tokio::test]
async fn status_subresource_is_written_apart_from_the_main_resource() {
    let kube = FakeKube::new();
    let jobs = stream_jobs(kube.client());
    let created = jobs.create(&PostParams::default(), &stream_job("v1")).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "create drops the status of a status subresource"
    );

    let status = json!({"status": {"phase": "Replaying", "observedGeneration": 1}});
    let with_status = jobs
        .patch_status("tx-stats", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(with_status.data["status"]["phase"], "Replaying");
    assert_eq!(with_status.data["spec"]["version"], "v1");
    assert_eq!(with_status.metadata.generation, Some(1), "status writes keep the generation");

    let spec = json!({"spec": {"version": "v2"}, "status": {"phase": "dropped"}});
    let bumped =
        jobs.patch("tx-stats", &PatchParams::default(), &Patch::Merge(&spec)).await.unwrap();
    assert_eq!(bumped.metadata.generation, Some(2));
    assert_eq!(bumped.data["status"]["phase"], "Replaying", "main writes keep the status");

    let mut replaced = bumped.clone();
    replaced.data["status"] = json!({"phase": "Live"});
    replaced.data["spec"]["version"] = json!("ignored by /status");
    let replaced =
        jobs.replace_status("tx-stats", &PostParams::default(), &replaced).await.unwrap();
    assert_eq!(
        (replaced.data["spec"]["version"].as_str(), replaced.data["status"]["phase"].as_str()),
        (Some("v2"), Some("Live"))
    );
    let stored = kube.get("kappa.dev/v1alpha1", "streamjobs", Some("default"), "tx-stats").unwrap();
    assert_eq!(stored["status"]["phase"], "Live");
}

#[tokio::test]
async fn delete_waits_for_finalizers_to_be_removed() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    let mut guarded = config_map("guarded", &[]);
    guarded.metadata.finalizers = Some(vec!["kappa.dev/cleanup".into()]);
    cms.create(&PostParams::default(), &guarded).await.unwrap();
    cms.create(&PostParams::default(), &config_map("plain", &[])).await.unwrap();

    let plain = cms.delete("plain", &DeleteParams::background()).await.unwrap();
    assert!(plain.is_right(), "an object without finalizers is gone at once");
    assert!(kube.get_as::<ConfigMap>(Some("default"), "plain").is_none());

    let terminating =
        cms.delete("guarded", &DeleteParams::default()).await.unwrap().left().unwrap();
    let deleted_at = terminating.metadata.deletion_timestamp.clone().expect("marked for deletion");
    let again = cms.delete("guarded", &DeleteParams::default()).await.unwrap().left().unwrap();
    assert_eq!(again.metadata.deletion_timestamp, Some(deleted_at), "set once");
    assert!(cms.get_opt("guarded").await.unwrap().is_some());

    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    cms.patch("guarded", &PatchParams::default(), &release).await.unwrap();
    assert!(cms.get_opt("guarded").await.unwrap().is_none(), "the last finalizer removal deletes");
}

#[tokio::test]
async fn kube_finalizer_helper_guards_deletion() {
    use kube::runtime::finalizer::{finalizer, Event as Finalize};
    let kube = FakeKube::new();
    let jobs = stream_jobs(kube.client());
    jobs.create(&PostParams::default(), &stream_job("v1")).await.unwrap();
    let seen = std::sync::Mutex::new(Vec::new());
    let run = async || {
        let job = Arc::new(jobs.get("tx-stats").await.unwrap());
        finalizer(&jobs, "kappa.dev/cleanup", job, async |event| {
            seen.lock().unwrap().push(matches!(event, Finalize::Cleanup(_)));
            Ok::<_, kube::Error>(Action::await_change())
        })
        .await
        .unwrap()
    };

    run().await; // adds the finalizer (a JSON patch testing for an absent field)
    run().await;
    assert_eq!(jobs.get("tx-stats").await.unwrap().finalizers(), ["kappa.dev/cleanup"]);
    jobs.delete("tx-stats", &DeleteParams::default()).await.unwrap();
    run().await; // cleans up, then removes the finalizer, which completes the deletion
    assert_eq!(*seen.lock().unwrap(), [false, true]);
    assert!(jobs.get_opt("tx-stats").await.unwrap().is_none());
}

#[tokio::test]
async fn injected_faults_fail_only_the_matching_requests() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    cms.create(&PostParams::default(), &config_map("a", &[])).await.unwrap();
    kube.clear_requests();
    kube.fail_next(Method::GET, "/configmaps/a", 500, 2);

    assert!(cms.list(&ListParams::default()).await.is_ok(), "a list does not match");
    let err = cms.get("a").await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 500 && s.reason == "InternalError"),
        "{err:?}"
    );
    assert_eq!(api_code(cms.get("a").await), 500);
    assert!(cms.get("a").await.is_ok(), "the fault is used up");

    let statuses: Vec<(Method, u16)> =
        kube.requests().into_iter().map(|r| (r.method, r.status)).collect();
    assert_eq!(
        statuses,
        [(Method::GET, 200), (Method::GET, 500), (Method::GET, 500), (Method::GET, 200)]
    );
    kube.fail_next_when(|r| r.body.as_ref().is_some_and(|b| b["data"]["k"] == "boom"), 503, 1);
    let boom = Patch::Merge(json!({"data": {"k": "boom"}}));
    assert_eq!(api_code(cms.patch("a", &PatchParams::default(), &boom).await), 503);
    assert_eq!(
        kube.requests().last().unwrap().content_type.as_deref(),
        Some("application/merge-patch+json")
    );
}

#[tokio::test]
async fn watcher_sees_added_modified_and_deleted() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    kube.insert(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before", "namespace": "default", "labels": {"app": "x"}}}));
    let config = watcher::Config::default().labels("app=x");
    let mut events = watcher(cms.clone(), config).boxed();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .unwrap()
    };

    assert!(matches!(next().await, watcher::Event::Init));
    assert!(matches!(next().await, watcher::Event::InitApply(cm) if cm.name_any() == "before"));
    assert!(matches!(next().await, watcher::Event::InitDone));
    cms.create(&PostParams::default(), &config_map("a", &[("app", "y")])).await.unwrap();
    let relabel = Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}}));
    cms.patch("a", &PatchParams::default(), &relabel).await.unwrap();
    assert!(
        matches!(next().await, watcher::Event::Apply(cm) if cm.name_any() == "a"),
        "ADDED when it starts matching"
    );
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}})))
        .await
        .unwrap();
    assert!(
        matches!(next().await, watcher::Event::Apply(cm) if cm.data.as_ref().unwrap()["k"] == "2")
    );
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(matches!(next().await, watcher::Event::Delete(cm) if cm.name_any() == "a"));
}

#[tokio::test]
async fn raw_watches_start_from_now_or_resume_and_end_on_timeout() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    cms.create(&PostParams::default(), &config_map("a", &[])).await.unwrap();
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    // A change between the list and the watch is replayed from history, not lost.
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}})))
        .await
        .unwrap();

    let kinds = |events: Vec<WatchEvent<ConfigMap>>| -> Vec<String> {
        events.iter().map(|e| format!("{e:?}")).collect()
    };
    let watch = |rv: String| {
        let cms = cms.clone();
        async move {
            let stream = cms
                .watch(&WatchParams::default().timeout(1).disable_bookmarks(), &rv)
                .await
                .unwrap();
            tokio::time::timeout(WAIT, stream.try_collect::<Vec<_>>())
                .await
                .expect("watch ends on its timeout")
                .unwrap()
        }
    };
    assert_eq!(kinds(watch("0".into()).await), ["Added event"]);
    assert_eq!(kinds(watch(rv).await), ["Modified event"]);
}

#[tokio::test]
async fn controller_reconciles_against_the_fake() {
    let kube = FakeKube::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(kube.client());
    cms.create(&PostParams::default(), &config_map("a", &[])).await.unwrap();

    async fn reconcile(
        cm: Arc<ConfigMap>,
        cms: Arc<Api<ConfigMap>>,
    ) -> Result<Action, kube::Error> {
        let seen = Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"reconciled": "yes"}}}),
        );
        cms.patch(&cm.name_any(), &PatchParams::apply("kappa").force(), &seen).await?;
        Ok(Action::await_change())
    }
    let controller = Controller::new(cms.clone(), watcher::Config::default()).run(
        reconcile,
        |_, _, _| Action::await_change(),
        Arc::new(cms.clone()),
    );
    let (object, _) =
        tokio::time::timeout(WAIT, Box::pin(controller).next()).await.unwrap().unwrap().unwrap();
    assert_eq!(object.name, "a");
    let labels = kube.get_as::<ConfigMap>(Some("default"), "a").unwrap().metadata.labels.unwrap();
    assert_eq!(labels["reconciled"], "yes");
}

#[tokio::test]
async fn event_recorder_and_leases_use_their_api_groups() {
    let kube = FakeKube::new();
    let client = kube.client();
    let cm = Api::<ConfigMap>::default_namespaced(client.clone())
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "kappa".into(), instance: None });
    let event = Event {
        type_: EventType::Normal,
        reason: "Seen".into(),
        note: None,
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &cm.object_ref(&())).await.unwrap();
    recorder.publish(&event, &cm.object_ref(&())).await.unwrap();
    let events = kube.list("events.k8s.io/v1", "events", Some("default"));
    assert_eq!(events.len(), 1, "the repeat is a series patch: {events:?}");
    assert_eq!(events[0]["reason"], "Seen");

    let leases: Api<Lease> = Api::default_namespaced(client);
    let lease: Lease = serde_json::from_value(
        json!({"metadata": {"name": "kappa-operator"}, "spec": {"holderIdentity": "pod-1"}}),
    )
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let stored = kube.get_as::<Lease>(Some("default"), "kappa-operator").unwrap();
    assert_eq!(stored.spec.unwrap().holder_identity.as_deref(), Some("pod-1"));
    assert_eq!(Lease::plural(&()), "leases");
}
