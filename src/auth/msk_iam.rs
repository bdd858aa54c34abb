//! [`MskIamTokens`]: MSK IAM bearer tokens from `aws-msk-iam-sasl-signer`, signed with the
//! standard AWS credential chain (env, profile, web identity, ECS, instance role) or with
//! credentials given by the caller (tests: static keys, which sign offline).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::Credentials;
use aws_types::region::Region;
use aws_types::sdk_config::SharedCredentialsProvider;

use super::{BoxFuture, Error, Result, Token, TokenSource};
use crate::config::Secret;

/// Issues MSK IAM tokens for one region.
pub struct MskIamTokens {
    region: String,
    /// The credential chain, built on first use (building it is async and reads files).
    credentials: tokio::sync::OnceCell<SharedCredentialsProvider>,
}

impl std::fmt::Debug for MskIamTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The provider's own Debug is not trusted to redact; name the region only.
        f.debug_struct("MskIamTokens")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskIamTokens {
    /// Tokens for `region`, signed with credentials from the default AWS chain.
    pub fn new(region: &str) -> Self {
        Self {
            region: region.to_owned(),
            credentials: tokio::sync::OnceCell::new(),
        }
    }

    /// Tokens for `region`, signed with fixed keys (no network involved).
    pub fn with_static_credentials(
        region: &str,
        access_key_id: &str,
        secret_access_key: &Secret,
        session_token: Option<&Secret>,
    ) -> Self {
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key.expose(),
            session_token.map(|t| t.expose().to_owned()),
            None,
            "strait-static",
        );
        Self {
            region: region.to_owned(),
            credentials: tokio::sync::OnceCell::new_with(Some(SharedCredentialsProvider::new(credentials))),
        }
    }

    async fn provider(&self) -> SharedCredentialsProvider {
        self.credentials
            .get_or_init(|| async {
                let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(Region::new(self.region.clone()))
                    .build()
                    .await;
                SharedCredentialsProvider::new(chain)
            })
            .await
            .clone()
    }

    async fn issue(&self) -> Result<Token> {
        let provider = self.provider().await;
        let region = Region::new(self.region.clone());
        let (token, expiry_ms) =
            aws_msk_iam_sasl_signer::generate_auth_token_from_credentials_provider(region, provider)
                .await
                .map_err(|e| self.classify(e))?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let lifetime = Duration::from_millis(u64::try_from(expiry_ms - now_ms).unwrap_or(0));
        Ok(Token {
            value: Secret::new(token),
            lifetime,
        })
    }

    /// The signer's error type is private; its credential failures carry the SDK's
    /// `CredentialsError` as their source, everything else is a signing failure.
    fn classify<E: std::error::Error + Send + Sync + 'static>(&self, e: E) -> Error {
        let region = self.region.clone();
        let from_chain = std::error::Error::source(&e).is_some_and(|s| s.is::<CredentialsError>());
        if from_chain {
            Error::Credentials {
                region,
                source: Arc::new(e),
            }
        } else {
            Error::Sign {
                region,
                source: Arc::new(e),
            }
        }
    }
}

impl TokenSource for MskIamTokens {
    fn fetch(&self) -> BoxFuture<'_, Result<Token>> {
        Box::pin(self.issue())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::{future, ProvideCredentials};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn decode(token: &str) -> String {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .expect("base64url without padding");
        String::from_utf8(raw).expect("a URL")
    }

    #[tokio::test]
    async fn static_credentials_sign_offline_a_presigned_connect_url() {
        let tokens = MskIamTokens::with_static_credentials(
            "eu-west-1",
            "AKIDEXAMPLE",
            &Secret::new(SECRET),
            Some(&Secret::new("session-token-value")),
        );
        let token = tokens.fetch().await.expect("signed offline");
        let lifetime = token.lifetime.as_secs();
        assert!((890..=900).contains(&lifetime), "{lifetime}");
        let url = decode(token.value.expose());
        assert!(url.starts_with("https://kafka.eu-west-1.amazonaws.com/?"), "{url}");
        for needle in [
            "Action=kafka-cluster%3AConnect",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F",
            "%2Feu-west-1%2Fkafka-cluster%2Faws4_request",
            "X-Amz-Expires=900",
            "X-Amz-Signature=",
            "X-Amz-Security-Token=session-token-value",
        ] {
            assert!(url.contains(needle), "lacks {needle}: {url}");
        }
        assert!(!url.contains("wJalrXUtnFEMI"), "the secret key is in the token");
        assert!(!format!("{tokens:?} {token:?}").contains(SECRET));
        assert!(!format!("{token:?}").contains("session-token-value"));
    }

    #[derive(Debug)]
    struct NoCredentials;

    impl ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded("no provider in the chain had any")))
        }
    }

    #[tokio::test]
    async fn a_credential_failure_is_classified_with_a_fix() {
        let tokens = MskIamTokens {
            region: "eu-west-1".into(),
            credentials: tokio::sync::OnceCell::new_with(Some(SharedCredentialsProvider::new(NoCredentials))),
        };
        let err = tokens.fetch().await.expect_err("no credentials");
        assert!(matches!(err, Error::Credentials { .. }), "{err:?}");
        assert!(
            err.chain().starts_with("no AWS credentials for region eu-west-1"),
            "{}",
            err.chain()
        );
        assert!(err.fix().contains("AWS_WEB_IDENTITY_TOKEN_FILE"));
    }
}
