//! The seeded data: orgs, coupon series, upload jobs, audience groups and versions, generated
//! deterministically and inserted through the crate's own sea-orm entities.

use anyhow::{Result, ensure};
use chrono::{DateTime, Utc};
use coupon_upload_api::domain::{
    AudienceGroupStatus, AudienceGroupType, ClientHandlingType, CustomerIdentifierType, JobPhase,
    UploadJobStatus,
};
use coupon_upload_api::entity::{
    audience_group, audience_group_version, coupon_series, org, upload_job,
};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, IntoActiveModel,
    TryIntoModel,
};

/// Rows per `insert_many` statement while seeding.
const INSERT_CHUNK: usize = 1_000;

pub const SEED: u64 = 0x5EED_0FC0_FFEE;
pub const ORGS: i64 = 10;
pub const SERIES_PER_ORG: i64 = 1_000;
pub const MAX_JOBS_PER_SERIES: u8 = 10;
const GROUPS_PER_ORG: usize = 200;
const MAX_VERSIONS: u64 = 5;
/// The worker's default rows per commit (`WORKER_BATCH_ROWS`).
const BATCH_ROWS: i64 = 50_000;
/// What `upload_job.upload_table_name` says (`service::uploads::UPLOAD_TABLE`).
const UPLOAD_TABLE: &str = "upload_row";
/// The instance that holds the seeded `PROCESSING` jobs' (lapsed) leases.
const LEASE_OWNER: &str = "bench-seed-instance";

/// Series ids are `1..=ORGS * SERIES_PER_ORG`, each org's a contiguous block.
pub fn org_of(series_id: i64) -> i64 {
    (series_id - 1) / SERIES_PER_ORG + 1
}

/// SplitMix64: small, fast, and the same sequence on every platform and crate version.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn hex(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }
}

/// Everything the seed inserts, in dependency order.
pub struct Generated {
    orgs: Vec<org::Model>,
    series: Vec<coupon_series::Model>,
    groups: Vec<audience_group::Model>,
    jobs: Vec<upload_job::Model>,
    versions: Vec<audience_group_version::Model>,
    /// `jobs_per_series[series_id - 1]`.
    pub jobs_per_series: Vec<u8>,
}

pub struct Seeded {
    pub jobs_per_series: Vec<u8>,
    pub summary: String,
}

fn ms(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap_or_default()
}

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;

/// A file's size in bytes: a header and `rows` lines of a code (and a customer).
fn file_size(rows: i64, tagged: bool) -> i64 {
    if tagged {
        20 + rows * 28
    } else {
        5 + rows * 13
    }
}

