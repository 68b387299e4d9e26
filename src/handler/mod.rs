//! Handlers shaped like axum's: a plain async fn that takes the typed payload,
//! then any [extractors](FromContext) it wants, and returns anything that
//! [turns into a reply](IntoReply).
//!
//! One handler serves both styles. How a message arrived decides what happens
//! to the handler's result, never how it was registered:
//!
//! | arrived as | handler returned | the caller gets |
//! |---|---|---|
//! | request (sync) | a value / `Ok(value)` | the value as the JSON reply |
//! | request (sync) | `()` / `Ok(())` | an empty success reply |
//! | request (sync) | `Err(e)` or a panic | [`Error::Remote`](crate::Error::Remote) with the message and [code](Rejection::code) |
//! | request (sync) | (payload did not decode) | [`Error::Codec`](crate::Error::Codec); the handler is not called |
//! | event (async) | anything `Ok` | the event is acknowledged; a value is discarded |
//! | event (async) | `Err(e)` or a panic | retried, then dead-lettered (see [`EventPolicy`](crate::service::EventPolicy)) |
//! | event (async) | (payload did not decode) | dead-lettered at once: retrying cannot fix it |
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use switchboard::handler::{Rejection, State, Subject};
//! use switchboard::Service;
//!
//! #[derive(Clone, Default)]
//! struct Stock(Arc<AtomicU64>);
//!
//! async fn reserve(quantity: u64, State(stock): State<Stock>, Subject(subject): Subject)
//!     -> Result<u64, Rejection>
//! {
//!     let left = stock.0.load(Ordering::SeqCst);
//!     if quantity > left {
//!         return Err(Rejection::new(format!("only {left} left for {subject}")).with_code("out_of_stock"));
//!     }
//!     Ok(stock.0.fetch_sub(quantity, Ordering::SeqCst) - quantity)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> switchboard::Result<()> {
//! let bus = switchboard::connect("memory://handler-doc").await?;
//! let stock = Stock(Arc::new(AtomicU64::new(5)));
//! let running = Service::new("inventory", bus.clone())
//!     .state(stock)
//!     .on("inventory.reserve", reserve)
//!     .start()
//!     .await?;
//! let left: u64 = bus.request_json("inventory.reserve", &3).await?;
//! assert_eq!(left, 2);
//! let err = bus.request_json::<_, u64>("inventory.reserve", &3).await.unwrap_err();
//! assert_eq!(err.code(), Some("out_of_stock"));
//! running.shutdown().await;
//! # Ok(()) }
//! ```

mod extract;
mod reply;

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

use crate::message::Message;
use crate::payload::FromPayload;

pub use extract::{Context, FromContext, Received, State, StateMap, Subject};
pub use reply::{IntoReply, Json, Raw, Rejection};

/// The future a [`Handler`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Message, Rejection>> + Send>>;

/// Something a [`Service`](crate::Service) can call for a message: implemented
/// for every `async fn(T, X1, …, X4) -> R` where `T` is the payload type (any
/// `DeserializeOwned` type, or a prost message in `Proto<M>`, see
/// [`FromPayload`]), each `Xi` is a [`FromContext`] extractor and `R` is
/// [`IntoReply`].
///
/// `Args` only tells the implementations apart; callers never name it.
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// Decodes the payload, extracts the context and runs the handler.
    fn call(&self, message: Message, context: Context) -> HandlerFuture;

    /// [`call`](Self::call) without the box, from the payload and what the
    /// route lends (the headers are in `received`): a route's serving loop
    /// knows the handler's type and holds this future inside its own, so a
    /// message costs no allocation of its own. Implemented for every async
    /// fn handler; the default boxes [`call`](Self::call).
    #[doc(hidden)]
    fn call_inline(
        &self,
        payload: &Bytes,
        received: Received<'_>,
    ) -> impl Future<Output = Result<Message, Rejection>> + Send + 'static {
        self.call(Message::new(payload.clone()), received.to_context())
    }

    /// Checks, when the service starts, that every extractor can be served
    /// (for example that the [`State`] it asks for was given).
    fn check(state: &StateMap) -> Result<(), String>;

    /// The Rust type the payload is decoded into, for generated documents
    /// ([`Service::asyncapi`](crate::Service::asyncapi)).
    fn payload_type() -> &'static str {
        "unknown"
    }

    /// The Rust type of the reply's payload, if the handler's result names one.
    fn reply_type() -> Option<&'static str> {
        None
    }
}

macro_rules! impl_handler {
    (@context $received:ident) => {
        ()
    };
    (@context $received:ident $($extractor:ident)+) => {
        $received.to_context()
    };
    ($($extractor:ident),*) => {
        #[allow(non_snake_case, unused_variables)]
        impl<F, Fut, T, R, $($extractor,)*> Handler<(T, $($extractor,)*)> for F
        where
            F: Fn(T, $($extractor,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            T: FromPayload + Send + 'static,
            R: IntoReply,
            $($extractor: FromContext + Send + 'static,)*
        {
            fn call(&self, message: Message, context: Context) -> HandlerFuture {
                Box::pin(self.call_inline(&message.payload, Received::of(&context)))
            }

            fn call_inline(
                &self,
                payload: &Bytes,
                received: Received<'_>,
            ) -> impl Future<Output = Result<Message, Rejection>> + Send + 'static {
                // Decoded as its `content-type` says; the reply in the same encoding.
                let encoding = crate::codec::Encoding::of_headers(received.headers());
                let started: Result<Fut, Rejection> = 'start: {
                    let payload = match T::from_payload(encoding, payload) {
                        Ok(payload) => payload,
                        Err(err) => break 'start Err(Rejection::undecodable(err)),
                    };
                    // Built only for a handler that takes an extractor.
                    let context = impl_handler!(@context received $($extractor)*);
                    $(
                        let $extractor = match $extractor::from_context(&context) {
                            Ok(value) => value,
                            Err(rejection) => break 'start Err(rejection),
                        };
                    )*
                    Ok((self)(payload, $($extractor,)*))
                };
                async move {
                    match started {
                        Ok(run) => run.await.into_reply_as(encoding),
                        Err(rejection) => Err(rejection),
                    }
                }
            }

            fn check(state: &StateMap) -> Result<(), String> {
                $($extractor::check(state)?;)*
                Ok(())
            }

            fn payload_type() -> &'static str {
                T::type_name()
            }

            fn reply_type() -> Option<&'static str> {
                R::reply_type()
            }
        }
    };
}

impl_handler!();
impl_handler!(X1);
impl_handler!(X1, X2);
impl_handler!(X1, X2, X3);
impl_handler!(X1, X2, X3, X4);
