//! Sink configuration: where to write, how to authenticate, batch limits and retry budget, read
//! from the job's sink settings plus the environment (a mounted Kubernetes Secret).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::retry::RetryPolicy;

/// Environment variable: basic-auth user name.
pub const ENV_USERNAME: &str = "KAPPA_ES_USERNAME";
/// Environment variable: basic-auth password.
pub const ENV_PASSWORD: &str = "KAPPA_ES_PASSWORD";
/// Environment variable: an encoded API key (base64 of `id:key`, as Elasticsearch returns it).
pub const ENV_API_KEY: &str = "KAPPA_ES_API_KEY";
/// Environment variable: a directory holding a mounted Secret (see the `SECRET_*` file names).
pub const ENV_CREDENTIALS_DIR: &str = "KAPPA_ES_CREDENTIALS_DIR";
/// Secret key (file name in [`ENV_CREDENTIALS_DIR`]): user name.
pub const SECRET_USERNAME: &str = "username";
/// Secret key: password.
pub const SECRET_PASSWORD: &str = "password";
/// Secret key: encoded API key.
pub const SECRET_API_KEY: &str = "apiKey";
/// Secret key: PEM CA certificate (bundle) to trust for HTTPS.
pub const SECRET_CA_CERT: &str = "ca.crt";

/// Default [`BatchLimits::max_docs`].
pub const DEFAULT_MAX_DOCS: usize = 5_000;
/// Default [`BatchLimits::max_bytes`]: 5 MiB, the size Elastic recommends starting from.
pub const DEFAULT_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Default [`SinkConfig::request_timeout`]: a bulk of at most 5 MiB normally answers well within
/// it, and a hung cluster (paused, partitioned) shows as degraded in `/status` within 10 s
/// instead of waiting out a long timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the sink needs to write one index.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    /// Base URL, e.g. `https://elasticsearch:9200`.
    pub url: String,
    /// The index this job version writes.
    pub index: String,
    /// How to authenticate.
    pub auth: Auth,
    /// HTTPS trust settings.
    pub tls: TlsConfig,
    /// Size limits of one `_bulk` request.
    pub batch: BatchLimits,
    /// Backoff and budget for retryable failures.
    pub retry: RetryPolicy,
    /// Limit for one HTTP request, body included.
    pub request_timeout: Duration,
    /// Index settings merged over [`super::request::index_settings`].
    pub index_settings: Option<serde_json::Value>,
    /// Mapping properties merged over the ones derived from the job.
    pub mapping_overrides: Option<serde_json::Value>,
}

/// Credentials.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// `Authorization: ApiKey <encoded>`, the encoded form being base64 of `id:key`.
    ApiKey(String),
}

impl fmt::Debug for Auth {
    // Secrets must not end up in logs through `{:?}` of the config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"***")
                .finish(),
            Self::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

/// HTTPS trust settings. Without either field, the Mozilla root set bundled with the client
/// (`webpki-roots`, through reqwest's `rustls-tls`) is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    /// A PEM file of CA certificates to trust in addition to the system roots.
    pub ca_cert_pem: Option<PathBuf>,
    /// Accept any server certificate. For development clusters with self-signed certificates
    /// only: it disables server authentication.
    pub accept_invalid_certs: bool,
}

/// Size limits of one `_bulk` request; a request is cut when either would be exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most documents in one request.
    pub max_docs: usize,
    /// Most body bytes (action and source lines) in one request. A single document larger
    /// than this is still sent, alone.
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_docs: DEFAULT_MAX_DOCS, max_bytes: DEFAULT_MAX_BYTES }
    }
}

/// Why a configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The URL does not parse or is not http(s).
    #[error("invalid Elasticsearch URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// Half of a credential pair was given.
    #[error("{given} is set but {missing} is not ({source_name}); give both or neither")]
    IncompleteCredentials {
        /// The part that was found.
        given: String,
        /// The part that is missing.
        missing: String,
        /// Where the credentials were read from.
        source_name: String,
    },
    /// Two kinds or sources of credentials were given.
    #[error("conflicting Elasticsearch credentials: {0}; keep exactly one")]
    ConflictingCredentials(String),
    /// A credentials file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A credential is present but empty.
    #[error("{0} is empty")]
    Empty(String),
    /// The credentials directory holds none of the expected files.
    #[error(
        "{dir} ({ENV_CREDENTIALS_DIR}) holds none of {SECRET_USERNAME}/{SECRET_PASSWORD}, \
         {SECRET_API_KEY} or {SECRET_CA_CERT}"
    )]
    EmptyCredentialsDir {
        /// The directory.
        dir: PathBuf,
    },
}

