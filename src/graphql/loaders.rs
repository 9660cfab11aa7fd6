//! Request-scoped DataLoaders: nested objects of a page of jobs load in one statement per kind,
//! however many jobs the page holds. Each loader carries the caller's org, so it can only load
//! that org's rows (the DataLoader examples keep loaders schema-wide, where no org is known).

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};

use crate::domain::OrgContext;
use crate::domain::RowErrorCode;
use crate::entity::{audience_group, audience_group_version, coupon_series, upload_job};
use crate::error::AppError;
use crate::service::{
    CouponFilter, CouponPage, JobCoupons, JobErrors, Page, RowErrorPage, Service,
};

pub struct Loaders {
    pub coupon_series: DataLoader<CouponSeriesById, HashMapCache>,
    pub audience_group: DataLoader<AudienceGroupById, HashMapCache>,
    pub audience_group_by_series: DataLoader<AudienceGroupBySeries, HashMapCache>,
    pub audience_group_version: DataLoader<AudienceGroupVersionById, HashMapCache>,
    pub versions_of_group: DataLoader<VersionsOfGroup, HashMapCache>,
    pub upload_job: DataLoader<UploadJobById, HashMapCache>,
    pub coupons_of_job: DataLoader<CouponsOfJob, HashMapCache>,
    pub coupon_count_of_job: DataLoader<CouponCountOfJob, HashMapCache>,
    pub row_errors_of_job: DataLoader<RowErrorsOfJob, HashMapCache>,
    pub error_summary: DataLoader<ErrorSummaryOfJob, HashMapCache>,
}

impl Loaders {
    pub fn new(service: Service, org: OrgContext) -> Self {
        let scope = Scope { service, org };
        fn dl<T: Loader<i64>>(l: T) -> DataLoader<T, HashMapCache> {
            DataLoader::with_cache(l, tokio::spawn, HashMapCache::default())
        }
        Self {
            coupon_series: dl(CouponSeriesById(scope.clone())),
            audience_group: dl(AudienceGroupById(scope.clone())),
            audience_group_by_series: dl(AudienceGroupBySeries(scope.clone())),
            audience_group_version: dl(AudienceGroupVersionById(scope.clone())),
            versions_of_group: dl(VersionsOfGroup(scope.clone())),
            upload_job: dl(UploadJobById(scope.clone())),
            row_errors_of_job: DataLoader::with_cache(
                RowErrorsOfJob(scope.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            error_summary: DataLoader::with_cache(
                ErrorSummaryOfJob(scope.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            coupon_count_of_job: DataLoader::with_cache(
                CouponCountOfJob(scope.clone()),
                tokio::spawn,
                HashMapCache::default(),
            ),
            coupons_of_job: DataLoader::with_cache(
                CouponsOfJob(scope),
                tokio::spawn,
                HashMapCache::default(),
            ),
        }
    }
}

impl Loaders {
    /// Forgets what was loaded (a subscription reads nested objects afresh per event).
    pub fn clear(&self) {
        self.coupon_series.clear::<i64>();
        self.audience_group.clear::<i64>();
        self.audience_group_by_series.clear::<i64>();
        self.audience_group_version.clear::<i64>();
        self.versions_of_group.clear::<i64>();
        self.upload_job.clear::<i64>();
        self.coupons_of_job.clear::<JobPageKey>();
        self.coupon_count_of_job
            .clear::<(JobCoupons, CouponFilter)>();
        self.row_errors_of_job.clear::<ErrorPageKey>();
        self.error_summary.clear::<JobErrors>();
    }
}

#[derive(Clone)]
pub struct Scope {
    service: Service,
    org: OrgContext,
}

macro_rules! org_loader {
    ($name:ident, $value:ty, $method:ident) => {
        pub struct $name(Scope);

        impl Loader<i64> for $name {
            type Value = $value;
            type Error = Arc<AppError>;

            async fn load(&self, keys: &[i64]) -> Result<HashMap<i64, Self::Value>, Self::Error> {
                self.0
                    .service
                    .$method(&self.0.org, keys)
                    .await
                    .map_err(Arc::new)
            }
        }
    };
}

org_loader!(CouponSeriesById, coupon_series::Model, coupon_series_by_ids);
org_loader!(
    AudienceGroupById,
    audience_group::Model,
    audience_groups_by_ids
);
org_loader!(
    AudienceGroupBySeries,
    audience_group::Model,
    audience_groups_by_series_ids
);
org_loader!(
    AudienceGroupVersionById,
    audience_group_version::Model,
    audience_group_versions_by_ids
);
org_loader!(
    VersionsOfGroup,
    Vec<audience_group_version::Model>,
    audience_group_versions_by_group_ids
);

org_loader!(UploadJobById, upload_job::Model, upload_jobs_by_ids);

/// One job's page of coupons, as `UploadJob.coupons(first, after, filter)` asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct JobPageKey {
    pub job: JobCoupons,
    pub filter: CouponFilter,
    pub page: Page,
}

/// Pages of many jobs' coupons: one statement per distinct (filter, page) asked for.
pub struct CouponsOfJob(Scope);

impl Loader<JobPageKey> for CouponsOfJob {
    type Value = CouponPage;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[JobPageKey],
    ) -> Result<HashMap<JobPageKey, CouponPage>, Self::Error> {
        let mut asks: HashMap<(&CouponFilter, Page), Vec<JobCoupons>> = HashMap::new();
        for k in keys {
            asks.entry((&k.filter, k.page)).or_default().push(k.job);
        }
        let mut out = HashMap::new();
        for ((filter, page), jobs) in asks {
            let mut pages = self
                .0
                .service
                .coupons_of_jobs(&self.0.org, &jobs, filter, page)
                .await
                .map_err(Arc::new)?;
            for job in jobs {
                let key = JobPageKey {
                    job,
                    filter: filter.clone(),
                    page,
                };
                out.insert(key, pages.remove(&job.job_id).unwrap_or_default());
            }
        }
        Ok(out)
    }
}

/// Counts of many jobs' coupons: one statement per distinct filter asked for.
pub struct CouponCountOfJob(Scope);

impl Loader<(JobCoupons, CouponFilter)> for CouponCountOfJob {
    type Value = u64;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[(JobCoupons, CouponFilter)],
    ) -> Result<HashMap<(JobCoupons, CouponFilter), u64>, Self::Error> {
        let mut asks: HashMap<&CouponFilter, Vec<JobCoupons>> = HashMap::new();
        for (job, filter) in keys {
            asks.entry(filter).or_default().push(*job);
        }
        let mut out = HashMap::new();
        for (filter, jobs) in asks {
            let counts = self
                .0
                .service
                .coupon_counts_of_jobs(&self.0.org, &jobs, filter)
                .await
                .map_err(Arc::new)?;
            for job in jobs {
                let n = counts.get(&job.job_id).copied().unwrap_or(0);
                out.insert((job, filter.clone()), n);
            }
        }
        Ok(out)
    }
}

/// One job's page of row errors, as `UploadJob.rowErrors(first, after, errorCode)` asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ErrorPageKey {
    pub job: JobErrors,
    pub code: Option<RowErrorCode>,
    pub page: Page,
}

