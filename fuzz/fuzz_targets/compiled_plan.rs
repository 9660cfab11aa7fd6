//! The compiled `uploadStatus` plans (`graphql::compiled::StatusPlan::compile`): any document
//! the GraphQL parser accepts compiles to a plan or to none, without panicking.
#![no_main]

use async_graphql::parser::parse_query;
use coupon_upload_api::graphql::compiled::StatusPlan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = parse_query(text) else {
        return;
    };
    if let Some(plan) = StatusPlan::compile(&doc) {
        // A plan is only made for an `uploadStatus` query.
        assert!(text.contains("uploadStatus"));
        let _ = format!("{plan:?}");
    }
});
