//! sea-orm entities, one per table of the `migration` crate. Plain data: the rules live in
//! `crate::service`.

pub mod api_key;
pub mod audience_group;
pub mod audience_group_version;
pub mod coupon;
pub mod coupon_series;
pub mod org;
pub mod upload_job;
pub mod upload_row;
