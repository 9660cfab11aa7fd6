//! The object types. Each wraps the entity model the service returned; field names follow
//! Capillary's status API exactly. Every object has `id: ID!` so client caches
//! (Apollo Client, urql) normalize it.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ErrorExtensions, ID, Object, Result};
use chrono::{DateTime, Utc};

use super::{loader_err, request_ctx, service};
use crate::domain::{
    AudienceGroupStatus, AudienceGroupType, ClientHandlingType, CouponStatus,
    CustomerIdentifierType, UploadJobStatus,
};
use crate::entity::{audience_group, audience_group_version, coupon, coupon_series, upload_job};
use crate::error::{AppError, GqlResultExt};
use crate::service::{self, CouponFilter, CouponPage, CouponScope, Page, Revoked, Service};
use crate::view::{JobField, Value, with_job_fields};

/// GraphQL `Int` is 32-bit; counts are stored as 64-bit and saturate (never wrap) on the way out.
pub(crate) fn int(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })
}

fn id(n: i64) -> ID {
    ID(n.to_string())
}

/// The upload status of one coupon series: the answer to `uploadStatus(couponSeriesId:)`.
pub struct UploadStatus {
    pub status: service::UploadStatus,
    /// The jobs already read with the series, for `uploadJobStatuses` with these arguments,
    /// and whether their audience groups and versions were read with them.
    pub prefetched: Option<(JobsArgs, Vec<service::JobWithAudience>, bool)>,
}

/// The arguments of `uploadJobStatuses`, as the query gave them.
#[derive(Clone, Debug, PartialEq)]
pub struct JobsArgs {
    pub status: Option<Vec<UploadJobStatus>>,
    pub first: Option<i32>,
    pub after: Option<String>,
}

impl JobsArgs {
    /// The page `first` and `after` ask for.
    pub(crate) fn page(&self) -> Result<Page> {
        let after = self
            .after
            .as_deref()
            .map(|a| service::parse_id("`after`", a))
            .transpose()
            .gql()?;
        Page::new(self.first, after).gql()
    }
}

impl UploadStatus {
    /// `uploadStatus` in one statement when it can be: if the query selects
    /// `uploadJobStatuses` (under any aliases, always with the same arguments), the series, that
    /// page of jobs and, if selected below it, their audience groups and versions are read
    /// together and fed to the request's loaders. Otherwise only the series is read here.
    pub async fn load(ctx: &Context<'_>, coupon_series_id: i64) -> Result<Self> {
        let rc = request_ctx(ctx)?;
        let service = service(ctx)?;
        let Some(args) = Self::jobs_args(ctx) else {
            return Ok(Self {
                status: service
                    .upload_status(&rc.org, coupon_series_id)
                    .await
                    .gql()?,
                prefetched: None,
            });
        };
        let page = args.page()?;
        let jobs_sel = ctx.look_ahead().field("uploadJobStatuses");
        let audience = jobs_sel.field("audienceGroup").exists()
            || jobs_sel.field("audienceGroupVersion").exists();
        let found = service
            .upload_status_page(
                &rc.org,
                coupon_series_id,
                args.status.as_deref(),
                page,
                audience,
            )
            .await
            .gql()?;
        Ok(Self {
            status: found.status,
            prefetched: Some((args, found.jobs, audience)),
        })
    }

    /// The arguments every `uploadJobStatuses` under this field shares; `None` when it is not
    /// selected, when aliases ask for different pages, or when an argument does not parse
    /// (the field's resolver then reports it).
    fn jobs_args(ctx: &Context<'_>) -> Option<JobsArgs> {
        use async_graphql::InputType;
        let mut found: Option<JobsArgs> = None;
        for field in ctx.field().selection_set() {
            if field.name() != "uploadJobStatuses" {
                continue;
            }
            let mut args = JobsArgs {
                status: None,
                first: None,
                after: None,
            };
            for (name, value) in field.arguments().ok()? {
                match name.as_str() {
                    "status" => args.status = InputType::parse(Some(value)).ok()?,
                    "first" => args.first = InputType::parse(Some(value)).ok()?,
                    "after" => args.after = InputType::parse(Some(value)).ok()?,
                    _ => return None,
                }
            }
            match &found {
                Some(other) if *other != args => return None,
                _ => found = Some(args),
            }
        }
        found
    }
}

