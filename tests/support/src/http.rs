//! A blocking HTTP client for tests: `/status` of engines and queries against osmem-server.

use std::time::Duration;

use serde_json::Value as Json;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `GET url` as JSON; `None` when the server does not answer or answers with an error.
pub fn get_json(url: &str) -> Option<Json> {
    let mut resp = agent().get(url).call().ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.body_mut().read_json::<Json>().ok()
}

/// `method url` with a JSON body; returns (status, JSON body or Null).
pub fn send_json(method: &str, url: &str, body: Option<&Json>) -> (u16, Json) {
    let agent = agent();
    let result = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        ("POST", Some(b)) => agent.post(url).send_json(b),
        ("POST", None) => agent.post(url).send_empty(),
        ("PUT", Some(b)) => agent.put(url).send_json(b),
        ("PUT", None) => agent.put(url).send_empty(),
        (m, _) => panic!("unsupported method {m}"),
    };
    let mut resp = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_json::<Json>().unwrap_or(Json::Null);
    (status, body)
}

/// `GET url` as text with its status; `None` when the server does not answer.
pub fn get_text(url: &str) -> Option<(u16, String)> {
    let mut resp = agent().get(url).call().ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.body_mut().read_to_string().ok()?))
}
