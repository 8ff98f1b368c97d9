//! Leader election through a Lease in the in-memory API: of two operator replicas exactly one
//! leads, and the other takes over once the leader lets go.

use std::time::{Duration, Instant};

use kappa_operator::run::lease_manager;
use kappa_testkit::kube_api::FakeKube;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_replica_leads_and_the_other_takes_over() {
    let kube = FakeKube::new();
    let a = lease_manager(kube.client(), "kappa-system", "kappa-operator", "replica-a", 4)
        .await
        .unwrap();
    let b = lease_manager(kube.client(), "kappa-system", "kappa-operator", "replica-b", 4)
        .await
        .unwrap();
    let a = ("replica-a", a.watch().await);
    let b = ("replica-b", b.watch().await);

    let deadline = Instant::now() + Duration::from_secs(20);
    while !(*a.1 .0.borrow() || *b.1 .0.borrow()) {
        assert!(Instant::now() < deadline, "nobody took the Lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Over a while, never both.
    for _ in 0..40 {
        assert!(!(*a.1 .0.borrow() && *b.1 .0.borrow()), "two replicas lead at once");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (leader, follower) = if *a.1 .0.borrow() { (a, b) } else { (b, a) };
    let lease =
        kube.get("coordination.k8s.io/v1", "leases", Some("kappa-system"), "kappa-operator");
    assert_eq!(lease.unwrap()["spec"]["holderIdentity"].as_str(), Some(leader.0));

    // The leader stops (closing its channel releases the Lease): the follower takes over.
    let (name, (leads, task)) = leader;
    drop(leads);
    task.await.unwrap().unwrap_or_else(|e| panic!("{name} could not release the Lease: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !*follower.1 .0.borrow() {
        assert!(Instant::now() < deadline, "the follower did not take over the released Lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rbac_coverage::assert_requests_allowed(&kube.requests(), &[]);
}

/// The controllers of `run_controllers` list and watch StreamJobs and their Deployments, per
/// watched namespace or across all of them, with only the verbs `rbac::RULES` grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_watch_with_the_charts_permissions() {
    use std::sync::Arc;

    use kappa_operator::metrics::Metrics;
    use kappa_operator::{run::run_controllers, Context, Settings};

    for namespaces in [vec![], vec!["payments".to_owned(), "search".to_owned()]] {
        let kube = FakeKube::new();
        let ctx =
            Arc::new(Context::new(kube.client(), Settings::default(), Arc::new(Metrics::new())));
        let run = run_controllers(kube.client(), &namespaces, ctx);
        let _ = tokio::time::timeout(Duration::from_secs(2), run).await;
        let watches: Vec<String> = kube
            .requests()
            .iter()
            .filter(|r| r.query("watch").as_deref() == Some("true"))
            .map(|r| r.path.split('?').next().unwrap_or_default().to_owned())
            .collect();
        let scopes: Vec<String> = if namespaces.is_empty() {
            vec![String::new()]
        } else {
            namespaces.iter().map(|ns| format!("/namespaces/{ns}")).collect()
        };
        for scope in scopes {
            for resource in ["/apis/kappa.dev/v1alpha1", "/apis/apps/v1"] {
                assert!(
                    watches.iter().any(|w| w.starts_with(&format!("{resource}{scope}/"))),
                    "no watch under {resource}{scope} in {watches:?}"
                );
            }
        }
        rbac_coverage::assert_requests_allowed(&kube.requests(), &[]);
    }
}

mod rbac_coverage;
