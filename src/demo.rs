//! `serve --demo`: something real to query on a new machine.
//!
//! On a database without coupon series it creates a demo org with four series: finished jobs
//! with rejected rows, an errored job, and tagged jobs whose customers formed audience groups
//! and versions. Every job's files are really stored, every accepted row is a real coupon, and
//! the counts add up (`totalUploadedCount + errorCount == actualRowCount`, series totals, group
//! sizes). A fresh READ_WRITE key for the demo org is made on every start, since keys are only
//! ever shown once.

use std::collections::HashSet;

use chrono::Duration;
use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, Set, TransactionTrait};

use crate::domain::{
    AudienceGroupStatus, AudienceGroupType, ClientHandlingType, CustomerIdentifierType, Permission,
    UploadJobStatus,
};
use crate::entity::{
    audience_group, audience_group_version, coupon, coupon_series, org, upload_job,
};
use crate::error::AppResult;
use crate::service::{NewApiKey, Service};
use crate::storage::Storage;

pub const DEMO_ORG_ID: i64 = 100;

pub struct DemoOutcome {
    /// `false` when the database already had coupon series and was left alone.
    pub seeded: bool,
    pub key: NewApiKey,
}

/// One data row of a demo file: the values, and the rejection if the row is rejected.
struct Row {
    code: &'static str,
    customer: &'static str,
    rejected: Option<(&'static str, &'static str)>,
}

const fn ok(code: &'static str, customer: &'static str) -> Row {
    Row {
        code,
        customer,
        rejected: None,
    }
}
const fn bad(
    code: &'static str,
    customer: &'static str,
    error: &'static str,
    message: &'static str,
) -> Row {
    Row {
        code,
        customer,
        rejected: Some((error, message)),
    }
}

enum Outcome {
    Finished(&'static [Row]),
    Errored {
        file: &'static str,
        reason: &'static str,
    },
}

struct DemoJob {
    file_name: &'static str,
    identifier: CustomerIdentifierType,
    outcome: Outcome,
    hours_ago: i64,
}

struct DemoSeries {
    name: &'static str,
    description: &'static str,
    max_create: i64,
    allow_multiple_per_customer: bool,
    jobs: &'static [DemoJob],
}

const SERIES: &[DemoSeries] = &[
    DemoSeries {
        name: "WELCOME10",
        description: "10% off the first order, one code per new sign-up",
        max_create: -1,
        allow_multiple_per_customer: false,
        jobs: &[
            DemoJob {
                file_name: "welcome10-batch1.csv",
                identifier: CustomerIdentifierType::NotTagged,
                hours_ago: 72,
                outcome: Outcome::Finished(&[
                    ok("WLC10-A1B2", ""),
                    ok("WLC10-C3D4", ""),
                    bad(
                        "WLC10 E5F6",
                        "",
                        "INVALID_COUPON_CODE",
                        "coupon code may only hold letters, digits, '-' and '_'",
                    ),
                    ok("WLC10-G7H8", ""),
                    bad("", "", "EMPTY_COUPON_CODE", "coupon code is empty"),
                    ok("WLC10-J9K0", ""),
                    ok("WLC10-L1M2", ""),
                    ok("WLC10-N3P4", ""),
                ]),
            },
            DemoJob {
                file_name: "welcome10-batch2.csv",
                identifier: CustomerIdentifierType::NotTagged,
                hours_ago: 48,
                outcome: Outcome::Errored {
                    file: "WLC10-Q5R6\nWLC10-S7T8\n",
                    reason: "couponCodeColumn 3 does not exist: the file has 1 column",
                },
            },
        ],
    },
    DemoSeries {
        name: "VIP-MOBILE",
        description: "Personal codes for VIP members, tagged by mobile number",
        max_create: 1000,
        allow_multiple_per_customer: false,
        jobs: &[
            DemoJob {
                file_name: "vip-march.csv",
                identifier: CustomerIdentifierType::Mobile,
                hours_ago: 30,
                outcome: Outcome::Finished(&[
                    ok("VIP-0001", "+919800000001"),
                    ok("VIP-0002", "+919800000002"),
                    ok("VIP-0003", "919800000003"),
                    bad(
                        "VIP-0004",
                        "98-000",
                        "INVALID_CUSTOMER_IDENTIFIER",
                        "MOBILE must be 8 to 15 digits with an optional leading '+'",
                    ),
                    ok("VIP-0005", "+919800000005"),
                    ok("VIP-0006", "+919800000006"),
                ]),
            },
            DemoJob {
                file_name: "vip-april.csv",
                identifier: CustomerIdentifierType::Mobile,
                hours_ago: 6,
                outcome: Outcome::Finished(&[
                    ok("VIP-0101", "+919800000011"),
                    ok("VIP-0102", "+919800000012"),
                    bad(
                        "VIP-0103",
                        "+919800000011",
                        "DUPLICATE_CUSTOMER",
                        "this customer already has a coupon in the file and the series allows one per customer",
                    ),
                    bad(
                        "VIP-0001",
                        "+919800000013",
                        "CODE_ALREADY_EXISTS",
                        "Coupon code is already used in this org",
                    ),
                    ok("VIP-0104", "+919800000014"),
                    ok("VIP-0105", "+919800000015"),
                ]),
            },
        ],
    },
    DemoSeries {
        name: "NEWSLETTER-SPRING",
        description: "Spring newsletter subscribers, tagged by email",
        max_create: -1,
        allow_multiple_per_customer: true,
        jobs: &[DemoJob {
            file_name: "newsletter.csv",
            identifier: CustomerIdentifierType::Email,
            hours_ago: 2,
            outcome: Outcome::Finished(&[
                ok("NL-SPRING-01", "ana@example.com"),
                ok("NL-SPRING-02", "bo@example.com"),
                ok("NL-SPRING-03", "ana@example.com"),
                ok("NL-SPRING-04", "chen@example.org"),
            ]),
        }],
    },
    DemoSeries {
        name: "SUMMER-SALE",
        description: "Not uploaded yet",
        max_create: 5000,
        allow_multiple_per_customer: false,
        jobs: &[],
    },
];

/// RFC 4180 field quoting, for the demo's CSV files.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn files_of(rows: &[Row], tagged: bool, coupon_ids: &[Option<i64>]) -> (String, String, String) {
    let mut uploaded = String::from(if tagged {
        "coupon_code,customer\n"
    } else {
        "coupon_code\n"
    });
    let mut errors =
        String::from("rowNumber,errorCode,errorMessage,couponCode,customerIdentifier\n");
    let mut success = String::from("rowNumber,couponId,couponCode,customerIdentifier\n");
    for (i, (row, id)) in rows.iter().zip(coupon_ids).enumerate() {
        let n = i + 1;
        let (code, cust) = (csv_field(row.code), csv_field(row.customer));
        uploaded.push_str(&if tagged {
            format!("{code},{cust}\n")
        } else {
            format!("{code}\n")
        });
        match (row.rejected, id) {
            (Some((err, msg)), _) => {
                errors.push_str(&format!("{n},{err},{},{code},{cust}\n", csv_field(msg)))
            }
            (None, Some(id)) => success.push_str(&format!("{n},{id},{code},{cust}\n")),
            (None, None) => {}
        }
    }
    (uploaded, errors, success)
}

