//! Checks that the requests the in-memory API recorded are allowed by `rbac::RULES`, the
//! permissions the Helm chart grants (shared by the controller and leader-election tests).

use kappa_operator::rbac;
use kappa_testkit::kube_api::RecordedRequest;

/// A request the test itself sends (playing the kubelet or `kubectl`), not the operator:
/// (API group, resource, verb).
pub type HarnessAccess = (&'static str, &'static str, &'static str);

/// The (API group, resource, verbs) a request needs, from its method and REST path.
///
/// GET on a collection is `list` (`watch` with `watch=true`), GET on a name `get`, POST
/// `create`, PATCH `patch` (a server-side apply may create, so also `create`), PUT `update`,
/// DELETE `delete` (`deletecollection` on a collection).
pub fn access_of(request: &RecordedRequest) -> (String, String, Vec<&'static str>) {
    let path = request.path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource path: {request:?}"),
    };
    let rest = match rest {
        ["namespaces", _ns, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _name] => (plural.to_string(), true),
        [plural, _name, sub] => (format!("{plural}/{sub}"), true),
        _ => panic!("not a resource path: {request:?}"),
    };
    let watch = request.query("watch").is_some_and(|w| w == "true" || w == "1");
    let verbs = match (request.method.as_str(), named) {
        ("GET", true) => vec!["get"],
        ("GET", false) if watch => vec!["watch"],
        ("GET", false) => vec!["list"],
        ("POST", _) => vec!["create"],
        ("PATCH", _) if request.content_type.as_deref().is_some_and(|c| c.contains("apply")) => {
            vec!["patch", "create"]
        }
        ("PATCH", _) => vec!["patch"],
        ("PUT", _) => vec!["update"],
        ("DELETE", true) => vec!["delete"],
        ("DELETE", false) => vec!["deletecollection"],
        (method, _) => panic!("unexpected method {method}: {request:?}"),
    };
    (group.to_owned(), resource, verbs)
}

/// Panics unless every recorded request is allowed by `rbac::RULES` or is one of the test's
/// own `harness` accesses.
pub fn assert_requests_allowed(requests: &[RecordedRequest], harness: &[HarnessAccess]) {
    assert!(!requests.is_empty(), "no requests recorded: nothing was checked");
    for request in requests {
        let (group, resource, verbs) = access_of(request);
        for verb in verbs {
            if harness.contains(&(group.as_str(), resource.as_str(), verb)) {
                continue;
            }
            assert!(
                rbac::rule_for(&group, &resource, verb).is_some(),
                "the operator sent {} {} (group {group:?}, resource {resource}, verb {verb}), \
                 which rbac::RULES does not allow: add a rule (the chart's Roles follow it)",
                request.method,
                request.path,
            );
        }
    }
}
