//! A tracing span per GraphQL operation (`graphql`, with the operation's name), inside the
//! request's span, and one log line per operation with its error count and duration: around
//! each execution for HTTP ([`traced`]), from an extension for WebSocket operations.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::Response;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use tracing::Instrument;

/// Runs one operation in its span and logs it.
pub async fn traced(
    schema: &crate::graphql::AppSchema,
    request: async_graphql::Request,
    operation: &str,
) -> Response {
    let span = tracing::info_span!("graphql", operation);
    let start = Instant::now();
    let res = schema.execute(request).instrument(span.clone()).await;
    log(&span, &res, start);
    res
}

fn log(span: &tracing::Span, res: &Response, start: Instant) {
    let code = crate::http::graphql::first_error_code(res);
    span.in_scope(|| {
        tracing::info!(
            errors = res.errors.len(),
            code = %code,
            elapsed_ms = start.elapsed().as_secs_f64() * 1000.0,
            "graphql operation"
        )
    });
}

pub struct OperationSpans;

impl ExtensionFactory for OperationSpans {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(OperationSpan)
    }
}

struct OperationSpan;

#[async_graphql::async_trait::async_trait]
impl Extension for OperationSpan {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let span =
            tracing::info_span!("graphql", operation = operation_name.unwrap_or("anonymous"));
        let start = Instant::now();
        let res = next.run(ctx, operation_name).instrument(span.clone()).await;
        log(&span, &res, start);
        res
    }
}
