//! Extractors: what a handler can ask for besides its payload.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::Rejection;
use crate::headers::Headers;
use crate::settings::Style;
use crate::trace::TraceContext;

/// Shared values given to a service once with [`Service::state`](crate::Service::state),
/// looked up by type when a handler asks for [`State<S>`].
#[derive(Clone, Default)]
pub struct StateMap {
    values: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl StateMap {
    /// Adds (or replaces) the value of type `S`.
    pub fn insert<S: Clone + Send + Sync + 'static>(&mut self, value: S) {
        self.values.insert(TypeId::of::<S>(), Arc::new(value));
    }

    /// The value of type `S`, if one was given.
    pub fn get<S: Clone + Send + Sync + 'static>(&self) -> Option<S> {
        self.values
            .get(&TypeId::of::<S>())
            .and_then(|value| value.downcast_ref::<S>())
            .cloned()
    }

    /// Whether a value of type `S` was given.
    pub fn contains<S: 'static>(&self) -> bool {
        self.values.contains_key(&TypeId::of::<S>())
    }
}

impl fmt::Debug for StateMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMap")
            .field("values", &self.values.len())
            .finish()
    }
}

/// Everything about one received message except its payload.
#[derive(Debug, Clone)]
pub struct Context {
    pub(crate) subject: Arc<str>,
    pub(crate) headers: Headers,
    pub(crate) trace: TraceContext,
    pub(crate) style: Style,
    pub(crate) state: Arc<StateMap>,
}

impl Context {
    /// The subject the message was sent to (a concrete subject, even on a wildcard route).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The message's headers (reserved `sb-` transport headers removed).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The trace context this handler runs in (a child of the caller's).
    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }

    /// How the message arrived: [`Style::Sync`] for a request that waits for
    /// a reply, [`Style::Async`] for an event.
    pub fn style(&self) -> Style {
        self.style
    }

    /// The service's shared state.
    pub fn state(&self) -> &StateMap {
        &self.state
    }
}

/// What a route lends a handler about a received message besides its
/// payload: the [`Context`] is built from it (its parts cloned) only for a
/// handler that takes an extractor, so one that takes the payload alone
/// costs no copy of the headers.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub(crate) subject: &'a Arc<str>,
    pub(crate) headers: &'a Headers,
    pub(crate) trace: &'a TraceContext,
    pub(crate) style: Style,
    pub(crate) state: &'a Arc<StateMap>,
}

impl<'a> Received<'a> {
    /// What `context` holds, lent.
    pub fn of(context: &'a Context) -> Self {
        Received {
            subject: &context.subject,
            headers: &context.headers,
            trace: &context.trace,
            style: context.style,
            state: &context.state,
        }
    }

    /// The message's headers.
    pub fn headers(&self) -> &'a Headers {
        self.headers
    }

    /// The handler's context, its parts cloned.
    pub fn to_context(&self) -> Context {
        Context {
            subject: self.subject.clone(),
            headers: self.headers.clone(),
            trace: self.trace.clone(),
            style: self.style,
            state: self.state.clone(),
        }
    }
}

/// A value a handler can take as an argument after its payload.
///
/// Implemented for [`State<S>`], [`Subject`], [`Headers`], [`TraceContext`],
/// [`Style`] and [`Context`] itself; implement it for your own types to build
/// them from the context.
pub trait FromContext: Sized {
    /// Builds the value; a `Rejection` answers the message with that error.
    fn from_context(context: &Context) -> Result<Self, Rejection>;

    /// Checks at start-up that this extractor can be served by `state`.
    fn check(state: &StateMap) -> Result<(), String> {
        let _ = state;
        Ok(())
    }
}

/// Shared state of type `S`, given once with [`Service::state`](crate::Service::state)
/// and cloned for each call (wrap large or mutable state in an `Arc`).
///
/// A service whose handler asks for a state it was not given fails to
/// [`start`](crate::Service::start), naming the type.
#[derive(Debug, Clone, Copy, Default)]
pub struct State<S>(pub S);

impl<S: Clone + Send + Sync + 'static> FromContext for State<S> {
    fn from_context(context: &Context) -> Result<Self, Rejection> {
        context.state.get::<S>().map(State).ok_or_else(|| {
            Rejection::new(format!(
                "no state of type {} was given to the service",
                std::any::type_name::<S>()
            ))
        })
    }

    fn check(state: &StateMap) -> Result<(), String> {
        match state.contains::<S>() {
            true => Ok(()),
            false => Err(format!(
                "a handler takes State<{0}> but the service was not given one: call .state(value) with a {0}",
                std::any::type_name::<S>()
            )),
        }
    }
}

/// The subject the message was sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject(pub String);

impl FromContext for Subject {
    fn from_context(context: &Context) -> Result<Self, Rejection> {
        Ok(Subject(context.subject.to_string()))
    }
}

impl FromContext for Headers {
    fn from_context(context: &Context) -> Result<Self, Rejection> {
        Ok(context.headers.clone())
    }
}

impl FromContext for TraceContext {
    fn from_context(context: &Context) -> Result<Self, Rejection> {
        Ok(context.trace.clone())
    }
}

impl FromContext for Style {
    fn from_context(context: &Context) -> Result<Self, Rejection> {
        Ok(context.style)
    }
}

impl FromContext for Context {
    fn from_context(context: &Context) -> Result<Self, Rejection> {
        Ok(context.clone())
    }
}
