//! [`Security`]: how every connection to one cluster is protected and authenticated, built once
//! per cluster from its `tls.*` and `sasl.*` keys and applied by `Conn` on each new connection.

use super::error::Result;
use super::sasl::Sasl;
use super::tls::Tls;
use crate::config::ClusterConfig;

/// TLS and SASL settings of one cluster. The default is plaintext with no authentication.
#[derive(Clone, Debug, Default)]
pub struct Security {
    tls: Option<Tls>,
    sasl: Option<Sasl>,
}

impl Security {
    /// No TLS, no SASL.
    pub fn plaintext() -> Self {
        Self::default()
    }

    /// Reads the CA bundle, client certificate and key of cluster `name` ("source" or
    /// "target", the section its keys live in) and prepares SASL. Opens no socket; an unusable
    /// file is an error naming its key.
    pub fn from_config(name: &str, config: &ClusterConfig) -> Result<Self> {
        let tls = if config.tls.enabled {
            Some(Tls::from_config(name, &config.tls)?)
        } else {
            None
        };
        Ok(Self {
            tls,
            sasl: Sasl::from_config(name, &config.sasl),
        })
    }

    /// Takes OAUTHBEARER / AWS_MSK_IAM tokens from `tokens` instead of the configured source
    /// (tests: static AWS credentials, shortened lifetimes). No effect without SASL.
    pub fn with_tokens(mut self, tokens: crate::auth::TokenCache) -> Self {
        if let Some(sasl) = self.sasl.as_mut() {
            sasl.set_tokens(tokens);
        }
        self
    }

    /// For logs: `plaintext`, `TLS`, `SASL_SSL/SCRAM-SHA-512`, in Kafka's protocol names.
    pub fn describe(&self) -> String {
        match (&self.tls, &self.sasl) {
            (None, None) => "PLAINTEXT".to_owned(),
            (Some(_), None) => "SSL".to_owned(),
            (None, Some(s)) => format!("SASL_PLAINTEXT/{}", s.mechanism()),
            (Some(_), Some(s)) => format!("SASL_SSL/{}", s.mechanism()),
        }
    }

    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    pub(crate) fn sasl(&self) -> Option<&Sasl> {
        self.sasl.as_ref()
    }
}
