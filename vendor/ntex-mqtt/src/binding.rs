//! Fleetgate patch 13: a service binding whose readiness check holds no memory between polls.
//!
//! ntex-service's `PipelineBinding::poll_ready` boxes a readiness future on its first poll
//! and keeps that box for the binding's whole life. The box is as large as the largest
//! readiness future of the service chain (the in-flight limiter, the dispatcher, the
//! control service): about 2.9 KB per connection for the two bindings of an MQTT
//! connection, held by every idle connection. This binding polls the readiness future in
//! place and boxes one only while the service is not ready, freeing it once it is.
use std::task::{Context, Poll, ready};
use std::{future::Future, pin::Pin, pin::pin};

use ntex_service::{Pipeline, PipelineBinding, PipelineCall, Service};

type Readiness<E> = Pin<Box<dyn Future<Output = Result<(), E>>>>;

pub(crate) struct Binding<S: Service<R>, R> {
    /// Calls and shutdown, as upstream.
    inner: PipelineBinding<S, R>,
    /// The pipeline readiness is checked on (its own waiter index).
    pl: Pipeline<S>,
    /// A readiness check that found the service busy, until it completes.
    pending: Option<Readiness<S::Error>>,
}

impl<S, R> Binding<S, R>
where
    S: Service<R> + 'static,
    R: 'static,
{
    pub(crate) fn new(svc: S) -> Self {
        let pl = Pipeline::new(svc);
        Binding { inner: pl.clone().bind(), pl, pending: None }
    }

    /// Returns `Ready` when the service can take a request, as
    /// `PipelineBinding::poll_ready` does.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.pl.poll::<R>(cx)?;
        if let Some(fut) = self.pending.as_mut() {
            let res = ready!(fut.as_mut().poll(cx));
            self.pending = None;
            return Poll::Ready(res);
        }
        if let Poll::Ready(res) = pin!(self.pl.ready::<R>()).poll(cx) {
            return Poll::Ready(res);
        }
        // Busy: the check just made is dropped (a readiness future may be), and one that
        // can outlive this poll takes its place.
        let pl = self.pl.clone();
        let mut fut: Readiness<S::Error> = Box::pin(async move { pl.ready::<R>().await });
        let res = fut.as_mut().poll(cx);
        if res.is_pending() {
            self.pending = Some(fut);
        }
        res
    }

    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.poll_shutdown(cx)
    }

    pub(crate) fn call(&self, req: R) -> PipelineCall<S, R> {
        self.inner.call(req)
    }

    pub(crate) fn call_nowait(&self, req: R) -> PipelineCall<S, R> {
        self.inner.call_nowait(req)
    }
}