impl SinkConfig {
    /// A configuration with default limits, no credentials and no TLS extras.
    ///
    /// ```
    /// use kappa_service::sink::elasticsearch::config::{Auth, SinkConfig};
    /// let config = SinkConfig::new("http://localhost:9200", "tx-stats-v1").unwrap();
    /// assert_eq!(config.auth, Auth::None);
    /// assert_eq!(config.batch.max_docs, 5_000);
    /// assert!(SinkConfig::new("localhost:9200", "x").is_err());
    /// ```
    pub fn new(url: impl Into<String>, index: impl Into<String>) -> Result<Self, ConfigError> {
        let url = url.into();
        check_url(&url)?;
        Ok(Self {
            url,
            index: index.into(),
            auth: Auth::None,
            tls: TlsConfig::default(),
            batch: BatchLimits::default(),
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            index_settings: None,
            mapping_overrides: None,
        })
    }

    /// Like [`SinkConfig::new`], with credentials (and a CA certificate) from the process
    /// environment: `KAPPA_ES_USERNAME` + `KAPPA_ES_PASSWORD`, or `KAPPA_ES_API_KEY`, or the
    /// files `username`, `password`, `apiKey`, `ca.crt` of the directory
    /// `KAPPA_ES_CREDENTIALS_DIR` (a mounted Secret). Giving credentials twice is an error.
    pub fn from_env(url: impl Into<String>, index: impl Into<String>) -> Result<Self, ConfigError> {
        Self::from_lookup(url, index, |name| std::env::var(name).ok())
    }

    /// The configuration of one job version: URL, index `<alias>-<version>`, index settings
    /// and mapping overrides from the job's sink, credentials from the environment (the
    /// operator mounts `credentialsSecret` at `KAPPA_ES_CREDENTIALS_DIR`).
    pub fn for_job(
        sink: &kappa_crds::ElasticsearchSink,
        version: &str,
    ) -> Result<Self, ConfigError> {
        let index = kappa_crds::naming::index_name_for(&sink.alias, version);
        let mut config = Self::from_env(sink.url.clone(), index)?;
        config.index_settings.clone_from(&sink.index_settings);
        config.mapping_overrides.clone_from(&sink.mappings);
        Ok(config)
    }

    /// [`SinkConfig::from_env`] with an injectable environment (for tests).
    pub fn from_lookup(
        url: impl Into<String>,
        index: impl Into<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut config = Self::new(url, index)?;
        let from_vars = credentials_from(
            |name| env(name),
            [ENV_USERNAME, ENV_PASSWORD, ENV_API_KEY],
            "environment variables",
        )?;
        let mut auth = from_vars;
        if let Some(dir) = env(ENV_CREDENTIALS_DIR).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            let (from_dir, ca) = read_credentials_dir(&dir)?;
            if auth != Auth::None && from_dir != Auth::None {
                return Err(ConfigError::ConflictingCredentials(format!(
                    "both environment variables and {} ({ENV_CREDENTIALS_DIR}) give credentials",
                    dir.display()
                )));
            }
            if from_dir != Auth::None {
                auth = from_dir;
            }
            config.tls.ca_cert_pem = ca;
        }
        config.auth = auth;
        Ok(config)
    }
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidUrl { url: url.to_owned(), reason };
    let parsed = elasticsearch::http::Url::parse(url).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(invalid(format!("scheme {other:?} is not http or https"))),
    }
}

/// Assembles credentials from three named values (user name, password, API key).
fn credentials_from(
    get: impl Fn(&str) -> Option<String>,
    [user_key, password_key, api_key_key]: [&str; 3],
    source_name: &str,
) -> Result<Auth, ConfigError> {
    let non_empty = |key: &str| -> Result<Option<String>, ConfigError> {
        match get(key) {
            Some(v) if v.is_empty() => Err(ConfigError::Empty(format!("{key} ({source_name})"))),
            other => Ok(other),
        }
    };
    let (user, password, api_key) =
        (non_empty(user_key)?, non_empty(password_key)?, non_empty(api_key_key)?);
    let incomplete = |given: &str, missing: &str| ConfigError::IncompleteCredentials {
        given: given.to_owned(),
        missing: missing.to_owned(),
        source_name: source_name.to_owned(),
    };
    match (user, password, api_key) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(ConfigError::ConflictingCredentials(
            format!("{source_name} give both {user_key}/{password_key} and {api_key_key}"),
        )),
        (Some(username), Some(password), None) => Ok(Auth::Basic { username, password }),
        (Some(_), None, None) => Err(incomplete(user_key, password_key)),
        (None, Some(_), None) => Err(incomplete(password_key, user_key)),
        (None, None, Some(key)) => Ok(Auth::ApiKey(key)),
        (None, None, None) => Ok(Auth::None),
    }
}

