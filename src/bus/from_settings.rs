//! Building a [`Bus`] from [`Settings`]: every transport connected and
//! wrapped in the configured layers, the route table, the outbox.

use std::collections::BTreeMap;

use super::Bus;
use crate::error::{Error, Result};
use crate::settings::{Settings, TransportSettings, DEFAULT_TRANSPORT};

impl Settings {
    /// Connects every transport and returns the [`Bus`] that follows these routes.
    pub async fn connect(&self) -> Result<Bus> {
        let table = self.route_table()?;
        let mut buses = BTreeMap::new();
        let default = self
            .transports
            .get(DEFAULT_TRANSPORT)
            .cloned()
            .unwrap_or_default();
        for (name, config) in std::iter::once((DEFAULT_TRANSPORT, &default)).chain(
            self.transports
                .iter()
                .filter(|(name, _)| name.as_str() != DEFAULT_TRANSPORT)
                .map(|(name, config)| (name.as_str(), config)),
        ) {
            let bus = config.connect().await.map_err(|err| match err {
                Error::InvalidConfig { message } => {
                    Error::config(format!("transports.{name}: {message}"))
                }
                other => other,
            })?;
            tracing::debug!(
                transport = name,
                backend = bus.backend(),
                "transport connected"
            );
            let layered = self.resilience.wrap(bus.transport().clone())?;
            let url = bus.transport_url(DEFAULT_TRANSPORT).map(str::to_owned);
            let mut layered_bus = Bus::new(layered).with_default_timeout(bus.default_timeout());
            if let Some(url) = url {
                layered_bus = layered_bus.with_url(&url);
            }
            if config.cloudevents {
                layered_bus = layered_bus.with_cloudevents();
            }
            let bus = layered_bus;
            buses.insert(name.to_owned(), bus);
        }
        let handlers = self.resilience.concurrency.as_ref().map(|c| c.handlers);
        let mut bus = Bus::routed(table, buses, self.events.clone(), handlers)?;
        if let Some(source) = &self.cloudevents.source {
            bus = bus.with_cloudevents_source(source);
        }
        let bus = match self.outbox.is_on() {
            false => bus,
            #[cfg(feature = "outbox")]
            true => bus.with_outbox(&self.outbox).await?,
            #[cfg(not(feature = "outbox"))]
            true => return Err(Error::config(
                "`[outbox]` needs the `outbox` feature of switchboard, which this build does not enable",
            )),
        };
        bus.check_fallbacks()?;
        Ok(bus)
    }
}

impl TransportSettings {
    /// Connects to the configured backend.
    pub async fn connect(&self) -> Result<Bus> {
        crate::connect(&self.to_url()?).await
    }
}
