//! The admin listener: Prometheus metrics and a liveness probe.

use http::{HeaderValue, Method, Request, Response, StatusCode, header};

use crate::body::{Body, full};
use crate::gateway::Shared;
use crate::synthetic;

pub(crate) fn handle<B>(shared: &Shared, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return synthetic::page(
            StatusCode::METHOD_NOT_ALLOWED,
            "The admin endpoints are read-only.",
        );
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = Response::new(full(shared.metrics.encode()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        "/healthz" => {
            let mut r = Response::new(full("ok\n"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        _ => synthetic::not_found(),
    }
}
