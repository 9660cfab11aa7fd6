//! Checks an operation meets before it runs where the HTTP handler cannot make them: over
//! WebSocket, every `subscribe` message is a new operation on an open socket. The WebSocket
//! schema carries this extension: the same alias limit as HTTP, the caller's rate limit (an
//! [`OperationGate`] put in the connection's data), and no mutations (they are sent with POST,
//! where uploads and every write check live).

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ErrorExtensions, Pos, ServerError, ServerResult, Variables};

use crate::error::AppError;

/// Aliased fields in a document (its operations and fragments).
pub fn count_aliases(doc: &ExecutableDocument) -> usize {
    fn aliases(set: &SelectionSet) -> usize {
        set.items
            .iter()
            .map(|sel| match &sel.node {
                Selection::Field(f) => {
                    usize::from(f.node.alias.is_some()) + aliases(&f.node.selection_set.node)
                }
                Selection::InlineFragment(i) => aliases(&i.node.selection_set.node),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }
    doc.operations
        .iter()
        .map(|(_, op)| aliases(&op.node.selection_set.node))
        .sum::<usize>()
        + doc
            .fragments
            .values()
            .map(|f| aliases(&f.node.selection_set.node))
            .sum::<usize>()
}

/// Takes a token of the caller's rate limit for one operation.
#[derive(Clone)]
pub struct OperationGate(pub Arc<dyn Fn() -> Result<(), AppError> + Send + Sync>);

/// The extension (see the module documentation).
pub struct WebSocketChecks {
    pub max_aliases: usize,
}

impl ExtensionFactory for WebSocketChecks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Checks {
            max_aliases: self.max_aliases,
        })
    }
}

struct Checks {
    max_aliases: usize,
}

fn refused(e: AppError) -> ServerError {
    e.extend().into_server_error(Pos::default())
}

#[async_graphql::async_trait::async_trait]
impl Extension for Checks {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        if doc
            .operations
            .iter()
            .any(|(_, op)| op.node.ty == OperationType::Mutation)
        {
            return Err(refused(AppError::BadUserInput(
                "mutations are not accepted over WebSocket; send them with POST /graphql".into(),
            )));
        }
        if count_aliases(&doc) > self.max_aliases {
            return Err(refused(AppError::BadUserInput(format!(
                "a request may use at most {} aliases",
                self.max_aliases
            ))));
        }
        if let Some(gate) = ctx.data_opt::<OperationGate>() {
            (gate.0)().map_err(refused)?;
        }
        Ok(doc)
    }
}
