//! Per-cluster transport security keys: `{source,target}.tls.*` and `{source,target}.sasl.*`.
//!
//! This module owns their types and the rules between them. It only checks that named files
//! exist and are readable; parsing certificates and keys and talking to brokers belong to
//! `kafka::tls` and `kafka::sasl`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{env_var_for, Error, Result, Secret};

/// TLS to every broker of one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Encrypt every connection with TLS and verify the broker's certificate and host name.
    pub enabled: bool,
    /// PEM file with the CA certificates that sign the brokers' certificates; empty: the
    /// system's roots (or Mozilla's bundled roots on a machine without a CA store).
    pub ca_file: String,
    /// PEM client certificate chain for mutual TLS; needs `key_file`.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    pub key_file: String,
    /// Name to verify every broker certificate against, instead of the host name strait
    /// connects to (for brokers reached through a tunnel or by IP address).
    pub server_name: String,
}

/// A SASL mechanism, as Kafka names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaslMechanism {
    /// No SASL: the empty string.
    #[default]
    #[serde(rename = "")]
    None,
    /// User name and password in clear text (use with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// OAuth 2 bearer token (KIP-255): static, or from a token endpoint (`oauth_*`).
    #[serde(rename = "OAUTHBEARER")]
    OauthBearer,
    /// Amazon MSK IAM: OAUTHBEARER with a signed token from the AWS credential chain.
    #[serde(rename = "AWS_MSK_IAM")]
    AwsMskIam,
}

impl SaslMechanism {
    /// The name used in config and on the wire (`SaslHandshake`).
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::None => "",
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OauthBearer => "OAUTHBEARER",
            SaslMechanism::AwsMskIam => "AWS_MSK_IAM",
        }
    }

    /// Whether the mechanism puts a secret on the wire that anyone reading the connection could
    /// reuse: PLAIN's password, OAUTHBEARER's token, AWS_MSK_IAM's signed token. SCRAM sends a
    /// proof that is good for one exchange only.
    pub fn sends_reusable_secret(self) -> bool {
        matches!(
            self,
            SaslMechanism::Plain | SaslMechanism::OauthBearer | SaslMechanism::AwsMskIam
        )
    }

    /// Whether the mechanism authenticates with `username` and `password`.
    pub fn uses_password(self) -> bool {
        matches!(
            self,
            SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512
        )
    }
}

impl std::fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// SASL authentication on every connection to one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` or `AWS_MSK_IAM`; empty: none.
    pub mechanism: SaslMechanism,
    /// User name for PLAIN and SCRAM.
    pub username: String,
    /// Password for PLAIN and SCRAM. Never logged; prefer `password_file`.
    pub password: Secret,
    /// File holding the password (one trailing newline ignored), re-read on every new
    /// connection so a rotated secret is picked up without a restart.
    pub password_file: String,
    /// AWS region of the MSK cluster, for `AWS_MSK_IAM`.
    pub aws_region: String,
    /// OAUTHBEARER tokens from this OAuth 2 token endpoint (client-credentials grant) instead of
    /// a static token, e.g. Keycloak's `.../realms/<realm>/protocol/openid-connect/token`.
    pub oauth_token_endpoint_url: String,
    /// The OAuth client id, sent with the secret as HTTP Basic authentication.
    pub oauth_client_id: String,
    /// The OAuth client secret. Never logged; prefer `oauth_client_secret_file`.
    pub oauth_client_secret: Secret,
    /// File holding the client secret, re-read on every token request (a rotated secret).
    pub oauth_client_secret_file: String,
    /// Scope(s) to ask for, space-separated; empty: none asked (the client's default scopes).
    pub oauth_scope: String,
    /// PEM CA file for the token endpoint's TLS; empty: the system's roots.
    pub oauth_ca_file: String,
}

impl SaslConfig {
    /// The password: `password`, or the contents of `password_file` read now.
    pub fn read_password(&self) -> std::io::Result<Secret> {
        read_secret(&self.password, &self.password_file)
    }

    /// The OAuth client secret: `oauth_client_secret`, or `oauth_client_secret_file` read now.
    pub fn read_client_secret(&self) -> std::io::Result<Secret> {
        read_secret(&self.oauth_client_secret, &self.oauth_client_secret_file)
    }

    /// Whether OAUTHBEARER tokens come from a token endpoint rather than a static token.
    pub fn uses_token_endpoint(&self) -> bool {
        self.mechanism == SaslMechanism::OauthBearer && !self.oauth_token_endpoint_url.is_empty()
    }
}

