//! Defaults shared by the layers and the services that apply them.

/// Messages one route of a [`Service`](crate::Service) handles at once
/// unless [`Service::concurrency`](crate::Service::concurrency) or
/// `[resilience.concurrency] handlers` says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 256;
