//! Phase `FILES`: the error and success files written from `upload_row`, then the job ended
//! (with its audience group version) in one transaction.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, Set, Value,
};
use tokio::io::AsyncWriteExt;

use super::ctx::{JobCtx, Stop};
use super::sql;
use crate::domain::{
    AudienceGroupStatus, AudienceGroupType, CustomerIdentifierType, JobPhase, UploadJobStatus, now,
};
use crate::entity::{audience_group, audience_group_version};
use crate::service::result_keys;

/// Writes the result files for the committed rows, then ends the job (`FINISHED`, or
/// `CANCELLED`) in one transaction; a finished tagged job adds a version to the series'
/// audience group.
pub async fn finish(ctx: &mut JobCtx<'_>, status: UploadJobStatus) -> Result<(), Stop> {
    let (error_key, success_key) = result_keys(&ctx.job);
    let through = ctx.job.committed_through;
    // Two queries on two connections: the database reads one file's rows while this process
    // encodes the other's.
    tokio::try_join!(
        write_errors(ctx, &error_key, through),
        write_successes(ctx, &success_key, through)
    )?;
    ctx.check_alive()?;

    let txn = ctx.service.begin_write().await?;
    let (mut group_id, mut version_id): (Option<i64>, Option<i64>) = (None, None);
    if status == UploadJobStatus::Finished && ctx.kind != CustomerIdentifierType::NotTagged {
        let n = txn
            .query_one_raw(ctx.s(sql::DISTINCT_CUSTOMERS, vec![ctx.job.id.into()]))
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        let (g, v) = add_audience_version(ctx, &txn, n).await?;
        group_id = Some(g);
        version_id = Some(v);
    }
    let job = ctx
        .update_job(
            &*txn,
            "upload_status = $1, phase = $2, error_file_key = $3, success_file_key = $4, \
             audience_group_id = $5, audience_group_version_id = $6, finished_on = $7, \
             lease_owner = NULL, lease_expires_ms = NULL",
            vec![
                status.into(),
                JobPhase::Done.into(),
                error_key.into(),
                success_key.into(),
                group_id.into(),
                version_id.into(),
                now().into(),
            ],
        )
        .await?;
    txn.commit().await?;
    tracing::info!(
        job_id = job.id,
        status = %job.upload_status,
        rows = job.actual_row_count,
        accepted = job.total_uploaded_count,
        rejected = job.error_count,
        "ended"
    );
    ctx.service.events().publish(&job).await;
    ctx.job = job;
    Ok(())
}