/// Pages of many jobs' row errors: one statement per distinct (code, page) asked for.
pub struct RowErrorsOfJob(Scope);

impl Loader<ErrorPageKey> for RowErrorsOfJob {
    type Value = RowErrorPage;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[ErrorPageKey],
    ) -> Result<HashMap<ErrorPageKey, RowErrorPage>, Self::Error> {
        let mut asks: HashMap<(Option<RowErrorCode>, Page), Vec<JobErrors>> = HashMap::new();
        for k in keys.iter().filter(|k| k.job.org_id == self.0.org.org_id) {
            asks.entry((k.code, k.page))
                .or_default()
                .push(k.job.clone());
        }
        let mut out = HashMap::new();
        for ((code, page), jobs) in asks {
            let mut pages = self
                .0
                .service
                .row_errors_of_jobs(&jobs, code, page)
                .await
                .map_err(Arc::new)?;
            for job in jobs {
                let got = pages.remove(&job.job_id).unwrap_or_default();
                out.insert(ErrorPageKey { job, code, page }, got);
            }
        }
        Ok(out)
    }
}

/// Many jobs' counts of row errors per code, in one statement.
pub struct ErrorSummaryOfJob(Scope);

impl Loader<JobErrors> for ErrorSummaryOfJob {
    type Value = Vec<(RowErrorCode, i64)>;
    type Error = Arc<AppError>;

    async fn load(
        &self,
        keys: &[JobErrors],
    ) -> Result<HashMap<JobErrors, Self::Value>, Self::Error> {
        let mut counts = self
            .0
            .service
            .error_summaries(&self.0.org, keys)
            .await
            .map_err(Arc::new)?;
        Ok(keys
            .iter()
            .map(|k| (k.clone(), counts.remove(&k.job_id).unwrap_or_default()))
            .collect())
    }
}