/// The rows as the service leaves them. Per series, jobs follow each other in time (ids
/// increase with `createdOn`); all but the newest have ended: `FINISHED` (90 %, a third with
/// rejected rows), `ERRORED` (6 %, a file-level reason, nothing counted), `CANCELLED` (4 %:
/// before pick-up, nothing counted and no result files; or mid-job, keeping its committed
/// batches, with result files). The newest is `STARTED` (2 %) or `PROCESSING` (3 %, at a
/// batch boundary, its lease lapsed) or ends like the others. `FINISHED` and mid-job
/// `CANCELLED` jobs have both result-file keys (the worker writes both, possibly empty); all
/// have the uploaded file's key. `numUploadedTotal` is the sum of committed rows.
///
/// Audience: per org, 200 series with at least one `FINISHED` job get a group; in each, 1–5
/// of the finished jobs are tagged uploads (the series' identifier type), each forming the
/// next version (customers = accepted rows, or fewer when the series allows several coupons
/// per customer), pointing at it with `audienceGroupId` / `audienceGroupVersionId`; the
/// group has the latest version's count. A finished tagged upload always forms a version, so
/// other series have no finished tagged job; a quarter of the jobs that did not finish are
/// tagged uploads anyway (they form nothing).
pub fn generate() -> Generated {
    let mut rng = Rng::new(SEED);
    let base = 1_735_689_600_000; // 2025-01-01T00:00:00Z
    let types = [
        CustomerIdentifierType::Mobile,
        CustomerIdentifierType::Mobile,
        CustomerIdentifierType::Mobile,
        CustomerIdentifierType::Email,
        CustomerIdentifierType::ExternalId,
        CustomerIdentifierType::UserId,
    ];
    let campaigns = [
        "Summer sale",
        "Welcome offer",
        "Loyalty reward",
        "Black Friday",
        "Birthday treat",
        "Win-back",
    ];
    let mut g = Generated {
        orgs: Vec::new(),
        series: Vec::new(),
        groups: Vec::new(),
        jobs: Vec::new(),
        versions: Vec::new(),
        jobs_per_series: Vec::new(),
    };
    // Per series: its jobs' index range in `g.jobs` and its customer identifier type.
    let mut ranges = Vec::new();
    let mut kinds = Vec::new();

    for org_id in 1..=ORGS {
        g.orgs.push(org::Model {
            id: org_id,
            name: format!("org {org_id}"),
            created_on: ms(base - 30 * DAY),
        });
        for k in 0..SERIES_PER_ORG {
            let series_id = (org_id - 1) * SERIES_PER_ORG + k + 1;
            let created = base + rng.below((200 * DAY) as u64) as i64;
            let kind = types[rng.below(types.len() as u64) as usize];
            let allow_multiple = rng.chance(0.3);
            let n = 1 + rng.below(u64::from(MAX_JOBS_PER_SERIES)) as u8;
            let first = g.jobs.len();
            let mut t = created + MINUTE + rng.below((2 * DAY) as u64) as i64;
            for i in 0..n {
                let newest = i + 1 == n;
                let id = g.jobs.len() as i64 + 1;
                g.jobs.push(job(&mut rng, id, org_id, series_id, t, newest));
                t += 10 * MINUTE + rng.below((14 * DAY) as u64) as i64;
            }
            let jobs = &g.jobs[first..];
            let uploaded: i64 = jobs.iter().map(|j| j.total_uploaded_count).sum();
            let updated = jobs
                .iter()
                .filter(|j| j.total_uploaded_count > 0)
                .map(|j| j.updated_on)
                .max()
                .unwrap_or(ms(created));
            let max_create = if rng.chance(0.2) && uploaded <= 5_000_000 {
                5_000_000
            } else {
                -1
            };
            g.series.push(coupon_series::Model {
                id: series_id,
                org_id,
                name: format!(
                    "{} {}",
                    campaigns[rng.below(campaigns.len() as u64) as usize],
                    k + 1
                ),
                description: String::new(),
                client_handling_type: ClientHandlingType::DiscCodePin,
                max_create,
                allow_multiple_per_customer: allow_multiple,
                code_max_length: 50,
                num_uploaded_total: uploaded,
                created_on: ms(created),
                updated_on: updated,
            });
            g.jobs_per_series.push(n);
            ranges.push(first..g.jobs.len());
            kinds.push(kind);
        }
    }

    // Which series have a group: per org, 200 of those with a finished job, at random.
    let finished = UploadJobStatus::Finished;
    let mut with_group = vec![false; g.series.len()];
    for org_index in 0..ORGS as usize {
        let block = org_index * SERIES_PER_ORG as usize;
        let mut order: Vec<usize> = (block..block + SERIES_PER_ORG as usize).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        order
            .into_iter()
            .filter(|&s| {
                g.jobs[ranges[s].clone()]
                    .iter()
                    .any(|j| j.upload_status == finished)
            })
            .take(GROUPS_PER_ORG)
            .for_each(|s| with_group[s] = true);
    }

    // Groups and versions in series order, versions in job order (ids increase with time).
    for (s, series) in g.series.iter().enumerate() {
        if !with_group[s] {
            continue;
        }
        let mut done: Vec<usize> = ranges[s]
            .clone()
            .filter(|&j| g.jobs[j].upload_status == finished)
            .collect();
        let k = 1 + rng.below(MAX_VERSIONS.min(done.len() as u64)) as usize;
        for i in 0..k {
            let pick = i + rng.below((done.len() - i) as u64) as usize;
            done.swap(i, pick);
        }
        let mut tagged = done[..k].to_vec();
        tagged.sort_unstable();
        let group_id = g.groups.len() as i64 + 1;
        let mut customers = 0;
        for (number, &j) in tagged.iter().enumerate() {
            let version_id = g.versions.len() as i64 + 1;
            let job = &mut g.jobs[j];
            tag(job, kinds[s]);
            customers = if series.allow_multiple_per_customer {
                job.total_uploaded_count * (60 + rng.below(41) as i64) / 100
            } else {
                job.total_uploaded_count
            };
            job.audience_group_id = Some(group_id);
            job.audience_group_version_id = Some(version_id);
            g.versions.push(audience_group_version::Model {
                id: version_id,
                org_id: series.org_id,
                audience_group_id: group_id,
                version_number: number as i32 + 1,
                customer_count: customers,
                status: AudienceGroupStatus::Active,
                upload_job_id: Some(job.id),
                created_on: job.finished_on.unwrap_or(job.updated_on),
            });
        }
        let first = &g.versions[g.versions.len() - k];
        let last = &g.versions[g.versions.len() - 1];
        g.groups.push(audience_group::Model {
            id: group_id,
            org_id: series.org_id,
            coupon_series_id: series.id,
            name: format!("{} customers", series.name),
            group_type: AudienceGroupType::Upload,
            status: AudienceGroupStatus::Active,
            customer_count: customers,
            latest_version_number: k as i32,
            created_on: first.created_on,
            updated_on: last.created_on,
        });
    }

    // Tagged uploads that did not finish: they form nothing.
    for (s, range) in ranges.iter().enumerate() {
        for j in range.clone() {
            if g.jobs[j].upload_status != finished && rng.chance(0.25) {
                tag(&mut g.jobs[j], kinds[s]);
            }
        }
    }
    g
}

