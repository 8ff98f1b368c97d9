//! Serves the in-memory API ([`FakeKube`]) over HTTP on loopback, so other processes (`kappa
//! status --local`, `kubectl --kubeconfig .kappa/kubeconfig`) reach the same store the local
//! controller reconciles against. Plain HTTP and no authentication: it binds to loopback only
//! and is meant for one user's machine.

use std::net::SocketAddr;
use std::path::Path;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::api::FakeKube;

/// Requests larger than this are refused (a StreamJob or a Deployment is a few KiB).
const MAX_REQUEST_BYTES: usize = 8 << 20;

/// Starts serving `api` on `addr` and returns the bound address (pass port 0 for any free
/// one). The server runs on the current tokio runtime until it shuts down.
pub async fn serve(api: FakeKube, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().fallback(move |request: Request| answer(api.clone(), request));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(%e, "the local Kubernetes API stopped serving");
        }
    });
    Ok(bound)
}

async fn answer(api: FakeKube, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_REQUEST_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Response::builder()
                .status(413)
                .body(Body::from(format!("request body refused: {e}")))
                .expect("static response parts are valid");
        }
    };
    let request = http::Request::from_parts(parts, kube::client::Body::from(bytes));
    let response = match api.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    response.map(Body::new)
}

/// Writes a kubeconfig whose one context talks to the API at `addr` in `namespace`, for
/// `kappa status --local` and `kubectl --kubeconfig`.
pub fn write_kubeconfig(path: &Path, addr: SocketAddr, namespace: &str) -> std::io::Result<()> {
    let text = format!(
        "# Written by `kappa up`: the local Kubernetes API of this state directory.\n\
         apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: kappa-local\n  cluster:\n    server: http://{addr}\n\
         users:\n\
         - name: kappa-local\n  user: {{}}\n\
         contexts:\n\
         - name: kappa-local\n  context:\n    cluster: kappa-local\n    user: kappa-local\n    namespace: {namespace}\n\
         current-context: kappa-local\n"
    );
    std::fs::write(path, text)
}
