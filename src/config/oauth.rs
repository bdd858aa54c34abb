//! The OAuth 2 client-credentials keys of `{source,target}.sasl` (`oauth_*`): OAUTHBEARER
//! tokens from a token endpoint (Keycloak, as Strimzi's `authentication.type: oauth` uses)
//! instead of a static token, and the rules between them and the other `sasl.*` keys.
//!
//! It only checks the keys and that named files are readable; requesting tokens belongs to
//! `auth::oidc`.

use super::security::{check_readable, keys_of, Keys};
use super::{env_var_for, Error, Result, SaslConfig, SaslMechanism};

/// The `oauth_*` keys of `sasl` that are set, with their shown values (secrets redacted).
fn set_keys(keys: &Keys, sasl: &SaslConfig) -> Vec<(&'static str, String)> {
    [
        (keys.endpoint, sasl.oauth_token_endpoint_url.clone()),
        (keys.client_id, sasl.oauth_client_id.clone()),
        (keys.client_secret, sasl.oauth_client_secret.to_string()),
        (keys.client_secret_file, sasl.oauth_client_secret_file.clone()),
        (keys.scope, sasl.oauth_scope.clone()),
        (keys.oauth_ca_file, sasl.oauth_ca_file.clone()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .collect()
}

/// Whether the token endpoint URL is `http://` (parsing is checked by [`check`]).
fn is_plain_http(url: &str) -> bool {
    url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
}

/// Checks the `oauth_*` keys of `side` against the mechanism and the static-token keys.
pub(super) fn check(side: &str, sasl: &SaslConfig) -> Result<()> {
    let keys = keys_of(side);
    let set = set_keys(keys, sasl);
    let Some((first, value)) = set.first().cloned() else {
        return Ok(());
    };
    let value = format!("{value:?}");
    if sasl.mechanism != SaslMechanism::OauthBearer {
        let problem = match sasl.mechanism {
            SaslMechanism::None => format!("is set but {} is empty", keys.mechanism),
            other => format!("is set but {} = {other} does not use it", keys.mechanism),
        };
        return Err(Error::invalid(
            first,
            value,
            problem,
            format!(
                "set {} = \"OAUTHBEARER\" to use the token endpoint, or remove {first}",
                keys.mechanism
            ),
        ));
    }
    let url = &sasl.oauth_token_endpoint_url;
    if url.is_empty() {
        return Err(Error::invalid(
            first,
            value,
            format!("is set but {} is empty", keys.endpoint),
            format!(
                "set {} to the OAuth token endpoint (client-credentials grant), or remove {first} to send the \
                 static token of {}",
                keys.endpoint, keys.password_file
            ),
        ));
    }
    check_endpoint(keys, sasl)
}

fn check_endpoint(keys: &Keys, sasl: &SaslConfig) -> Result<()> {
    let static_keys = [
        (keys.password, sasl.password.to_string()),
        (keys.password_file, sasl.password_file.clone()),
        (keys.username, sasl.username.clone()),
        (keys.aws_region, sasl.aws_region.clone()),
    ];
    if let Some((key, value)) = static_keys.into_iter().find(|(_, v)| !v.is_empty()) {
        return Err(Error::invalid(
            key,
            format!("{value:?}"),
            format!("is set together with {}", keys.endpoint),
            format!(
                "remove {key}: with a token endpoint strait authenticates as the OAuth client ({} and {}); \
                 for a static bearer token remove {} instead",
                keys.client_id, keys.client_secret_file, keys.endpoint
            ),
        ));
    }
    let url = &sasl.oauth_token_endpoint_url;
    let parsed = url.parse::<hyper::Uri>().ok();
    let scheme_ok = parsed
        .as_ref()
        .and_then(|u| u.scheme_str())
        .is_some_and(|s| s.eq_ignore_ascii_case("https") || s.eq_ignore_ascii_case("http"));
    let host_ok = parsed.as_ref().and_then(|u| u.host()).is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok {
        return Err(Error::invalid(
            keys.endpoint,
            format!("{url:?}"),
            "is not an https:// (or http://) URL with a host",
            "give the token endpoint's full URL, e.g. \
             https://keycloak.example/realms/kafka/protocol/openid-connect/token",
        ));
    }
    if sasl.oauth_client_id.is_empty() {
        return Err(Error::invalid(
            keys.client_id,
            "\"\"",
            format!("is empty but {} is set", keys.endpoint),
            "set the id of the OAuth client registered with the token endpoint (Strimzi: clientId)",
        ));
    }
    match (
        sasl.oauth_client_secret.is_empty(),
        sasl.oauth_client_secret_file.is_empty(),
    ) {
        (true, true) => {
            return Err(Error::invalid(
                keys.client_secret,
                "\"\"",
                format!("is empty but {} is set", keys.endpoint),
                format!(
                    "set {} to a file holding the client secret (Strimzi: clientSecret), or set {} ({})",
                    keys.client_secret_file,
                    keys.client_secret,
                    env_var_for(keys.client_secret)
                ),
            ))
        }
        (false, false) => {
            return Err(Error::invalid(
                keys.client_secret_file,
                format!("{:?}", sasl.oauth_client_secret_file),
                format!("is set together with {}", keys.client_secret),
                "set only one of them",
            ))
        }
        _ => check_readable(keys.client_secret_file, &sasl.oauth_client_secret_file)?,
    }
    if is_plain_http(url) && !sasl.oauth_ca_file.is_empty() {
        return Err(Error::invalid(
            keys.oauth_ca_file,
            format!("{:?}", sasl.oauth_ca_file),
            format!("is set but {} is http://, without TLS", keys.endpoint),
            format!("use the endpoint's https:// URL, or remove {}", keys.oauth_ca_file),
        ));
    }
    check_readable(keys.oauth_ca_file, &sasl.oauth_ca_file)
}

/// Refuses an `http://` token endpoint (the client secret would cross the network in clear
/// text) unless `allow_plaintext_credentials` says the network is trusted.
pub(super) fn check_plaintext(side: &str, sasl: &SaslConfig, allowed: bool) -> Result<()> {
    let url = &sasl.oauth_token_endpoint_url;
    if allowed || !sasl.uses_token_endpoint() || !is_plain_http(url) {
        return Ok(());
    }
    let keys = keys_of(side);
    Err(Error::invalid(
        keys.endpoint,
        format!("{url:?}"),
        "would send the OAuth client secret and the tokens in clear text (http://)",
        format!(
            "use the endpoint's https:// URL, or, only on a network nobody else can read, set {} = true ({} = true)",
            keys.allow_plaintext,
            env_var_for(keys.allow_plaintext)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const URL: &str = "https://keycloak.example/realms/kafka/protocol/openid-connect/token";

    fn oauth() -> SaslConfig {
        SaslConfig {
            mechanism: SaslMechanism::OauthBearer,
            oauth_token_endpoint_url: URL.into(),
            oauth_client_id: "strait".into(),
            oauth_client_secret: Secret::new("hunter2"),
            ..SaslConfig::default()
        }
    }

    #[test]
    fn a_complete_client_is_valid_and_replaces_the_static_token() {
        let sasl = oauth();
        check("source", &sasl).expect("valid");
        check_plaintext("source", &sasl, false).expect("https");
        assert!(sasl.uses_token_endpoint());
        let plain = SaslConfig {
            oauth_token_endpoint_url: "http://127.0.0.1:8080/token".into(),
            ..oauth()
        };
        check_plaintext("source", &plain, true).expect("http allowed on a trusted network");
        assert!(!SaslConfig::default().uses_token_endpoint());
    }

    #[test]
    fn rules_name_key_and_fix() {
        let table: Vec<(SaslConfig, &str, &str)> = vec![
            (
                SaslConfig {
                    mechanism: SaslMechanism::None,
                    ..oauth()
                },
                "target.sasl.oauth_token_endpoint_url = \"https://keycloak.example/",
                "is set but target.sasl.mechanism is empty",
            ),
            (
                SaslConfig {
                    mechanism: SaslMechanism::ScramSha512,
                    ..oauth()
                },
                "target.sasl.oauth_token_endpoint_url = ",
                "set target.sasl.mechanism = \"OAUTHBEARER\"",
            ),
            (
                SaslConfig {
                    oauth_token_endpoint_url: String::new(),
                    ..oauth()
                },
                "target.sasl.oauth_client_id = \"strait\" is set but target.sasl.oauth_token_endpoint_url is empty",
                "static token",
            ),
            (
                SaslConfig {
                    password: Secret::new("static-token"),
                    ..oauth()
                },
                "target.sasl.password = \"***\" is set together with target.sasl.oauth_token_endpoint_url",
                "for a static bearer token remove target.sasl.oauth_token_endpoint_url",
            ),
            (
                SaslConfig {
                    password_file: "/run/token".into(),
                    ..oauth()
                },
                "target.sasl.password_file = \"/run/token\" is set together with",
                "OAuth client",
            ),
            (
                SaslConfig {
                    oauth_token_endpoint_url: "keycloak.example/token".into(),
                    ..oauth()
                },
                "target.sasl.oauth_token_endpoint_url = \"keycloak.example/token\" is not an https://",
                "openid-connect/token",
            ),
            (
                SaslConfig {
                    oauth_client_id: String::new(),
                    ..oauth()
                },
                "target.sasl.oauth_client_id = \"\" is empty but target.sasl.oauth_token_endpoint_url is set",
                "clientId",
            ),
            (
                SaslConfig {
                    oauth_client_secret: Secret::default(),
                    ..oauth()
                },
                "target.sasl.oauth_client_secret = \"\" is empty",
                "target.sasl.oauth_client_secret_file",
            ),
            (
                SaslConfig {
                    oauth_client_secret_file: "/nonexistent/secret".into(),
                    ..oauth()
                },
                "target.sasl.oauth_client_secret_file = \"/nonexistent/secret\" is set together with",
                "only one",
            ),
            (
                SaslConfig {
                    oauth_client_secret: Secret::default(),
                    oauth_client_secret_file: "/nonexistent/secret".into(),
                    ..oauth()
                },
                "target.sasl.oauth_client_secret_file = \"/nonexistent/secret\" cannot be read",
                "mounted",
            ),
            (
                SaslConfig {
                    oauth_ca_file: "/nonexistent/ca.pem".into(),
                    ..oauth()
                },
                "target.sasl.oauth_ca_file = \"/nonexistent/ca.pem\" cannot be read",
                "mounted",
            ),
            (
                SaslConfig {
                    oauth_token_endpoint_url: "http://keycloak:8080/token".into(),
                    oauth_ca_file: "/etc/ca.pem".into(),
                    ..oauth()
                },
                "target.sasl.oauth_ca_file = \"/etc/ca.pem\" is set but",
                "https://",
            ),
        ];
        for (sasl, starts, fix) in table {
            let msg = check("target", &sasl).expect_err("invalid").to_string();
            assert!(msg.starts_with(starts), "{msg}");
            assert!(msg.contains(fix), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }

    #[test]
    fn an_http_endpoint_needs_allow_plaintext_credentials() {
        let sasl = SaslConfig {
            oauth_token_endpoint_url: "HTTP://keycloak:8080/token".into(),
            ..oauth()
        };
        check("source", &sasl).expect("well-formed");
        let msg = check_plaintext("source", &sasl, false)
            .expect_err("refused")
            .to_string();
        assert!(
            msg.starts_with("source.sasl.oauth_token_endpoint_url = \"HTTP://keycloak:8080/token\" would send"),
            "{msg}"
        );
        assert!(
            msg.contains("STRAIT_SOURCE__ALLOW_PLAINTEXT_CREDENTIALS = true"),
            "{msg}"
        );
    }

    #[test]
    fn the_client_secret_file_is_read_on_each_call() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secret");
        std::fs::write(&path, "first\n").expect("write");
        let sasl = SaslConfig {
            oauth_client_secret: Secret::default(),
            oauth_client_secret_file: path.to_string_lossy().into_owned(),
            ..oauth()
        };
        check("source", &sasl).expect("valid");
        assert_eq!(sasl.read_client_secret().expect("readable").expose(), "first");
        std::fs::write(&path, "rotated").expect("write");
        assert_eq!(sasl.read_client_secret().expect("readable").expose(), "rotated");
        assert!(!format!("{:?}", oauth()).contains("hunter2"));
    }
}