/// The series' audience group (made by its first tagged upload) gains a version.
async fn add_audience_version(
    ctx: &JobCtx<'_>,
    txn: &DatabaseTransaction,
    customers: i64,
) -> Result<(i64, i64), Stop> {
    let at = now();
    let existing = audience_group::Entity::find()
        .filter(audience_group::Column::CouponSeriesId.eq(ctx.series.id))
        .one(txn)
        .await?;
    let group = match existing {
        Some(g) => {
            let number = g.latest_version_number + 1;
            let mut a: audience_group::ActiveModel = g.into();
            a.latest_version_number = Set(number);
            a.customer_count = Set(customers);
            a.updated_on = Set(at);
            a.update(txn).await?
        }
        None => {
            audience_group::ActiveModel {
                org_id: Set(ctx.job.org_id),
                coupon_series_id: Set(ctx.series.id),
                name: Set(format!("{} customers", ctx.series.name)),
                group_type: Set(AudienceGroupType::Upload),
                status: Set(AudienceGroupStatus::Active),
                customer_count: Set(customers),
                latest_version_number: Set(1),
                created_on: Set(at),
                updated_on: Set(at),
                ..Default::default()
            }
            .insert(txn)
            .await?
        }
    };
    let version = audience_group_version::ActiveModel {
        org_id: Set(ctx.job.org_id),
        audience_group_id: Set(group.id),
        version_number: Set(group.latest_version_number),
        customer_count: Set(customers),
        status: Set(AudienceGroupStatus::Active),
        upload_job_id: Set(Some(ctx.job.id)),
        created_on: Set(at),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    Ok((group.id, version.id))
}

/// Rows per query when paging result files out of `upload_row` (SQLite).
const FILE_PAGE: i64 = 10_000;
const ERROR_HEADER: [&str; 5] = [
    "rowNumber",
    "errorCode",
    "errorMessage",
    "couponCode",
    "customerIdentifier",
];
const SUCCESS_HEADER: [&str; 4] = ["rowNumber", "couponId", "couponCode", "customerIdentifier"];

/// PostgreSQL: a result file that the database writes (`COPY … TO STDOUT`), streamed to storage
/// in ~1 MiB pieces; nothing is decoded here.
async fn copy_pg_file(ctx: &JobCtx<'_>, key: &str, copy: String) -> Result<(), Stop> {
    use futures_util::TryStreamExt;
    use sea_orm::sqlx::postgres::PgPoolCopyExt;
    let mut out = ctx.service.storage().writer(key)?;
    let pool = ctx.service.db().get_postgres_connection_pool();
    let mut rows = pool.copy_out_raw(&copy).await?;
    let mut piece = Vec::with_capacity(1 << 20);
    while let Some(bytes) = rows.try_next().await? {
        piece.extend_from_slice(&bytes);
        if piece.len() >= 1 << 20 {
            out.write_all(&piece).await?;
            piece.clear();
        }
    }
    drop(rows);
    out.write_all(&piece).await?;
    out.shutdown().await?;
    Ok(())
}

async fn write_errors(ctx: &JobCtx<'_>, key: &str, through: i64) -> Result<(), Stop> {
    if ctx.backend == DbBackend::Postgres {
        return copy_pg_file(ctx, key, sql::error_file_copy_pg(ctx.job.id, through)).await;
    }
    let binds = vec![ctx.job.id.into(), through.into()];
    page_file(ctx, key, &ERROR_HEADER, sql::ERROR_ROWS, binds, |r| {
        Ok(vec![
            r.try_get::<i64>("", "row_number")?.to_string(),
            r.try_get("", "error_code")?,
            r.try_get::<Option<String>>("", "error_message")?
                .unwrap_or_default(),
            r.try_get("", "raw_code")?,
            r.try_get::<Option<String>>("", "raw_customer")?
                .unwrap_or_default(),
        ])
    })
    .await
}

async fn write_successes(ctx: &JobCtx<'_>, key: &str, through: i64) -> Result<(), Stop> {
    let base = ctx.job.coupon_id_base.unwrap_or(0);
    if ctx.backend == DbBackend::Postgres {
        let copy = sql::success_file_copy_pg(ctx.job.id, base, through);
        return copy_pg_file(ctx, key, copy).await;
    }
    let binds = vec![ctx.job.id.into(), base.into(), through.into()];
    page_file(ctx, key, &SUCCESS_HEADER, sql::SUCCESS_ROWS, binds, |r| {
        Ok(vec![
            r.try_get::<i64>("", "row_number")?.to_string(),
            r.try_get::<i64>("", "coupon_id")?.to_string(),
            r.try_get("", "code")?,
            r.try_get::<Option<String>>("", "customer")?
                .unwrap_or_default(),
        ])
    })
    .await
}

/// SQLite: a result file page by page (keyset on `row_number`, the record's first column).
/// `sql` binds `binds`, then the row to start after and the page size.
async fn page_file(
    ctx: &JobCtx<'_>,
    key: &str,
    header: &[&str],
    sql: &str,
    binds: Vec<Value>,
    record: impl Fn(&sea_orm::QueryResult) -> Result<Vec<String>, sea_orm::DbErr>,
) -> Result<(), Stop> {
    let mut out = ctx.service.storage().writer(key)?;
    let mut page = csv_page(Some(header))?;
    let mut last = 0i64;
    loop {
        let mut values = binds.clone();
        values.extend([last.into(), FILE_PAGE.into()]);
        let rows = ctx.service.db().query_all_raw(ctx.s(sql, values)).await?;
        for r in &rows {
            last = r.try_get("", "row_number")?;
            page.write_record(record(r)?)?;
        }
        flush_page(&mut out, &mut page).await?;
        if (rows.len() as i64) < FILE_PAGE {
            break;
        }
        ctx.check_alive()?;
    }
    out.shutdown().await?;
    Ok(())
}

fn csv_page(header: Option<&[&str]>) -> Result<csv::Writer<Vec<u8>>, Stop> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(1 << 20));
    if let Some(h) = header {
        w.write_record(h)?;
    }
    Ok(w)
}

async fn flush_page(
    out: &mut object_store::buffered::BufWriter,
    page: &mut csv::Writer<Vec<u8>>,
) -> Result<(), Stop> {
    let full = std::mem::replace(page, csv_page(None)?);
    let bytes = full
        .into_inner()
        .map_err(|e| Stop::Internal(anyhow::anyhow!("csv: {e}")))?;
    out.write_all(&bytes).await?;
    Ok(())
}