/// `value`, or the contents of `file` (one trailing newline ignored) when `file` is set.
fn read_secret(value: &Secret, file: &str) -> std::io::Result<Secret> {
    if file.is_empty() {
        return Ok(value.clone());
    }
    let contents = std::fs::read_to_string(file)?;
    let value = contents.strip_suffix('\n').unwrap_or(&contents);
    Ok(Secret::new(value.strip_suffix('\r').unwrap_or(value)))
}

/// The dotted key names of one side, so messages name `source.*` or `target.*` precisely.
pub(super) struct Keys {
    pub(super) tls_enabled: &'static str,
    pub(super) ca_file: &'static str,
    pub(super) cert_file: &'static str,
    pub(super) key_file: &'static str,
    pub(super) server_name: &'static str,
    pub(super) mechanism: &'static str,
    pub(super) username: &'static str,
    pub(super) password: &'static str,
    pub(super) password_file: &'static str,
    pub(super) aws_region: &'static str,
    pub(super) allow_plaintext: &'static str,
    pub(super) endpoint: &'static str,
    pub(super) client_id: &'static str,
    pub(super) client_secret: &'static str,
    pub(super) client_secret_file: &'static str,
    pub(super) scope: &'static str,
    pub(super) oauth_ca_file: &'static str,
}

macro_rules! keys {
    ($side:literal) => {
        Keys {
            tls_enabled: concat!($side, ".tls.enabled"),
            ca_file: concat!($side, ".tls.ca_file"),
            cert_file: concat!($side, ".tls.cert_file"),
            key_file: concat!($side, ".tls.key_file"),
            server_name: concat!($side, ".tls.server_name"),
            mechanism: concat!($side, ".sasl.mechanism"),
            username: concat!($side, ".sasl.username"),
            password: concat!($side, ".sasl.password"),
            password_file: concat!($side, ".sasl.password_file"),
            aws_region: concat!($side, ".sasl.aws_region"),
            allow_plaintext: concat!($side, ".allow_plaintext_credentials"),
            endpoint: concat!($side, ".sasl.oauth_token_endpoint_url"),
            client_id: concat!($side, ".sasl.oauth_client_id"),
            client_secret: concat!($side, ".sasl.oauth_client_secret"),
            client_secret_file: concat!($side, ".sasl.oauth_client_secret_file"),
            scope: concat!($side, ".sasl.oauth_scope"),
            oauth_ca_file: concat!($side, ".sasl.oauth_ca_file"),
        }
    };
}

const SOURCE: Keys = keys!("source");
const TARGET: Keys = keys!("target");

pub(super) fn keys_of(side: &str) -> &'static Keys {
    if side == "source" {
        &SOURCE
    } else {
        &TARGET
    }
}

/// Checks the `tls` and `sasl` keys of `side` ("source" or "target").
pub(super) fn check(side: &str, tls: &TlsConfig, sasl: &SaslConfig) -> Result<()> {
    let keys = keys_of(side);
    check_tls(keys, tls)?;
    super::oauth::check(side, sasl)?;
    if sasl.uses_token_endpoint() {
        return Ok(());
    }
    check_sasl(keys, sasl)
}

/// Refuses a mechanism that sends a reusable secret to `side` without TLS, unless
/// `allow_plaintext_credentials` says the network is trusted.
pub(super) fn check_plaintext(side: &str, tls: &TlsConfig, sasl: &SaslConfig, allowed: bool) -> Result<()> {
    super::oauth::check_plaintext(side, sasl, allowed)?;
    let mechanism = sasl.mechanism;
    if tls.enabled || allowed || !mechanism.sends_reusable_secret() {
        return Ok(());
    }
    let keys = keys_of(side);
    let secret = if mechanism == SaslMechanism::Plain {
        "the password"
    } else {
        "a bearer token"
    };
    Err(Error::invalid(
        keys.mechanism,
        format!("{:?}", mechanism.as_str()),
        format!(
            "would send {secret} to the {side} cluster in clear text ({} is false)",
            keys.tls_enabled
        ),
        format!(
            "set {} = true ({} = true) if the brokers have a TLS listener, or, only on a network \
             nobody else can read, set {} = true ({} = true)",
            keys.tls_enabled,
            env_var_for(keys.tls_enabled),
            keys.allow_plaintext,
            env_var_for(keys.allow_plaintext)
        ),
    ))
}

