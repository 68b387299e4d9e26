//! What the suite needs from a backend under test: connections to it.

use async_trait::async_trait;

use crate::bus::Bus;
use crate::error::Result;

/// Makes connections to the backend under test, one per simulated service.
#[async_trait]
pub trait Fixture: Send + Sync + 'static {
    /// The backend's name, used as the trial name prefix.
    fn name(&self) -> &str;

    /// A new, independent connection to the same system.
    async fn connect(&self) -> Result<Bus>;
}
