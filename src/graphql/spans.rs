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

/// Runs a compiled answer (`graphql::compiled`) in the operation's span, and logs it as an
/// operation when it answered (a declined one runs through [`traced`] next).
pub async fn traced_compiled<F: Future<Output = Option<Vec<u8>>>>(
    answer: F,
    operation: &str,
) -> Option<Vec<u8>> {
    let span = tracing::info_span!("graphql", operation, compiled = true);
    let start = Instant::now();
    let body = answer.instrument(span.clone()).await?;
    log_line(&span, 0, "OK", start);
    Some(body)
}

fn log(span: &tracing::Span, res: &Response, start: Instant) {
    let code = first_error_code(res);
    log_line(span, res.errors.len(), &code, start);
}

fn log_line(span: &tracing::Span, errors: usize, code: &str, start: Instant) {
    span.in_scope(|| {
        tracing::info!(
            errors,
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

/// The code of a response's first error, `OK` without errors.
pub fn first_error_code(r: &async_graphql::Response) -> String {
    r.errors
        .first()
        .and_then(|e| e.extensions.as_ref())
        .and_then(|x| x.get("code"))
        .map(|c| c.to_string().trim_matches('"').to_owned())
        .unwrap_or_else(|| "OK".into())
}