/// The upload status of one coupon series: the answer to `uploadStatus(couponSeriesId:)`.
#[Object]
impl UploadStatus {
    /// Equal to `couponSeriesId`: one status per series.
    async fn id(&self) -> ID {
        id(self.status.series.id)
    }
    async fn org_id(&self) -> ID {
        id(self.status.org_id)
    }
    async fn coupon_series_id(&self) -> ID {
        id(self.status.series.id)
    }
    async fn coupon_series(&self) -> CouponSeries {
        CouponSeries(self.status.series.clone())
    }
    /// The series' upload jobs, newest first. `status` keeps only jobs in those states;
    /// `first` (default 100, at most 500) and `after` (the `jobId` of the last job of the previous
    /// page) page through long histories.
    #[graphql(complexity = "crate::graphql::list_complexity(first, child_complexity)")]
    async fn upload_job_statuses(
        &self,
        ctx: &Context<'_>,
        status: Option<Vec<UploadJobStatus>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Vec<UploadJob>> {
        let rc = request_ctx(ctx)?;
        let args = JobsArgs {
            status,
            first,
            after,
        };
        if let Some((read, jobs, audience)) = &self.prefetched
            && *read == args
        {
            let jobs: Vec<UploadJob> = jobs
                .iter()
                .map(|j| {
                    UploadJob(
                        j.job.clone(),
                        Audience {
                            read: *audience,
                            group: j.group.clone(),
                            version: j.version.clone(),
                        },
                    )
                })
                .collect();
            prime_job_loaders(ctx, rc, &self.status.series, &jobs).await?;
            return Ok(jobs);
        }
        let page = args.page()?;
        let jobs = service(ctx)?
            .upload_jobs(&rc.org, self.status.series.id, args.status.as_deref(), page)
            .await
            .gql()?;
        let jobs: Vec<UploadJob> = jobs.into_iter().map(UploadJob::new).collect();
        prime_job_loaders(ctx, rc, &self.status.series, &jobs).await?;
        Ok(jobs)
    }
}

/// The jobs' `coupons` page (and `totalCount`, and the coupons' `uploadJob`), as the first
/// `coupons` selection under them asks for it: one statement each. Arguments that do not check
/// are left to the field itself to report.
async fn prime_job_coupons(
    look: &async_graphql::Lookahead<'_>,
    l: &super::Loaders,
    jobs: &[UploadJob],
) -> Result<()> {
    use async_graphql::InputType;
    let sel = look.field("coupons");
    let Some(field) = sel.selection_fields().into_iter().next() else {
        return Ok(());
    };
    let mut first = None;
    let mut after = None;
    let mut filter = None;
    for (name, value) in field.arguments()? {
        match name.as_str() {
            "first" => first = <Option<i32>>::parse(Some(value)).ok().flatten(),
            "after" => after = <Option<String>>::parse(Some(value)).ok().flatten(),
            "filter" => {
                filter = <Option<super::coupons::CouponFilterInput>>::parse(Some(value))
                    .ok()
                    .flatten()
            }
            _ => {}
        }
    }
    let Ok((page, filter)) = super::coupons::coupon_args(first, after, filter) else {
        return Ok(());
    };
    l.upload_job
        .feed_many(jobs.iter().map(|j| (j.0.id, j.0.clone())))
        .await;
    let keys: Vec<service::JobCoupons> =
        jobs.iter().map(|j| service::JobCoupons::of(&j.0)).collect();
    let pages = l
        .coupons_of_job
        .load_many(keys.iter().map(|&job| super::loaders::JobPageKey {
            job,
            filter: filter.clone(),
            page,
        }));
    let counts = async {
        if sel.field("totalCount").exists() {
            l.coupon_count_of_job
                .load_many(keys.iter().map(|&job| (job, filter.clone())))
                .await
                .map(drop)
        } else {
            Ok(())
        }
    };
    let (p, c) = futures_util::join!(pages, counts);
    p.map(drop).and(c).map_err(loader_err)
}

/// Loads, in one statement per kind, the nested objects the query selects under a list of jobs,
/// into the request's DataLoader caches. Without this, the DataLoaders' time-based batching
/// splits a long list into several batches whenever resolving it outlasts the batch delay
/// (seen: 15 statements for 200 jobs on SQLite, 47 on PostgreSQL, instead of 7). Jobs whose
/// group and version were read with them answer `audienceGroup` and `audienceGroupVersion`
/// themselves; their groups only serve versions' `audienceGroup`. Loaders are touched only for
/// what the query selects.
async fn prime_job_loaders(
    ctx: &Context<'_>,
    rc: &super::RequestContext,
    series: &coupon_series::Model,
    jobs: &[UploadJob],
) -> Result<()> {
    use std::collections::BTreeSet;
    let look = ctx.look_ahead();
    let group_sel = look.field("audienceGroup");
    let version_sel = look.field("audienceGroupVersion");
    let need_series = look.field("couponSeries").exists();
    let need_groups = group_sel.exists() || version_sel.field("audienceGroup").exists();
    let need_group_versions =
        group_sel.field("versions").exists() || group_sel.field("latestVersion").exists();
    let l = rc.loaders();
    prime_job_coupons(&look, l, jobs).await?;
    if !(need_series || need_groups || need_group_versions || version_sel.exists()) {
        return Ok(());
    }
    l.coupon_series.feed_one(series.id, series.clone()).await;
    let groups: BTreeSet<i64> = jobs.iter().filter_map(|j| j.0.audience_group_id).collect();
    let versions: BTreeSet<i64> = jobs
        .iter()
        .filter_map(|j| j.0.audience_group_version_id)
        .collect();
    let already = jobs.first().is_some_and(|j| j.1.read);
    if already && version_sel.field("audienceGroup").exists() {
        l.audience_group
            .feed_many(
                jobs.iter()
                    .filter_map(|j| j.1.group.clone().map(|g| (g.id, g))),
            )
            .await;
    }
    let (g, gv, v) = futures_util::join!(
        async {
            if need_groups && !already && !groups.is_empty() {
                l.audience_group
                    .load_many(groups.iter().copied())
                    .await
                    .map(drop)
            } else {
                Ok(())
            }
        },
        async {
            if need_group_versions && !groups.is_empty() {
                l.versions_of_group
                    .load_many(groups.iter().copied())
                    .await
                    .map(drop)
            } else {
                Ok(())
            }
        },
        async {
            if version_sel.exists() && !already && !versions.is_empty() {
                l.audience_group_version
                    .load_many(versions.iter().copied())
                    .await
                    .map(drop)
            } else {
                Ok(())
            }
        },
    );
    g.and(gv).and(v).map_err(loader_err)
}

/// One upload of a CSV file to a coupon series, and where its processing stands.
pub struct UploadJob(pub upload_job::Model, Audience);

/// A job's audience group and version when they were read with the job (`read`); otherwise
/// they come through the request's loaders.
#[derive(Default)]
struct Audience {
    read: bool,
    group: Option<audience_group::Model>,
    version: Option<audience_group_version::Model>,
}

impl UploadJob {
    pub fn new(job: upload_job::Model) -> Self {
        Self(job, Audience::default())
    }
}

/// A job field's value as its GraphQL type (see `crate::view`).
trait FromJobValue: Sized {
    fn from_value(v: Value<'_>, service: &Service) -> Option<Self>;
}

macro_rules! from_job_value {
    ($($ty:ty => |$v:ident, $s:ident| $body:expr;)*) => {
        $(impl FromJobValue for $ty {
            fn from_value($v: Value<'_>, $s: &Service) -> Option<Self> {
                $body
            }
        })*
    };
}

from_job_value! {
    ID => |v, _s| match v { Value::Id(n) => Some(id(n)), _ => None };
    Option<ID> => |v, _s| match v { Value::OptId(n) => Some(n.map(id)), _ => None };
    i32 => |v, _s| match v { Value::Count(n) => Some(int(n)), _ => None };
    Option<i32> => |v, _s| match v { Value::OptInt(n) => Some(n), _ => None };
    bool => |v, _s| match v { Value::Bool(b) => Some(b), _ => None };
    String => |v, _s| match v { Value::Str(t) => Some(t.to_owned()), _ => None };
    Option<String> => |v, s| match v {
        Value::OptStr(t) => Some(t.map(str::to_owned)),
        Value::File(key) => Some(s.file_url(key)),
        _ => None,
    };
    DateTime<Utc> => |v, _s| match v { Value::Time(t) => Some(*t), _ => None };
    UploadJobStatus => |v, _s| match v { Value::Status(x) => Some(x), _ => None };
    CustomerIdentifierType => |v, _s| match v { Value::Identifier(x) => Some(x), _ => None };
}

/// A scalar field of `job` for GraphQL. The list in `crate::view` pairs each field's value
/// kind with its GraphQL type; a mismatch there is an internal error, caught by the tests.
fn job_value<T: FromJobValue>(
    job: &upload_job::Model,
    field: JobField,
    ctx: &Context<'_>,
) -> Result<T> {
    let service = service(ctx)?;
    T::from_value(field.get(job), service).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!(
            "job field {} is listed with a value of another type",
            field.name()
        ))
        .extend()
    })
}

