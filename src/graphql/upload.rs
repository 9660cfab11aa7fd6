//! The `Upload` scalar: a file of a GraphQL multipart request.
//!
//! async-graphql's own `Upload` trusts its input: a variable or a literal
//! `"#__graphql_file__:x"` panics while the argument is parsed, and a number that names no file
//! panics when the file is read, so any client could reset its connection with one string,
//! before any permission check. This scalar registers the same `Upload` type (the schema does not
//! change) and refuses both with a coded error.

use std::borrow::Cow;
use std::sync::Arc;

use async_graphql::registry::{MetaType, MetaTypeId, Registry};
use async_graphql::{Context, InputType, InputValueError, InputValueResult, UploadValue, Value};

use crate::error::AppError;

/// The placeholder the multipart reader (`Request::set_upload`) puts where a file goes.
const PLACEHOLDER: &str = "#__graphql_file__:";

/// A file argument: the index of one of the request's files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileUpload(usize);

impl FileUpload {
    /// The file this argument names; `BAD_USER_INPUT` when the request sent no such file.
    pub fn value(&self, ctx: &Context<'_>) -> Result<UploadValue, AppError> {
        let missing = || {
            AppError::BadUserInput(
                "no file was sent for this argument; send it as a GraphQL multipart request".into(),
            )
        };
        let file = ctx.query_env.uploads.get(self.0).ok_or_else(missing)?;
        file.try_clone()
            .map_err(|e| AppError::Internal(anyhow::Error::new(e).context("reading an upload")))
    }
}

impl InputType for FileUpload {
    type RawValueType = Self;

    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("Upload")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_input_type::<Self, _>(MetaTypeId::Scalar, |_| MetaType::Scalar {
            name: Self::type_name().to_string(),
            description: Some("A multipart file upload".to_string()),
            is_valid: Some(Arc::new(|value| matches!(value, Value::String(_)))),
            visible: None,
            inaccessible: false,
            tags: Default::default(),
            specified_by_url: Some(
                "https://github.com/jaydenseric/graphql-multipart-request-spec".to_string(),
            ),
            directive_invocations: Default::default(),
            requires_scopes: Default::default(),
        })
    }

    fn parse(value: Option<Value>) -> InputValueResult<Self> {
        let value = value.unwrap_or_default();
        if let Value::String(s) = &value
            && let Some(index) = s.strip_prefix(PLACEHOLDER)
        {
            return index.parse::<usize>().map(FileUpload).map_err(|_| {
                InputValueError::custom("not a file of this request; send the file as a part")
            });
        }
        Err(InputValueError::custom(
            "expected a file: send it as a GraphQL multipart request part",
        ))
    }

    fn to_value(&self) -> Value {
        Value::Null
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_parse_or_are_refused() {
        let s = |t: &str| Some(Value::String(t.into()));
        assert_eq!(
            FileUpload::parse(s("#__graphql_file__:3")).ok(),
            Some(FileUpload(3))
        );
        for bad in [
            "#__graphql_file__:x",
            "#__graphql_file__:",
            "#__graphql_file__:-1",
            "#__graphql_file__:99999999999999999999999999",
            "#__graphql_file__:1é",
            "file.csv",
        ] {
            assert!(FileUpload::parse(s(bad)).is_err(), "{bad}");
        }
        assert!(FileUpload::parse(None).is_err());
        assert!(FileUpload::parse(Some(Value::Number(1.into()))).is_err());
    }
}
