//! Every Kubernetes permission the operator needs, in one place: the Helm chart's Roles are
//! checked to equal [`RULES`] (`tests/chart.rs`), and every request the controller tests send
//! to the in-memory API is checked to be allowed by it, so a new API call without a rule fails
//! a test instead of a production rollout.
//!
//! A server-side apply that creates its object is authorized as `create` as well as `patch`
//! (Kubernetes API concepts, "Patch and apply"), so every applied resource lists both.

/// Where a [`Rule`] is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// In every watched namespace: a ClusterRole when the operator watches all namespaces,
    /// otherwise one Role per watched namespace.
    Watched,
    /// In the operator's own namespace only (its leader-election Lease).
    OperatorNamespace,
}

/// One permission: these verbs on one resource of one API group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API group; `""` is the core group.
    pub api_group: &'static str,
    /// Plural resource name, with `/subresource` when it is one (`streamjobs/status`).
    pub resource: &'static str,
    /// Kubernetes verbs, never `*`.
    pub verbs: &'static [&'static str],
    /// Where it is granted.
    pub scope: Scope,
    /// Which code needs it.
    pub reason: &'static str,
}

impl Rule {
    /// Whether this rule grants `verb` on `resource` of `api_group`.
    pub fn allows(&self, api_group: &str, resource: &str, verb: &str) -> bool {
        self.api_group == api_group && self.resource == resource && self.verbs.contains(&verb)
    }
}

/// The operator's permissions (least privilege: only verbs some code path sends).
pub const RULES: &[Rule] = &[
    Rule {
        api_group: "kappa.dev",
        resource: "streamjobs",
        verbs: &["list", "watch", "patch"],
        scope: Scope::Watched,
        reason: "the controller lists and watches StreamJobs (run::run_controllers); the \
                 kappa.dev/cleanup finalizer is added and removed with a JSON patch",
    },
    Rule {
        api_group: "kappa.dev",
        resource: "streamjobs/status",
        verbs: &["patch"],
        scope: Scope::Watched,
        reason: "the status is written with a merge patch (controller::status)",
    },
    Rule {
        api_group: "apps",
        resource: "deployments",
        verbs: &["list", "watch", "create", "patch", "delete"],
        scope: Scope::Watched,
        reason: "engine Deployments: watched as owned objects, listed per reconcile \
                 (controller::world), server-side applied and deleted (controller::apply)",
    },
    Rule {
        api_group: "",
        resource: "configmaps",
        verbs: &["list", "create", "patch", "delete"],
        scope: Scope::Watched,
        reason: "each version's ConfigMap (its recorded logic): listed per reconcile, \
                 server-side applied and deleted",
    },
    Rule {
        api_group: "",
        resource: "services",
        verbs: &["create", "patch", "delete"],
        scope: Scope::Watched,
        reason: "each version's engine Service: server-side applied and deleted",
    },
    Rule {
        api_group: "",
        resource: "pods",
        verbs: &["list"],
        scope: Scope::Watched,
        reason: "engine pods are listed per reconcile (restarts, readiness)",
    },
    Rule {
        api_group: "",
        resource: "secrets",
        verbs: &["get"],
        scope: Scope::Watched,
        reason: "spec.sink.elasticsearch.credentialsSecret is read by name (elastic::connect)",
    },
    Rule {
        api_group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        scope: Scope::Watched,
        reason: "one Event per transition; the recorder patches a repeated Event's count",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "patch"],
        scope: Scope::OperatorNamespace,
        reason: "leader election (kube-lease-manager): reads the Lease, creates it once, takes \
                 and renews it with patches",
    },
];

/// The rule that grants `verb` on `resource` of `api_group`, if any.
pub fn rule_for(api_group: &str, resource: &str, verb: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.allows(api_group, resource, verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_explicit_and_one_per_resource() {
        let mut seen = std::collections::BTreeSet::new();
        for rule in RULES {
            assert!(seen.insert((rule.api_group, rule.resource)), "two rules for {rule:?}");
            assert!(!rule.verbs.is_empty() && !rule.verbs.contains(&"*"), "{rule:?}");
            assert!(!rule.resource.contains('*') && !rule.api_group.contains('*'), "{rule:?}");
        }
    }
}