/// `UploadJob`'s resolvers: one per field of `crate::view`'s list, plus the object-valued
/// fields passed in.
macro_rules! job_object {
    (
        { $($extra:tt)* }
        $( $(#[doc = $doc:tt])* $variant:ident $method:ident $gql:tt : $ty:ty, rest: $rest:tt,
           |$j:ident| $get:expr; )*
    ) => {
        /// One upload of a CSV file to a coupon series, and where its processing stands.
        #[Object]
        impl UploadJob {
            $(
                $(#[doc = $doc])*
                #[graphql(name = $gql)]
                async fn $method(&self, ctx: &Context<'_>) -> Result<$ty> {
                    job_value(&self.0, JobField::$variant, ctx)
                }
            )*
            $($extra)*
            /// The rows the job rejected, by row number (Relay connection; `first` default 100,
            /// at most 500), only those with `errorCode` if given: what its error file holds.
            /// Complete once the job has ended; empty before.
            #[graphql(complexity = "crate::graphql::list_complexity(first, child_complexity)")]
            async fn row_errors(
                &self,
                ctx: &Context<'_>,
                first: Option<i32>,
                after: Option<String>,
                error_code: Option<crate::domain::RowErrorCode>,
            ) -> Result<super::coupons::RowErrorConnection> {
                super::coupons::row_errors(ctx, &self.0, first, after, error_code).await
            }
            /// How many rows the job rejected, per error code (codes it did not meet are left
            /// out). Complete once the job has ended; empty before.
            async fn error_summary(
                &self,
                ctx: &Context<'_>,
            ) -> Result<Vec<super::coupons::ErrorCount>> {
                super::coupons::error_summary(ctx, &self.0).await
            }
            /// The coupons the job created, oldest first (Relay connection; `first` default 100, at
            /// most 500). A page of many jobs' coupons is read in one statement.
            #[graphql(complexity = "crate::graphql::list_complexity(first, child_complexity)")]
            async fn coupons(
                &self,
                ctx: &Context<'_>,
                first: Option<i32>,
                after: Option<String>,
                filter: Option<super::coupons::CouponFilterInput>,
            ) -> Result<CouponConnection> {
                let rc = request_ctx(ctx)?;
                let (page, filter) = super::coupons::coupon_args(first, after, filter).gql()?;
                let job = service::JobCoupons::of(&self.0);
                let got = rc
                    .loaders()
                    .coupons_of_job
                    .load_one(super::loaders::JobPageKey {
                        job,
                        filter: filter.clone(),
                        page,
                    })
                    .await
                    .map_err(loader_err)?
                    .unwrap_or_default();
                Ok(connection(
                    service::CouponScope::Job(job),
                    filter,
                    page,
                    got,
                ))
            }
        }
    };
}

with_job_fields!(job_object! {
    async fn coupon_series(&self, ctx: &Context<'_>) -> Result<Option<CouponSeries>> {
        let rc = request_ctx(ctx)?;
        let s = rc
            .loaders()
            .coupon_series
            .load_one(self.0.coupon_series_id)
            .await
            .map_err(loader_err)?;
        Ok(s.map(CouponSeries))
    }
    async fn audience_group(&self, ctx: &Context<'_>) -> Result<Option<AudienceGroup>> {
        let Some(gid) = self.0.audience_group_id else {
            return Ok(None);
        };
        if self.1.read {
            return Ok(self.1.group.clone().map(AudienceGroup));
        }
        let rc = request_ctx(ctx)?;
        let g = rc
            .loaders()
            .audience_group
            .load_one(gid)
            .await
            .map_err(loader_err)?;
        Ok(g.map(AudienceGroup))
    }
    async fn audience_group_version(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<AudienceGroupVersion>> {
        let Some(vid) = self.0.audience_group_version_id else {
            return Ok(None);
        };
        if self.1.read {
            return Ok(self.1.version.clone().map(AudienceGroupVersion));
        }
        let rc = request_ctx(ctx)?;
        let v = rc
            .loaders()
            .audience_group_version
            .load_one(vid)
            .await
            .map_err(loader_err)?;
        Ok(v.map(AudienceGroupVersion))
    }
});

/// A coupon series: the campaign uploaded codes belong to.
pub struct CouponSeries(pub coupon_series::Model);

/// A coupon series: the campaign uploaded codes belong to.
#[Object]
impl CouponSeries {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn org_id(&self) -> ID {
        id(self.0.org_id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn client_handling_type(&self) -> ClientHandlingType {
        self.0.client_handling_type
    }
    /// Most coupons the series may hold; -1 = unlimited.
    async fn max_create(&self) -> i32 {
        int(self.0.max_create)
    }
    async fn allow_multiple_per_customer(&self) -> bool {
        self.0.allow_multiple_per_customer
    }
    async fn code_max_length(&self) -> i32 {
        self.0.code_max_length
    }
    /// Coupons uploaded to the series so far.
    async fn num_uploaded_total(&self) -> i32 {
        int(self.0.num_uploaded_total)
    }
    async fn created_on(&self) -> DateTime<Utc> {
        self.0.created_on
    }
    async fn updated_on(&self) -> DateTime<Utc> {
        self.0.updated_on
    }
    /// The series' coupons, oldest first (Relay connection; `first` default 100, at most 500).
    #[graphql(complexity = "crate::graphql::list_complexity(first, child_complexity)")]
    async fn coupons(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<super::coupons::CouponFilterInput>,
    ) -> Result<CouponConnection> {
        let rc = request_ctx(ctx)?;
        let (page, filter) = super::coupons::coupon_args(first, after, filter).gql()?;
        let scope = service::CouponScope::Series(self.0.id);
        let got = service(ctx)?
            .coupons_page(&rc.org, scope, &filter, page)
            .await
            .gql()?;
        Ok(connection(scope, filter, page, got))
    }
    /// The audience group formed by the series' tagged uploads; null until the first one.
    async fn audience_group(&self, ctx: &Context<'_>) -> Result<Option<AudienceGroup>> {
        let rc = request_ctx(ctx)?;
        let g = rc
            .loaders()
            .audience_group_by_series
            .load_one(self.0.id)
            .await
            .map_err(loader_err)?;
        Ok(g.map(AudienceGroup))
    }
}

/// The customers named by a series' tagged uploads (`type: UPLOAD`), versioned per upload.
pub struct AudienceGroup(pub audience_group::Model);

/// The customers named by a series' tagged uploads (`type: UPLOAD`), versioned per upload.
#[Object]
impl AudienceGroup {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn org_id(&self) -> ID {
        id(self.0.org_id)
    }
    async fn coupon_series_id(&self) -> ID {
        id(self.0.coupon_series_id)
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    #[graphql(name = "type")]
    async fn group_type(&self) -> AudienceGroupType {
        self.0.group_type
    }
    async fn status(&self) -> AudienceGroupStatus {
        self.0.status
    }
    /// Distinct customers in the latest version.
    async fn customer_count(&self) -> i32 {
        int(self.0.customer_count)
    }
    async fn created_on(&self) -> DateTime<Utc> {
        self.0.created_on
    }
    async fn updated_on(&self) -> DateTime<Utc> {
        self.0.updated_on
    }
    /// The group's versions, newest first: `first` of them (at most 100), older than
    /// `beforeVersionNumber` when given (page on with the last one's `versionNumber`).
    #[graphql(complexity = "crate::graphql::list_complexity(Some(first), child_complexity)")]
    async fn versions(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 10)] first: i32,
        before_version_number: Option<i32>,
    ) -> Result<Vec<AudienceGroupVersion>> {
        let first = crate::service::versions_page(first).map_err(|e| e.extend())?;
        let rc = request_ctx(ctx)?;
        let vs = match before_version_number {
            None => rc
                .loaders()
                .versions_of_group
                .load_one(self.0.id)
                .await
                .map_err(loader_err)?
                .unwrap_or_default(),
            Some(before) => service(ctx)?
                .audience_group_versions_before(&rc.org, self.0.id, before, first)
                .await
                .map_err(|e| e.extend())?,
        };
        Ok(vs
            .into_iter()
            .take(first as usize)
            .map(AudienceGroupVersion)
            .collect())
    }
    async fn latest_version(&self, ctx: &Context<'_>) -> Result<Option<AudienceGroupVersion>> {
        let rc = request_ctx(ctx)?;
        let vs = rc
            .loaders()
            .versions_of_group
            .load_one(self.0.id)
            .await
            .map_err(loader_err)?;
        Ok(vs
            .and_then(|v| v.into_iter().next())
            .map(AudienceGroupVersion))
    }
}

/// One version of an audience group: the customers of one tagged upload.
pub struct AudienceGroupVersion(pub audience_group_version::Model);

/// One version of an audience group: the customers of one tagged upload.
#[Object]
impl AudienceGroupVersion {
    async fn id(&self) -> ID {
        id(self.0.id)
    }
    async fn audience_group_id(&self) -> ID {
        id(self.0.audience_group_id)
    }
    async fn version_number(&self) -> i32 {
        self.0.version_number
    }
    /// Distinct customers named by the upload.
    async fn customer_count(&self) -> i32 {
        int(self.0.customer_count)
    }
    async fn status(&self) -> AudienceGroupStatus {
        self.0.status
    }
    /// The upload job that formed this version.
    async fn upload_job_id(&self) -> Option<ID> {
        self.0.upload_job_id.map(id)
    }
    async fn created_on(&self) -> DateTime<Utc> {
        self.0.created_on
    }
    async fn audience_group(&self, ctx: &Context<'_>) -> Result<Option<AudienceGroup>> {
        let rc = request_ctx(ctx)?;
        let g = rc
            .loaders()
            .audience_group
            .load_one(self.0.audience_group_id)
            .await
            .map_err(loader_err)?;
        Ok(g.map(AudienceGroup))
    }
}

/// One coupon code in the inventory: who uploaded it, to whom it is tagged, whether it is live.
pub struct Coupon(pub coupon::Model);

/// One coupon code in the inventory: who uploaded it, to whom it is tagged, whether it is live.
#[Object]
impl Coupon {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn code(&self) -> &str {
        &self.0.code
    }
    async fn coupon_series(&self, ctx: &Context<'_>) -> Result<Option<CouponSeries>> {
        let rc = request_ctx(ctx)?;
        let s = rc
            .loaders()
            .coupon_series
            .load_one(self.0.coupon_series_id)
            .await
            .map_err(loader_err)?;
        Ok(s.map(CouponSeries))
    }
    /// The upload that created the coupon.
    async fn upload_job(&self, ctx: &Context<'_>) -> Result<Option<UploadJob>> {
        let Some(job) = self.0.upload_job_id else {
            return Ok(None);
        };
        let rc = request_ctx(ctx)?;
        let j = rc
            .loaders()
            .upload_job
            .load_one(job)
            .await
            .map_err(loader_err)?;
        Ok(j.map(UploadJob::new))
    }
    /// How the customer is named; null for an untagged coupon.
    async fn customer_identifier_type(&self) -> Option<CustomerIdentifierType> {
        self.0.customer_identifier_type
    }
    /// The customer the coupon is tagged to (normalized as uploaded); null when untagged.
    async fn customer_identifier(&self) -> Option<&str> {
        self.0.customer_identifier.as_deref()
    }
    async fn status(&self) -> CouponStatus {
        self.0.status
    }
    async fn created_on(&self) -> DateTime<Utc> {
        self.0.created_on
    }
    async fn revoked_on(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_on
    }
}

/// What a `coupons` connection has beyond its page.
pub struct CouponConnectionFields {
    scope: CouponScope,
    filter: CouponFilter,
}

#[Object]
impl CouponConnectionFields {
    /// Coupons matching the filter, across pages (counted when asked for).
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        let rc = request_ctx(ctx)?;
        if let CouponScope::Job(job) = self.scope {
            // A page of jobs counts in one statement.
            let n = rc
                .loaders()
                .coupon_count_of_job
                .load_one((job, self.filter.clone()))
                .await
                .map_err(loader_err)?;
            return Ok(n.unwrap_or(0));
        }
        service(ctx)?
            .coupons_count(&rc.org, self.scope, &self.filter)
            .await
            .gql()
    }
}

pub type CouponConnection = Connection<String, Coupon, CouponConnectionFields>;

/// A page as a connection.
pub fn connection(
    scope: CouponScope,
    filter: CouponFilter,
    page: Page,
    got: CouponPage,
) -> CouponConnection {
    let mut conn = Connection::with_additional_fields(
        page.after.is_some(),
        got.has_next_page,
        CouponConnectionFields { scope, filter },
    );
    conn.edges.extend(got.items.into_iter().map(|c| {
        Edge::new(
            super::cursor(super::coupons::COUPON_CURSOR, c.id),
            Coupon(c),
        )
    }));
    conn
}

/// What `revokeCoupons` did.
pub struct RevokeResult(pub Revoked);

/// What `revokeCoupons` did: unknown codes are reported, not fatal.
#[Object]
impl RevokeResult {
    /// Coupons revoked by this call.
    async fn revoked_count(&self) -> usize {
        self.0.revoked.len()
    }
    /// The coupons revoked by this call, as they are now.
    async fn revoked(&self) -> Vec<Coupon> {
        self.0.revoked.iter().cloned().map(Coupon).collect()
    }
    /// Codes of the series that were revoked before (they stay revoked).
    async fn already_revoked_codes(&self) -> &[String] {
        &self.0.already_revoked
    }
    /// Codes with no coupon in the series.
    async fn unknown_codes(&self) -> &[String] {
        &self.0.unknown
    }
}
