//! `serve --demo`: something real to query on a new machine.
//!
//! On a database without coupon series it creates a demo org with four series and uploads the
//! sample files in `assets/demo/` through the real pipeline (the same service calls as the API,
//! processed by the worker): finished jobs with rejected rows of most kinds, an errored job,
//! and tagged jobs whose customers form audience group versions. A fresh READ_WRITE key for the
//! demo org is made on every start, since keys are only ever shown once.

use std::time::Duration;

use sea_orm::{EntityTrait, PaginatorTrait};

use crate::domain::{CustomerIdentifierType, Permission};
use crate::entity::coupon_series;
use crate::error::{AppError, AppResult};
use crate::service::{NewApiKey, NewCouponSeries, NewUpload, Service};

pub const DEMO_ORG_ID: i64 = 100;

pub struct DemoOutcome {
    /// `false` when the database already had coupon series and was left alone.
    pub seeded: bool,
    pub key: NewApiKey,
}

struct DemoUpload {
    file_name: &'static str,
    content: &'static [u8],
    identifier: CustomerIdentifierType,
    customer_column: Option<i32>,
    code_column: Option<i32>,
}

struct DemoSeries {
    name: &'static str,
    description: &'static str,
    max_create: i64,
    allow_multiple_per_customer: bool,
    code_max_length: i32,
    uploads: &'static [DemoUpload],
}

const SERIES: &[DemoSeries] = &[
    DemoSeries {
        name: "WELCOME10",
        description: "10% off the first order, one code per new sign-up",
        max_create: -1,
        allow_multiple_per_customer: false,
        code_max_length: 20,
        uploads: &[
            DemoUpload {
                file_name: "welcome10-batch1.csv",
                content: include_bytes!("../assets/demo/welcome10-batch1.csv"),
                identifier: CustomerIdentifierType::NotTagged,
                customer_column: None,
                code_column: None,
            },
            // Names a column the file does not have: the job as a whole is ERRORED.
            DemoUpload {
                file_name: "welcome10-batch2.csv",
                content: include_bytes!("../assets/demo/welcome10-batch2.csv"),
                identifier: CustomerIdentifierType::NotTagged,
                customer_column: None,
                code_column: Some(3),
            },
        ],
    },
    DemoSeries {
        name: "VIP-MOBILE",
        description: "Personal codes for VIP members, tagged by mobile number",
        max_create: 7,
        allow_multiple_per_customer: false,
        code_max_length: 20,
        uploads: &[
            DemoUpload {
                file_name: "vip-march.csv",
                content: include_bytes!("../assets/demo/vip-march.csv"),
                identifier: CustomerIdentifierType::Mobile,
                customer_column: Some(1),
                code_column: Some(0),
            },
            DemoUpload {
                file_name: "vip-april.csv",
                content: include_bytes!("../assets/demo/vip-april.csv"),
                identifier: CustomerIdentifierType::Mobile,
                customer_column: Some(1),
                code_column: Some(0),
            },
        ],
    },
    DemoSeries {
        name: "NEWSLETTER-SPRING",
        description: "Spring newsletter subscribers, tagged by email",
        max_create: -1,
        allow_multiple_per_customer: true,
        code_max_length: 20,
        uploads: &[DemoUpload {
            file_name: "newsletter.csv",
            content: include_bytes!("../assets/demo/newsletter.csv"),
            identifier: CustomerIdentifierType::Email,
            customer_column: Some(0),
            code_column: None,
        }],
    },
    DemoSeries {
        name: "SUMMER-SALE",
        description: "Not uploaded yet",
        max_create: 5000,
        allow_multiple_per_customer: false,
        code_max_length: 20,
        uploads: &[],
    },
];

/// Seeds the demo data if the database has no coupon series, then makes a key for the demo
/// org. With `wait`, returns once the worker has processed the demo uploads (at most `wait`).
pub async fn seed_if_empty(service: &Service, wait: Option<Duration>) -> AppResult<DemoOutcome> {
    let seeded = coupon_series::Entity::find().count(service.db()).await? == 0;
    let key = service
        .create_api_key(DEMO_ORG_ID, "demo", Permission::ReadWrite)
        .await?;
    if seeded {
        let org = service.authenticate(Some(&key.key), || Ok(())).await?;
        for s in SERIES {
            let series = service
                .create_coupon_series(
                    &org,
                    NewCouponSeries {
                        name: s.name.into(),
                        description: s.description.into(),
                        max_create: s.max_create,
                        allow_multiple_per_customer: s.allow_multiple_per_customer,
                        code_max_length: s.code_max_length,
                    },
                )
                .await?;
            for u in s.uploads {
                let upload = NewUpload {
                    coupon_series_id: series.id,
                    customer_identifier: u.identifier,
                    customer_identifier_column: u.customer_column,
                    coupon_code_column: u.code_column,
                    has_header: true,
                    file_name: u.file_name.into(),
                };
                service.create_upload_job(&org, upload, u.content).await?;
            }
        }
        if let Some(wait) = wait {
            let deadline = tokio::time::Instant::now() + wait;
            while crate::worker::jobs_pending(service).await? > 0 {
                if tokio::time::Instant::now() > deadline {
                    return Err(AppError::Internal(anyhow::anyhow!(
                        "the demo uploads did not finish in {wait:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(DemoOutcome { seeded, key })
}
