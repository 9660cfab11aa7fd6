use std::collections::HashMap;

use async_graphql::{Context, ID, Result, Subscription};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::types::UploadJob;
use super::{request_ctx, service};
use crate::domain::UploadJobStatus;
use crate::entity::upload_job;
use crate::error::{AppError, GqlResultExt};
use crate::service::parse_id;

pub struct SubscriptionRoot;

/// How long a job's subscription waits for an event before it reads the job itself.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// Where a job is in its life: events that would move a job backwards (a late delivery of an
/// older state) are dropped.
fn progress(job: &upload_job::Model) -> (u8, i64) {
    let rank = match job.upload_status {
        UploadJobStatus::Started => 0,
        UploadJobStatus::Processing => 1,
        _ => 2,
    };
    (rank, job.processed_row_count)
}

fn ended(job: &upload_job::Model) -> bool {
    progress(job).0 == 2
}

struct State {
    rx: tokio::sync::broadcast::Receiver<upload_job::Model>,
    first: Option<upload_job::Model>,
    seen: HashMap<i64, (u8, i64)>,
    org_id: i64,
    series_id: i64,
    job_id: Option<i64>,
    done: bool,
}

impl State {
    fn accept(&mut self, job: &upload_job::Model) -> bool {
        if job.org_id != self.org_id || job.coupon_series_id != self.series_id {
            return false;
        }
        if self.job_id.is_some_and(|id| id != job.id) {
            return false;
        }
        let p = progress(job);
        match self.seen.get(&job.id) {
            Some(last) if p < *last => false,
            Some(last) if p == *last && p.0 != 1 => false,
            _ => {
                self.seen.insert(job.id, p);
                true
            }
        }
    }
}

#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// Changes of the upload jobs of a series (or of one job): every status change, and
    /// progress (`processedRowCount`, counts) at most every 250 ms while rows are processed.
    /// With `jobId`, the job's current state comes first and the stream ends with its final
    /// state. Over WebSocket on `/graphql` (`graphql-transport-ws`, or the legacy `graphql-ws`),
    /// with the key in the `connection_init` payload: `{"Authorization": "Bearer <key>"}`.
    async fn upload_job_updated(
        &self,
        ctx: &Context<'_>,
        coupon_series_id: ID,
        job_id: Option<ID>,
    ) -> Result<impl Stream<Item = UploadJob> + use<>> {
        let rc = request_ctx(ctx)?.clone();
        let svc = service(ctx)?.clone();
        let series_id = parse_id("couponSeriesId", &coupon_series_id).gql()?;
        let job_id = job_id.map(|j| parse_id("jobId", &j)).transpose().gql()?;
        svc.upload_status(&rc.org, series_id).await.gql()?;
        // Subscribe before reading the current state, so no change falls in between.
        let rx = svc.events().subscribe();
        let first = match job_id {
            Some(id) => Some(
                svc.upload_job(&rc.org, id)
                    .await
                    .gql()?
                    .filter(|j| j.coupon_series_id == series_id)
                    .ok_or_else(|| AppError::not_found("upload job", id))
                    .gql()?,
            ),
            None => None,
        };
        let state = State {
            rx,
            first,
            seen: HashMap::new(),
            org_id: rc.org.org_id,
            series_id,
            job_id,
            done: false,
        };
        Ok(futures_util::stream::unfold(state, move |mut st| {
            let rc = rc.clone();
            let svc = svc.clone();
            async move {
                if st.done {
                    return None;
                }
                let next = match st.first.take() {
                    Some(job) => {
                        st.accept(&job);
                        job
                    }
                    None => loop {
                        let job = match tokio::time::timeout(RECHECK, st.rx.recv()).await {
                            Ok(Ok(job)) => job,
                            Ok(Err(RecvError::Closed)) => return None,
                            // Events may have been missed: this receiver fell behind, or a
                            // notice from another instance was lost while the listener
                            // reconnected. A job's subscription reads the job as stored, so
                            // it still sees the final state and ends.
                            Ok(Err(RecvError::Lagged(_))) | Err(_) => {
                                let Some(id) = st.job_id else { continue };
                                match svc.upload_job(&rc.org, id).await {
                                    Ok(Some(job)) => job,
                                    _ => continue,
                                }
                            }
                        };
                        if st.accept(&job) {
                            break job;
                        }
                    },
                };
                if st.job_id.is_some() && ended(&next) {
                    st.done = true;
                }
                // Nested objects are read afresh for each event.
                rc.loaders().clear();
                Some((UploadJob::new(next), st))
            }
        }))
    }
}
