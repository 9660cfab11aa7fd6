//! The GraphQL schema: types over the service layer, nothing more. Resolvers read the caller's
//! [`RequestContext`] (org + request-scoped DataLoaders), call one service method, and map its
//! errors with `.gql()` so every error carries `extensions.code`.

pub mod compiled;
mod coupons;
pub mod gate;
mod loaders;
mod mutation;
mod query;
pub mod spans;
mod subscription;
mod types;
mod upload;

use std::sync::Arc;

use async_graphql::{Context, SDLExportOptions, Schema};

pub use loaders::Loaders;
pub use mutation::MutationRoot;
pub use query::QueryRoot;
pub use subscription::SubscriptionRoot;

use crate::domain::OrgContext;
use crate::error::AppError;
use crate::service::Service;

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema, with the service as its only schema-wide data. Anything that depends on the
/// caller is attached per request as a [`RequestContext`].
pub fn build_schema(service: Service) -> AppSchema {
    build_schema_with(service, &GraphqlLimits::default())
}

/// Limits on what one GraphQL request may ask, checked before anything executes.
#[derive(Clone, Debug)]
pub struct GraphqlLimits {
    /// Deepest nesting of selections.
    pub max_depth: usize,
    /// Most complexity points: one per field, lists weighted by their page size (`first`).
    pub max_complexity: usize,
    /// Most aliased fields in one document.
    pub max_aliases: usize,
    /// Most operations in one batched request.
    pub max_batch: usize,
    /// Largest response body; a larger answer is replaced by a `RESPONSE_TOO_LARGE` error.
    pub max_response_bytes: usize,
    pub introspection: bool,
    /// "Did you mean …?" in validation errors.
    pub suggestions: bool,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        Self {
            max_depth: 12,
            max_complexity: 20_000,
            max_aliases: 30,
            max_batch: 10,
            max_response_bytes: 16 * 1024 * 1024,
            introspection: true,
            suggestions: true,
        }
    }
}

/// The schema HTTP requests run on. It has no extensions: with any, async-graphql routes every
/// field's resolution through the extension chain (a registry lookup and boxed futures per
/// field), which cost about a tenth of a status request. The HTTP handler gives each
/// operation its span and log line itself ([`spans::traced`]).
pub fn build_schema_with(service: Service, limits: &GraphqlLimits) -> AppSchema {
    builder(service, limits).finish()
}

/// The schema WebSocket operations run on: the same, with a span and log line per operation
/// from an extension, since the WebSocket protocol runs operations itself.
pub fn build_ws_schema_with(service: Service, limits: &GraphqlLimits) -> AppSchema {
    builder(service, limits)
        .extension(spans::OperationSpans)
        .extension(gate::WebSocketChecks {
            max_aliases: limits.max_aliases,
        })
        .finish()
}

fn builder(
    service: Service,
    limits: &GraphqlLimits,
) -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    let mut b = Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(service)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity);
    if !limits.introspection {
        b = b.disable_introspection();
    }
    if !limits.suggestions {
        b = b.disable_suggestions();
    }
    b
}

/// The SDL, fields/arguments/enum values sorted, as committed in `schema.graphql`.
pub fn sdl(schema: &AppSchema) -> String {
    schema.sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items()
            .use_space_ident()
            .indent_width(2),
    )
}

/// What a request knows about its caller: the org (from the API key) and DataLoaders that can
/// only ever load that org's rows.
pub struct RequestContext {
    pub org: OrgContext,
    service: Service,
    /// Made on first use: operations that select no nested objects never need them.
    loaders: std::sync::OnceLock<Loaders>,
}

impl RequestContext {
    pub fn new(service: Service, org: OrgContext) -> Arc<Self> {
        Arc::new(Self {
            org,
            service,
            loaders: std::sync::OnceLock::new(),
        })
    }

    pub fn loaders(&self) -> &Loaders {
        self.loaders
            .get_or_init(|| Loaders::new(self.service.clone(), self.org.clone()))
    }
}

fn internal(msg: &str) -> async_graphql::Error {
    use async_graphql::ErrorExtensions;
    AppError::Internal(anyhow::anyhow!("{msg}")).extend()
}

pub(crate) fn request_ctx<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Arc<RequestContext>> {
    ctx.data::<Arc<RequestContext>>()
        .map_err(|_| internal("request context missing"))
}

pub(crate) fn service<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a Service> {
    ctx.data::<Service>()
        .map_err(|_| internal("service missing from schema data"))
}

/// A loader's error as the field's error, with its code.
pub(crate) fn loader_err(e: Arc<AppError>) -> async_graphql::Error {
    async_graphql::ErrorExtensions::extend(e.as_ref())
}

/// A connection's cursor: `kind:n`, base64url, opaque to clients.
pub(crate) fn cursor(kind: &str, n: i64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{n}"))
}

/// The `n` of a cursor of this `kind`; any other text (another connection's cursor too) is
/// `BAD_USER_INPUT`.
pub(crate) fn parse_cursor(kind: &str, cursor: &str) -> crate::error::AppResult<i64> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|s| {
            s.strip_prefix(kind)
                .and_then(|rest| rest.strip_prefix(':'))
                .and_then(|n| n.parse().ok())
        })
        .ok_or_else(|| AppError::BadUserInput("`after` is not a cursor this API returned".into()))
}

/// A page of `first` items (default: the default page size) costs `first` times one item.
pub(crate) fn list_complexity(first: Option<i32>, child_complexity: usize) -> usize {
    let n = first.map_or(crate::service::DEFAULT_PAGE_SIZE as usize, |f| {
        f.max(0) as usize
    });
    n.max(1).saturating_mul(child_complexity)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cursors_round_trip_and_reject_junk_and_other_kinds() {
        assert_eq!(
            super::parse_cursor("Coupon", &super::cursor("Coupon", 7)).ok(),
            Some(7)
        );
        let series = super::cursor("CouponSeries", 1);
        for junk in ["7", "", "Q291cG9uOg", "é", series.as_str()] {
            assert!(super::parse_cursor("Coupon", junk).is_err(), "{junk}");
        }
    }
}