/// Seeds the demo data if the database has no coupon series, then makes a key for the demo org.
pub async fn seed_if_empty(service: &Service) -> AppResult<DemoOutcome> {
    let db = service.db();
    let seeded = coupon_series::Entity::find().count(db).await? == 0;
    if seeded {
        seed(service).await?;
    }
    let key = service
        .create_api_key(DEMO_ORG_ID, "demo", Permission::ReadWrite)
        .await?;
    Ok(DemoOutcome { seeded, key })
}

async fn seed(service: &Service) -> AppResult<()> {
    let now = crate::domain::now();
    let txn = service.db().begin().await?;
    if org::Entity::find_by_id(DEMO_ORG_ID)
        .one(&txn)
        .await?
        .is_none()
    {
        org::ActiveModel {
            id: Set(DEMO_ORG_ID),
            name: Set("Demo Org".into()),
            created_on: Set(now - Duration::days(7)),
        }
        .insert(&txn)
        .await?;
    }
    let mut files: Vec<(String, String)> = Vec::new();
    for s in SERIES {
        let created = now - Duration::days(5);
        let series = coupon_series::ActiveModel {
            org_id: Set(DEMO_ORG_ID),
            name: Set(s.name.into()),
            description: Set(s.description.into()),
            client_handling_type: Set(ClientHandlingType::DiscCodePin.as_str().into()),
            max_create: Set(s.max_create),
            allow_multiple_per_customer: Set(s.allow_multiple_per_customer),
            code_max_length: Set(20),
            num_uploaded_total: Set(0),
            created_on: Set(created),
            updated_on: Set(created),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        let mut uploaded_total = 0i64;
        let mut group: Option<audience_group::Model> = None;
        for j in s.jobs {
            let at = now - Duration::hours(j.hours_ago);
            let tagged = j.identifier != CustomerIdentifierType::NotTagged;
            let (status, reason, rows): (UploadJobStatus, Option<&str>, &[Row]) = match &j.outcome {
                Outcome::Finished(rows) => (UploadJobStatus::Finished, None, rows),
                Outcome::Errored { reason, .. } => (UploadJobStatus::Errored, Some(*reason), &[]),
            };
            let job = upload_job::ActiveModel {
                org_id: Set(DEMO_ORG_ID),
                coupon_series_id: Set(series.id),
                upload_status: Set(status.as_str().into()),
                customer_identifier: Set(j.identifier.as_str().into()),
                customer_identifier_column: Set(tagged.then_some(1)),
                coupon_code_column: Set(Some(if reason.is_some() { 3 } else { 0 })),
                has_header: Set(true),
                uploaded_file_name: Set(j.file_name.into()),
                uploaded_file_key: Set(None),
                uploaded_file_size: Set(0),
                error_file_key: Set(None),
                success_file_key: Set(None),
                upload_table_name: Set("coupon".into()),
                actual_row_count: Set(0),
                total_uploaded_count: Set(0),
                error_count: Set(0),
                processed_row_count: Set(0),
                error_reason: Set(reason.map(Into::into)),
                audience_group_id: Set(None),
                audience_group_version_id: Set(None),
                cancel_requested: Set(false),
                lease_owner: Set(None),
                lease_expires_at: Set(None),
                attempts: Set(1),
                created_on: Set(at),
                updated_on: Set(at + Duration::seconds(3)),
                finished_on: Set(Some(at + Duration::seconds(3))),
                ..Default::default()
            }
            .insert(&txn)
            .await?;
            let mut ids = Vec::with_capacity(rows.len());
            for (i, r) in rows.iter().enumerate() {
                if r.rejected.is_some() {
                    ids.push(None);
                    continue;
                }
                let c = coupon::ActiveModel {
                    org_id: Set(DEMO_ORG_ID),
                    coupon_series_id: Set(series.id),
                    upload_job_id: Set(Some(job.id)),
                    row_number: Set(Some(i as i64 + 1)),
                    code: Set(r.code.into()),
                    customer_identifier_type: Set(tagged.then(|| j.identifier.as_str().into())),
                    customer_identifier: Set(tagged.then(|| r.customer.into())),
                    created_on: Set(at + Duration::seconds(2)),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
                ids.push(Some(c.id));
            }
            let accepted = ids.iter().flatten().count() as i64;
            uploaded_total += accepted;
            let key = |name: &str| Storage::job_key(DEMO_ORG_ID, job.id, name);
            let mut update: upload_job::ActiveModel = job.clone().into();
            match &j.outcome {
                Outcome::Errored { file, .. } => {
                    files.push((key("uploaded.csv"), (*file).to_owned()));
                    update.uploaded_file_size = Set(file.len() as i64);
                }
                Outcome::Finished(rows) => {
                    let (uploaded, errors, success) = files_of(rows, tagged, &ids);
                    update.uploaded_file_size = Set(uploaded.len() as i64);
                    files.push((key("uploaded.csv"), uploaded));
                    files.push((key("errors.csv"), errors));
                    files.push((key("success.csv"), success));
                    update.error_file_key = Set(Some(key("errors.csv")));
                    update.success_file_key = Set(Some(key("success.csv")));
                    update.actual_row_count = Set(rows.len() as i64);
                    update.processed_row_count = Set(rows.len() as i64);
                    update.total_uploaded_count = Set(accepted);
                    update.error_count = Set(rows.len() as i64 - accepted);
                }
            }
            update.uploaded_file_key = Set(Some(key("uploaded.csv")));
            if tagged && reason.is_none() {
                let customers: HashSet<&str> = rows
                    .iter()
                    .filter(|r| r.rejected.is_none())
                    .map(|r| r.customer)
                    .collect();
                let count = customers.len() as i64;
                let g = match group.take() {
                    None => {
                        audience_group::ActiveModel {
                            org_id: Set(DEMO_ORG_ID),
                            coupon_series_id: Set(series.id),
                            name: Set(format!("{} customers", s.name)),
                            group_type: Set(AudienceGroupType::Upload.as_str().into()),
                            status: Set(AudienceGroupStatus::Active.as_str().into()),
                            customer_count: Set(count),
                            latest_version_number: Set(1),
                            created_on: Set(at),
                            updated_on: Set(at),
                            ..Default::default()
                        }
                        .insert(&txn)
                        .await?
                    }
                    Some(g) => {
                        let mut a: audience_group::ActiveModel = g.clone().into();
                        a.customer_count = Set(count);
                        a.latest_version_number = Set(g.latest_version_number + 1);
                        a.updated_on = Set(at);
                        a.update(&txn).await?
                    }
                };
                let v = audience_group_version::ActiveModel {
                    org_id: Set(DEMO_ORG_ID),
                    audience_group_id: Set(g.id),
                    version_number: Set(g.latest_version_number),
                    customer_count: Set(count),
                    status: Set(AudienceGroupStatus::Active.as_str().into()),
                    upload_job_id: Set(Some(job.id)),
                    created_on: Set(at + Duration::seconds(3)),
                    ..Default::default()
                }
                .insert(&txn)
                .await?;
                update.audience_group_id = Set(Some(g.id));
                update.audience_group_version_id = Set(Some(v.id));
                group = Some(g);
            }
            update.update(&txn).await?;
        }
        let mut s_update: coupon_series::ActiveModel = series.into();
        s_update.num_uploaded_total = Set(uploaded_total);
        s_update.update(&txn).await?;
    }
    // Files first, then the commit: a crash in between leaves unreferenced files, never a job
    // pointing at a missing file.
    for (key, content) in files {
        service.storage().put(&key, content.into_bytes()).await?;
    }
    txn.commit().await?;
    Ok(())
}