/// Reads a mounted Secret: credentials plus the path of `ca.crt` when present.
fn read_credentials_dir(dir: &Path) -> Result<(Auth, Option<PathBuf>), ConfigError> {
    let meta = std::fs::metadata(dir)
        .map_err(|source| ConfigError::Unreadable { path: dir.to_owned(), source })?;
    if !meta.is_dir() {
        return Err(ConfigError::Unreadable {
            path: dir.to_owned(),
            source: std::io::Error::other("not a directory"),
        });
    }
    let mut files = std::collections::HashMap::new();
    for name in [SECRET_USERNAME, SECRET_PASSWORD, SECRET_API_KEY] {
        let path = dir.join(name);
        match std::fs::read_to_string(&path) {
            // Secrets created with `echo` carry a trailing newline that is not part of the value.
            Ok(text) => {
                files.insert(name, text.trim_end_matches(['\n', '\r']).to_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::Unreadable { path, source }),
        }
    }
    let ca = Some(dir.join(SECRET_CA_CERT)).filter(|p| p.is_file());
    if files.is_empty() && ca.is_none() {
        return Err(ConfigError::EmptyCredentialsDir { dir: dir.to_owned() });
    }
    let source_name = format!("files in {}", dir.display());
    let auth = credentials_from(
        |name| files.get(name).cloned(),
        [SECRET_USERNAME, SECRET_PASSWORD, SECRET_API_KEY],
        &source_name,
    )?;
    Ok((auth, ca))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn from(vars: &[(&str, &str)]) -> Result<SinkConfig, ConfigError> {
        SinkConfig::from_lookup("http://es:9200", "idx", lookup(vars))
    }

    #[test]
    fn basic_and_api_key_from_variables() {
        let c = from(&[(ENV_USERNAME, "kappa"), (ENV_PASSWORD, "s3cret")]).unwrap();
        assert_eq!(c.auth, Auth::Basic { username: "kappa".into(), password: "s3cret".into() });
        assert!(!format!("{c:?}").contains("s3cret"), "Debug must not print the password");
        let c = from(&[(ENV_API_KEY, "aWQ6a2V5")]).unwrap();
        assert_eq!(c.auth, Auth::ApiKey("aWQ6a2V5".into()));
        assert_eq!(from(&[]).unwrap().auth, Auth::None);
    }

    #[test]
    fn half_a_pair_names_the_missing_part() {
        let err = from(&[(ENV_USERNAME, "kappa")]).unwrap_err().to_string();
        assert!(err.contains("KAPPA_ES_USERNAME is set but KAPPA_ES_PASSWORD is not"), "{err}");
        let err = from(&[(ENV_PASSWORD, "x")]).unwrap_err().to_string();
        assert!(err.contains("KAPPA_ES_PASSWORD is set but KAPPA_ES_USERNAME is not"), "{err}");
        let err = from(&[(ENV_USERNAME, "a"), (ENV_PASSWORD, "b"), (ENV_API_KEY, "c")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("both"), "{err}");
        assert!(from(&[(ENV_API_KEY, "")]).unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn mounted_secret_directory() {
        let dir = std::env::temp_dir().join(format!("kappa-es-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(SECRET_USERNAME), "kappa\n").unwrap();
        std::fs::write(dir.join(SECRET_PASSWORD), "pw").unwrap();
        std::fs::write(dir.join(SECRET_CA_CERT), "-----BEGIN CERTIFICATE-----").unwrap();
        let d = dir.to_str().unwrap();

        let c = from(&[(ENV_CREDENTIALS_DIR, d)]).unwrap();
        assert_eq!(c.auth, Auth::Basic { username: "kappa".into(), password: "pw".into() });
        assert_eq!(c.tls.ca_cert_pem, Some(dir.join(SECRET_CA_CERT)));

        let err = from(&[(ENV_CREDENTIALS_DIR, d), (ENV_API_KEY, "k")]).unwrap_err();
        assert!(matches!(err, ConfigError::ConflictingCredentials(_)), "{err}");

        std::fs::remove_file(dir.join(SECRET_PASSWORD)).unwrap();
        let err = from(&[(ENV_CREDENTIALS_DIR, d)]).unwrap_err().to_string();
        assert!(err.contains("username is set but password is not"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        let err = from(&[(ENV_CREDENTIALS_DIR, d)]).unwrap_err().to_string();
        assert!(err.contains("cannot read"), "{err}");
    }

    #[test]
    fn urls_must_be_http() {
        assert!(SinkConfig::new("https://es:9200", "i").is_ok());
        let err = SinkConfig::new("ftp://es", "i").unwrap_err().to_string();
        assert!(err.contains("not http or https"), "{err}");
    }
}