/// A warning for SCRAM without TLS (not refused: the password never crosses the wire), unless
/// `allow_plaintext_credentials` already accepts it.
pub(super) fn plaintext_warning(side: &str, tls: &TlsConfig, sasl: &SaslConfig, allowed: bool) -> Option<String> {
    let mechanism = sasl.mechanism;
    let scram = matches!(mechanism, SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512);
    if !scram || tls.enabled || allowed {
        return None;
    }
    let keys = keys_of(side);
    Some(format!(
        "{} = {:?} without TLS: SCRAM never sends the password, but anyone who reads the \
         connection can try to guess it offline from the exchange, and reads every record; set {} = \
         true, or set {} = true to accept this and silence this warning",
        keys.mechanism,
        mechanism.as_str(),
        keys.tls_enabled,
        keys.allow_plaintext
    ))
}

fn check_tls(keys: &Keys, tls: &TlsConfig) -> Result<()> {
    let files = [
        (keys.ca_file, &tls.ca_file),
        (keys.cert_file, &tls.cert_file),
        (keys.key_file, &tls.key_file),
    ];
    if !tls.enabled {
        let set = files
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain([(keys.server_name, tls.server_name.as_str())])
            .find(|(_, v)| !v.is_empty());
        if let Some((key, value)) = set {
            return Err(Error::invalid(
                key,
                format!("{value:?}"),
                format!("is set but {} is false", keys.tls_enabled),
                format!("set {} = true to use TLS, or remove {key}", keys.tls_enabled),
            ));
        }
        return Ok(());
    }
    for (key, path) in files {
        check_readable(key, path)?;
    }
    match (tls.cert_file.is_empty(), tls.key_file.is_empty()) {
        (false, true) => {
            return Err(Error::invalid(
                keys.key_file,
                "\"\"",
                format!("is empty but {} is set", keys.cert_file),
                "mutual TLS needs both: name the PEM private key of the client certificate",
            ))
        }
        (true, false) => {
            return Err(Error::invalid(
                keys.cert_file,
                "\"\"",
                format!("is empty but {} is set", keys.key_file),
                "mutual TLS needs both: name the PEM client certificate chain",
            ))
        }
        _ => {}
    }
    let name = &tls.server_name;
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*'));
    if !plain || name.starts_with('.') {
        return Err(Error::invalid(
            keys.server_name,
            format!("{name:?}"),
            "is not a host name or IP address",
            "give the DNS name (or IP) in the brokers' certificates, without scheme or port",
        ));
    }
    Ok(())
}

fn check_sasl(keys: &Keys, sasl: &SaslConfig) -> Result<()> {
    let mechanism = sasl.mechanism;
    if mechanism == SaslMechanism::None {
        let set = [
            (keys.username, sasl.username.clone()),
            (keys.password, sasl.password.to_string()),
            (keys.password_file, sasl.password_file.clone()),
            (keys.aws_region, sasl.aws_region.clone()),
        ]
        .into_iter()
        .find(|(_, v)| !v.is_empty());
        if let Some((key, value)) = set {
            return Err(Error::invalid(
                key,
                format!("{value:?}"),
                format!("is set but {} is empty", keys.mechanism),
                format!(
                    "set {} to PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM, or remove {key}",
                    keys.mechanism
                ),
            ));
        }
        return Ok(());
    }
    match mechanism {
        SaslMechanism::AwsMskIam => return check_msk_iam(keys, sasl),
        SaslMechanism::OauthBearer if !sasl.username.is_empty() => {
            return Err(Error::invalid(
                keys.username,
                format!("{:?}", sasl.username),
                format!("is set but {} = OAUTHBEARER does not use it", keys.mechanism),
                format!(
                    "remove it: the bearer token in {} carries the identity",
                    keys.password_file
                ),
            ));
        }
        _ => {}
    }
    if !sasl.aws_region.is_empty() {
        return Err(Error::invalid(
            keys.aws_region,
            format!("{:?}", sasl.aws_region),
            format!("is set but {} = {mechanism} does not use it", keys.mechanism),
            format!(
                "set {} = AWS_MSK_IAM for MSK IAM, or remove {}",
                keys.mechanism, keys.aws_region
            ),
        ));
    }
    if mechanism == SaslMechanism::OauthBearer {
        return check_secret(keys, sasl, "the bearer token");
    }
    if sasl.username.is_empty() {
        return Err(Error::invalid(
            keys.username,
            "\"\"",
            format!("is empty but {} = {mechanism} needs it", keys.mechanism),
            "set the user name the broker knows",
        ));
    }
    check_secret(keys, sasl, "the password")
}

