//! The version's Service: a stable address for its engine's `/status` and `/metrics`
//! ([`names::engine_status_url`]).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::VersionWorkload;
use crate::names;

/// A ClusterIP Service in front of the version's engine status port.
pub fn service(w: &VersionWorkload) -> Service {
    Service {
        metadata: w.metadata(),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(w.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some(names::ENGINE_PORT_NAME.into()),
                port: i32::from(names::ENGINE_STATUS_PORT),
                target_port: Some(IntOrString::String(names::ENGINE_PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