/// Makes a job a tagged upload of `kind` (customer in column 1, code in the default
/// column 0).
fn tag(job: &mut upload_job::Model, kind: CustomerIdentifierType) {
    job.customer_identifier = kind;
    job.customer_identifier_column = Some(1);
    job.uploaded_file_name = format!(
        "{}_{}",
        kind.as_str().to_lowercase(),
        job.uploaded_file_name
    );
    if job.uploaded_file_size > 0 {
        job.uploaded_file_size = file_size(job.actual_row_count.max(1), true);
    }
}

/// A job stopped at a batch boundary (`PROCESSING`, or `CANCELLED` mid-job): at least two
/// batches of rows, some committed, rejected rows in proportion; when that happened.
fn cut_at_batch(rng: &mut Rng, m: &mut upload_job::Model, rows: i64, rejected: i64, t: i64) -> i64 {
    let rows = rows.max(2 * BATCH_ROWS) + rng.below(800_000) as i64;
    let through = BATCH_ROWS * (1 + rng.below((rows / BATCH_ROWS - 1) as u64) as i64);
    m.actual_row_count = rows;
    m.uploaded_file_size = file_size(rows, false);
    m.processed_row_count = through;
    m.committed_through = through;
    m.error_count = rejected * through / rows;
    m.total_uploaded_count = through - m.error_count;
    t + 300 + through / 150
}

/// One untagged job created at `t` (epoch ms), as the service would have left it.
fn job(
    rng: &mut Rng,
    id: i64,
    org_id: i64,
    series_id: i64,
    t: i64,
    newest: bool,
) -> upload_job::Model {
    let r = rng.unit();
    let status = if newest && r < 0.02 {
        UploadJobStatus::Started
    } else if newest && r < 0.05 {
        UploadJobStatus::Processing
    } else {
        let r = rng.unit();
        if r < 0.90 {
            UploadJobStatus::Finished
        } else if r < 0.96 {
            UploadJobStatus::Errored
        } else {
            UploadJobStatus::Cancelled
        }
    };
    // Rows: log-uniform from 10 to 1,000,000 (median ≈ 3,000).
    let rows = 10f64.powf(1.0 + 5.0 * rng.unit()).round() as i64;
    let rejected = if rng.chance(0.35) {
        ((rows as f64 * 0.25 * rng.unit()) as i64).max(1)
    } else {
        0
    };
    let names = [
        "coupons.csv",
        "codes.csv",
        "batch.csv",
        "promo codes (final).csv",
    ];
    let mut started = upload_job::ActiveModel::started(upload_job::NewJob {
        org_id,
        coupon_series_id: series_id,
        customer_identifier: CustomerIdentifierType::NotTagged,
        customer_identifier_column: None,
        coupon_code_column: None,
        has_header: true,
        uploaded_file_name: format!(
            "{}-{}",
            ms(t).format("%Y%m%d"),
            names[rng.below(names.len() as u64) as usize]
        ),
        uploaded_file_key: Some(format!("org/{org_id}/uploads/{}/uploaded.csv", rng.hex())),
        uploaded_file_size: file_size(rows, false),
        upload_table_name: UPLOAD_TABLE.into(),
        created_on: ms(t),
    });
    started.id = Set(id);
    let mut m = started
        .try_into_model()
        .expect("a started job sets every column");
    m.upload_status = status;
    m.phase = JobPhase::Done;
    m.attempts = 1;
    // About 150,000 rows/s once picked up, which takes a moment.
    let end = t + 300 + rng.below(1_000) as i64 + rows / 150;
    match status {
        UploadJobStatus::Started => {
            m.phase = JobPhase::Stage;
            m.attempts = 0;
        }
        UploadJobStatus::Processing => {
            let at = cut_at_batch(rng, &mut m, rows, rejected, t);
            m.phase = JobPhase::Commit;
            m.lease_owner = Some(LEASE_OWNER.into());
            m.lease_expires_ms = Some(at + 15_000);
            m.updated_on = ms(at);
        }
        UploadJobStatus::Finished => {
            m.actual_row_count = rows;
            m.processed_row_count = rows;
            m.committed_through = rows;
            m.error_count = rejected;
            m.total_uploaded_count = rows - rejected;
            m.error_file_key = Some(format!("org/{org_id}/jobs/{id}/errors.csv"));
            m.success_file_key = Some(format!("org/{org_id}/jobs/{id}/success.csv"));
            m.updated_on = ms(end);
            m.finished_on = Some(ms(end));
        }
        UploadJobStatus::Errored => {
            let reasons = [
                "the file is empty: it has no rows",
                "the file is not a text file (it contains NUL bytes); upload a CSV file saved as UTF-8 text",
                "the file is not UTF-8 text: row 1 has characters in another encoding; save the file as \"CSV UTF-8\" and upload it again",
            ];
            let i = rng.below(reasons.len() as u64) as usize;
            if i == 0 {
                m.uploaded_file_size = 0;
            }
            m.error_reason = Some(reasons[i].into());
            let at = t + 200 + rng.below(500) as i64;
            m.updated_on = ms(at);
            m.finished_on = Some(ms(at));
        }
        UploadJobStatus::Cancelled => {
            m.cancel_requested = true;
            let at = if rng.chance(0.5) {
                // Before the worker picked it up.
                m.attempts = 0;
                t + 1_000 + rng.below(60_000) as i64
            } else {
                // Mid-job: stopped at a batch boundary, with result files.
                let at = cut_at_batch(rng, &mut m, rows, rejected, t);
                m.error_file_key = Some(format!("org/{org_id}/jobs/{id}/errors.csv"));
                m.success_file_key = Some(format!("org/{org_id}/jobs/{id}/success.csv"));
                at
            };
            m.updated_on = ms(at);
            m.finished_on = Some(ms(at));
        }
    }
    m
}