/// `password` or `password_file` holds `what` (the password, or an OAUTHBEARER token).
fn check_secret(keys: &Keys, sasl: &SaslConfig, what: &str) -> Result<()> {
    let mechanism = sasl.mechanism;
    match (sasl.password.is_empty(), sasl.password_file.is_empty()) {
        (true, true) => Err(Error::invalid(
            keys.password,
            "\"\"",
            format!("is empty but {} = {mechanism} needs it", keys.mechanism),
            format!(
                "set {} to a file holding {what} (or set {what} itself)",
                keys.password_file
            ),
        )),
        (false, false) => Err(Error::invalid(
            keys.password_file,
            format!("{:?}", sasl.password_file),
            format!("is set together with {}", keys.password),
            "set only one of them",
        )),
        (true, false) => check_readable(keys.password_file, &sasl.password_file),
        (false, true) => Ok(()),
    }
}

/// `AWS_MSK_IAM`: a region, and no password keys (the AWS credential chain supplies the keys).
fn check_msk_iam(keys: &Keys, sasl: &SaslConfig) -> Result<()> {
    if !cfg!(feature = "msk-iam") {
        return Err(Error::invalid(
            keys.mechanism,
            "\"AWS_MSK_IAM\"",
            "is not available: this build of strait has no msk-iam feature",
            "use a build with the default features (cargo build --features msk-iam)",
        ));
    }
    let set = [
        (keys.username, sasl.username.clone()),
        (keys.password, sasl.password.to_string()),
        (keys.password_file, sasl.password_file.clone()),
    ]
    .into_iter()
    .find(|(_, v)| !v.is_empty());
    if let Some((key, value)) = set {
        return Err(Error::invalid(
            key,
            format!("{value:?}"),
            format!("is set but {} = AWS_MSK_IAM does not use it", keys.mechanism),
            format!(
                "remove {key}: AWS_MSK_IAM signs with the AWS credential chain (AWS_ACCESS_KEY_ID, \
                 AWS_PROFILE, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, or the instance role)"
            ),
        ));
    }
    let region = &sasl.aws_region;
    if region.is_empty() {
        return Err(Error::invalid(
            keys.aws_region,
            "\"\"",
            format!("is empty but {} = AWS_MSK_IAM needs it", keys.mechanism),
            "set it to the AWS region of the MSK cluster, e.g. eu-west-1 (env: STRAIT_<SIDE>__SASL__AWS_REGION)"
                .replace("<SIDE>", &keys.aws_region[..6].to_ascii_uppercase()),
        ));
    }
    let plain = region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !plain || region.starts_with('-') {
        return Err(Error::invalid(
            keys.aws_region,
            format!("{region:?}"),
            "is not an AWS region name",
            "give the region code of the MSK cluster, e.g. us-east-1 (not an endpoint or a display name)",
        ));
    }
    Ok(())
}

