//! A site as the gateway runs it: its validated config, its backend (static root or upstream
//! pool) and its metric handles.

use std::sync::Arc;

use crate::config::{BackendConfig, HostPattern, SiteConfig};
use crate::error::{ConfigError, GatewayError};
use crate::metrics::{LazySiteMetrics, Metrics};
use crate::static_files::StaticSite;
use crate::upstream::{Pool, Targets};

pub(crate) struct Site {
    pub(crate) config: SiteConfig,
    pub(crate) backend: Backend,
    pub(crate) metrics: LazySiteMetrics,
    /// The `Strict-Transport-Security` value for HTTPS answers, built once here rather than per
    /// request.
    pub(crate) hsts: Option<http::HeaderValue>,
}

pub(crate) enum Backend {
    Static(StaticSite),
    Proxy(Arc<Pool>),
}

impl Site {
    /// Builds a site. A proxy site whose upstreams, balancing and health settings are unchanged
    /// keeps `previous`'s pool, so a reload neither forgets health state nor undoes a deploy.
    /// Returns whether the pool is new (it then needs a health checker). A new pool takes its
    /// targets from `targets`, so it shares them with the pools it replaces.
    pub(crate) fn build(
        config: SiteConfig,
        previous: Option<&Site>,
        metrics: &Metrics,
        targets: &Targets,
    ) -> Result<(Site, bool), GatewayError> {
        let mut fresh_pool = false;
        let backend = match &config.backend {
            BackendConfig::Static(s) => {
                Backend::Static(StaticSite::new(s).map_err(|e| ConfigError {
                    file: None,
                    site: Some(config.name.clone()),
                    key: "root".into(),
                    message: format!("cannot open `{}`: {e}", s.root.display()),
                })?)
            }
            BackendConfig::Proxy(p) => {
                let reusable = previous.and_then(|prev| match &prev.backend {
                    Backend::Proxy(pool)
                        if pool.configured == p.upstreams
                            && pool.balance == p.balance
                            && pool.health == p.health =>
                    {
                        Some(pool.clone())
                    }
                    _ => None,
                });
                Backend::Proxy(reusable.unwrap_or_else(|| {
                    fresh_pool = true;
                    Arc::new(Pool::new(
                        targets,
                        &config.name,
                        p.upstreams.clone(),
                        p.balance,
                        p.health.clone(),
                        check_host(&config.hosts),
                    ))
                }))
            }
        };
        let metrics = metrics.for_site(
            &config.name,
            previous
                .filter(|p| p.config.name == config.name)
                .and_then(|p| p.metrics.handles()),
        );
        let hsts = config.https.hsts.and_then(|max_age| {
            http::HeaderValue::try_from(format!("max-age={}", max_age.as_secs())).ok()
        });
        Ok((
            Site {
                config,
                backend,
                metrics,
                hsts,
            },
            fresh_pool,
        ))
    }

    /// The upstream pool of a proxy site.
    pub(crate) fn pool(&self) -> Option<&Arc<Pool>> {
        match &self.backend {
            Backend::Proxy(pool) => Some(pool),
            Backend::Static(_) => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn for_test(config: SiteConfig) -> Site {
        Site::build(config, None, &Metrics::new(), &Targets::default())
            .unwrap()
            .0
    }
}

/// The Host header health checks send: the site's first concrete host name.
fn check_host(hosts: &[HostPattern]) -> String {
    hosts
        .iter()
        .find_map(|h| match h {
            HostPattern::Exact(h) => Some(h.clone()),
            HostPattern::Wildcard(s) => Some(format!("health{s}")),
            HostPattern::Any => None,
        })
        .unwrap_or_else(|| "localhost".into())
}