/// `insert_many` in chunks of [`INSERT_CHUNK`]; the rows inserted.
async fn insert_all<M, A>(db: &DatabaseConnection, rows: Vec<M>) -> Result<u64>
where
    M: IntoActiveModel<A>,
    A: ActiveModelTrait + Send,
{
    let mut inserted = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        // Every column `Set`, the ids included (they are known up front).
        let chunk: Vec<A> = rows
            .by_ref()
            .take(INSERT_CHUNK)
            .map(|m| m.into_active_model().reset_all())
            .collect();
        inserted += A::Entity::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(inserted)
}

/// Generates and inserts the rows, moves the id sequences past them, checks the audience
/// links, and analyzes.
pub async fn seed(db_url: &str) -> Result<Seeded> {
    let g = generate();
    let jobs_per_series = g.jobs_per_series.clone();
    let mut by_status = std::collections::BTreeMap::<String, usize>::new();
    for j in &g.jobs {
        *by_status.entry(j.upload_status.to_string()).or_default() += 1;
    }
    let tagged = g
        .jobs
        .iter()
        .filter(|j| j.customer_identifier != CustomerIdentifierType::NotTagged)
        .count();
    let with_version = g.versions.len();
    let summary = format!(
        "{} orgs, {} series, {} jobs ({}), {tagged} tagged ({with_version} with a group version), \
         {} audience groups, {} versions",
        g.orgs.len(),
        g.series.len(),
        g.jobs.len(),
        by_status
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        g.groups.len(),
        g.versions.len()
    );

    let db = Database::connect(db_url).await?;
    // Foreign keys: series and groups before jobs (audienceGroupId), jobs before versions
    // (uploadJobId); `audienceGroupVersionId` has no foreign key.
    let n = g.jobs.len() as u64;
    insert_all(&db, g.orgs).await?;
    insert_all(&db, g.series).await?;
    insert_all(&db, g.groups).await?;
    ensure!(
        insert_all(&db, g.jobs).await? == n,
        "not every job was inserted"
    );
    insert_all(&db, g.versions).await?;
    for table in [
        "coupon_series",
        "audience_group",
        "upload_job",
        "audience_group_version",
    ] {
        db.execute_unprepared(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        ))
        .await?;
    }
    // Each job with a version is the job that formed it, in the same group and org.
    let linked = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM upload_job j \
             JOIN audience_group_version v ON v.id = j.audience_group_version_id \
             JOIN audience_group g ON g.id = j.audience_group_id \
             WHERE v.upload_job_id = j.id AND v.audience_group_id = g.id \
               AND v.org_id = j.org_id AND g.org_id = j.org_id AND g.coupon_series_id = j.coupon_series_id",
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
    ensure!(
        linked as usize == with_version,
        "{linked} jobs are linked to their group version, expected {with_version}"
    );
    db.execute_unprepared("ANALYZE").await?;
    db.close().await?;
    Ok(Seeded {
        jobs_per_series,
        summary,
    })
}
