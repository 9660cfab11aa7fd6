//! The GraphQL schema: types over the service layer, nothing more. Resolvers read the caller's
//! [`RequestContext`] (org + request-scoped DataLoaders), call one service method, and map its
//! errors with `.gql()` so every error carries `extensions.code`.

mod loaders;
mod mutation;
mod query;
mod subscription;
mod types;

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
    Schema::build(QueryRoot, MutationRoot, SubscriptionRoot)
        .data(service)
        .finish()
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
    pub loaders: Loaders,
}

impl RequestContext {
    pub fn new(service: Service, org: OrgContext) -> Arc<Self> {
        Arc::new(Self {
            loaders: Loaders::new(service, org.clone()),
            org,
        })
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
