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
}