/// An empty path is "not set"; a set one must be a readable file.
pub(super) fn check_readable(key: &'static str, path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    match std::fs::File::open(Path::new(path)).and_then(|f| f.metadata()) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(Error::invalid(
            key,
            format!("{path:?}"),
            "is not a regular file",
            "name the PEM or secret file itself, not its directory",
        )),
        Err(e) => Err(Error::invalid(
            key,
            format!("{path:?}"),
            format!("cannot be read ({e})"),
            "point it at a readable file (is the secret mounted?)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> TlsConfig {
        TlsConfig {
            enabled: true,
            ..TlsConfig::default()
        }
    }

    fn scram(password: &str) -> SaslConfig {
        SaslConfig {
            mechanism: SaslMechanism::ScramSha512,
            username: "strait".into(),
            password: Secret::new(password),
            ..SaslConfig::default()
        }
    }

    #[test]
    fn defaults_are_plaintext_and_valid() {
        check("source", &TlsConfig::default(), &SaslConfig::default()).expect("defaults");
        check("target", &tls(), &scram("pw")).expect("tls + scram");
        let bearer = SaslConfig {
            mechanism: SaslMechanism::OauthBearer,
            password: Secret::new("token"),
            ..SaslConfig::default()
        };
        check("target", &tls(), &bearer).expect("tls + static bearer token");
        #[cfg(feature = "msk-iam")]
        check(
            "target",
            &tls(),
            &SaslConfig {
                mechanism: SaslMechanism::AwsMskIam,
                aws_region: "eu-west-1".into(),
                ..SaslConfig::default()
            },
        )
        .expect("tls + msk iam");
    }

    #[test]
    fn rules_name_key_and_fix() {
        let mut table: Vec<(TlsConfig, SaslConfig, &str, &str)> = vec![
            (
                TlsConfig {
                    ca_file: "/x".into(),
                    ..TlsConfig::default()
                },
                SaslConfig::default(),
                "source.tls.ca_file = \"/x\" is set but source.tls.enabled is false",
                "set source.tls.enabled = true",
            ),
            (
                TlsConfig {
                    ca_file: "/nonexistent/ca.pem".into(),
                    ..tls()
                },
                SaslConfig::default(),
                "source.tls.ca_file = \"/nonexistent/ca.pem\" cannot be read",
                "is the secret mounted?",
            ),
            (
                TlsConfig {
                    server_name: "https://broker".into(),
                    ..tls()
                },
                SaslConfig::default(),
                "source.tls.server_name = \"https://broker\" is not a host name",
                "without scheme or port",
            ),
            (
                TlsConfig::default(),
                SaslConfig {
                    username: "u".into(),
                    ..SaslConfig::default()
                },
                "source.sasl.username = \"u\" is set but source.sasl.mechanism is empty",
                "SCRAM-SHA-512",
            ),
            (
                TlsConfig::default(),
                SaslConfig {
                    username: String::new(),
                    ..scram("pw")
                },
                "source.sasl.username = \"\" is empty but source.sasl.mechanism = SCRAM-SHA-512 needs it",
                "user name",
            ),
            (
                TlsConfig::default(),
                scram(""),
                "source.sasl.password = \"\" is empty",
                "source.sasl.password_file",
            ),
            (
                TlsConfig::default(),
                SaslConfig {
                    password_file: "/nonexistent/pw".into(),
                    ..scram("pw")
                },
                "source.sasl.password_file = \"/nonexistent/pw\" is set together with source.sasl.password",
                "only one",
            ),
        ];
        let iam = SaslConfig {
            mechanism: SaslMechanism::AwsMskIam,
            ..SaslConfig::default()
        };
        #[cfg(feature = "msk-iam")]
        table.extend([
            (
                TlsConfig::default(),
                iam.clone(),
                "source.sasl.aws_region = \"\" is empty but source.sasl.mechanism = AWS_MSK_IAM needs it",
                "STRAIT_SOURCE__SASL__AWS_REGION",
            ),
            (
                TlsConfig::default(),
                SaslConfig {
                    aws_region: "EU West".into(),
                    ..iam.clone()
                },
                "source.sasl.aws_region = \"EU West\" is not an AWS region name",
                "e.g. us-east-1",
            ),
            (
                TlsConfig::default(),
                SaslConfig {
                    aws_region: "eu-west-1".into(),
                    password: Secret::new("pw"),
                    ..iam.clone()
                },
                "source.sasl.password = \"***\" is set but source.sasl.mechanism = AWS_MSK_IAM does not use it",
                "AWS credential chain",
            ),
        ]);
        #[cfg(not(feature = "msk-iam"))]
        table.push((
            TlsConfig::default(),
            iam,
            "source.sasl.mechanism = \"AWS_MSK_IAM\" is not available",
            "--features msk-iam",
        ));
        table.extend([
            (
                TlsConfig::default(),
                SaslConfig {
                    mechanism: SaslMechanism::OauthBearer,
                    ..SaslConfig::default()
                },
                "source.sasl.password = \"\" is empty but source.sasl.mechanism = OAUTHBEARER needs it",
                "holding the bearer token",
            ),
            (
                TlsConfig::default(),
                SaslConfig {
                    aws_region: "eu-west-1".into(),
                    ..scram("pw")
                },
                "source.sasl.aws_region = \"eu-west-1\" is set but source.sasl.mechanism = SCRAM-SHA-512 does not use it",
                "AWS_MSK_IAM",
            ),
        ]);
        for (tls, sasl, starts, fix) in table {
            let msg = check("source", &tls, &sasl).expect_err("invalid").to_string();
            assert!(msg.starts_with(starts), "{msg}");
            assert!(msg.contains(fix), "{msg}");
        }
    }

    #[test]
    fn a_password_never_appears_in_messages() {
        let sasl = SaslConfig {
            mechanism: SaslMechanism::None,
            password: Secret::new("hunter2"),
            ..SaslConfig::default()
        };
        let msg = check("target", &TlsConfig::default(), &sasl)
            .expect_err("password without mechanism")
            .to_string();
        assert!(msg.starts_with("target.sasl.password = \"***\""), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(!format!("{sasl:?}").contains("hunter2"));
    }

    #[test]
    fn password_file_is_read_without_its_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").expect("write");
        let sasl = SaslConfig {
            password: Secret::default(),
            password_file: path.to_string_lossy().into_owned(),
            ..scram("")
        };
        check("source", &TlsConfig::default(), &sasl).expect("valid");
        assert_eq!(sasl.read_password().expect("readable").expose(), "s3cret");
    }
}
