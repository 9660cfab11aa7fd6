//! Hand-written HTTP/1.1 client (httparse): with reqwest the load generator took ~45 us of CPU per request, a third of the server's; now ~15 us.
//!
//! The load: `uploadStatus` requests back to back on keep-alive connections, each answer checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;

use crate::seed;

/// Load before the measured window, not counted (connections opened, caches warm).
pub const WARMUP: Duration = Duration::from_secs(2);
/// Longest a request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures printed per run (all are counted).
const FAILURES_SHOWN: usize = 5;

/// The request: the 16 fields of Capillary's status API for every job, plus the nested
/// audience group and version.
pub const QUERY: &str = "query($id: ID!) { uploadStatus(couponSeriesId: $id) { couponSeriesId uploadJobStatuses { \
    jobId orgId couponSeriesId uploadStatus createdOn updatedOn errorFileUrl successFileUrl uploadedFileUrl \
    totalUploadedCount actualRowCount errorCount uploadTableName uploadedFileName audienceGroupId audienceGroupVersionId \
    audienceGroup { id name } audienceGroupVersion { id versionNumber customerCount } } } }";

/// What the load needs to know: a key per org, the seeded job count per series (to check each
/// answer), and the query as a JSON string.
pub struct Target {
    /// `keys[org - 1]`.
    pub keys: Vec<String>,
    /// `jobs_per_series[series_id - 1]`.
    pub jobs_per_series: Vec<u8>,
    pub query: String,
}

/// One measured request.
#[derive(Clone, Copy)]
pub struct Sample {
    /// Since the start of the measured window.
    pub at_ms: u32,
    pub latency_us: u32,
    pub series_id: u32,
    pub jobs: u8,
}

pub struct Load {
    pub samples: Vec<Sample>,
    /// Requests, warm-up included.
    pub total: u64,
    /// Failed checks, warm-up included.
    pub errors: u64,
    /// The first failures, as text.
    pub failures: Vec<String>,
    pub wall: Duration,
}

/// What one connection's task did.
#[derive(Default)]
struct TaskResult {
    samples: Vec<Sample>,
    total: u64,
    errors: u64,
    failures: Vec<String>,
}

/// `connections` tasks, each with its own keep-alive connection, sending requests back
/// to back for the warm-up and `seconds`.
pub async fn run(
    base: &str,
    target: Arc<Target>,
    connections: usize,
    seconds: Duration,
    run: u32,
) -> Result<Load> {
    let addr = base
        .strip_prefix("http://")
        .context("the server's base URL is not http://")?
        .to_owned();
    let t0 = Instant::now();
    let measure_from = t0 + WARMUP;
    let until = measure_from + seconds;
    let mut tasks = Vec::new();
    for i in 0..connections {
        let (addr, target) = (addr.clone(), target.clone());
        let seed = seed::SEED ^ (u64::from(run) << 32) ^ (i as u64 + 1);
        tasks.push(tokio::spawn(async move {
            let mut rng = seed::Rng::new(seed);
            let mut out = TaskResult::default();
            let mut conn: Option<http1::Conn> = None;
            loop {
                let start = Instant::now();
                if start >= until {
                    break;
                }
                let series_id = 1 + rng.below(target.jobs_per_series.len() as u64) as u32;
                let checked = tokio::time::timeout(
                    REQUEST_TIMEOUT,
                    request(&mut conn, &addr, &target, series_id),
                )
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
                if checked.is_err() {
                    // A failed exchange may leave the connection mid-response.
                    conn = None;
                }
                let latency = start.elapsed();
                out.total += 1;
                if start >= measure_from {
                    out.samples.push(Sample {
                        at_ms: (start - measure_from).as_millis() as u32,
                        latency_us: latency.as_micros().min(u128::from(u32::MAX)) as u32,
                        series_id,
                        jobs: target.jobs_per_series[series_id as usize - 1],
                    });
                }
                if let Err(e) = checked {
                    out.errors += 1;
                    if out.failures.len() < FAILURES_SHOWN {
                        out.failures.push(format!(
                            "series {series_id} at {:.3} s: {e:#}",
                            (start - t0).as_secs_f64()
                        ));
                    }
                }
            }
            out
        }));
    }
    let mut load = Load {
        samples: Vec::new(),
        total: 0,
        errors: 0,
        failures: Vec::new(),
        wall: Duration::ZERO,
    };
    for task in tasks {
        let r = task.await?;
        load.samples.extend(r.samples);
        load.total += r.total;
        load.errors += r.errors;
        load.failures.extend(r.failures);
    }
    load.wall = t0.elapsed();
    load.failures.truncate(FAILURES_SHOWN);
    Ok(load)
}

// The answer, borrowed from the body: the ids are plain digits, never escaped (a string
// that needed unescaping fails to parse, and the request counts as failed).
#[derive(Deserialize)]
struct Response<'a> {
    #[serde(borrow)]
    data: Option<Data<'a>>,
    errors: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    #[serde(borrow)]
    upload_status: Option<Status<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    coupon_series_id: &'a str,
    #[serde(borrow)]
    upload_job_statuses: Vec<Job<'a>>,
}

/// The fields checked (the others are skipped unread).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job<'a> {
    job_id: &'a str,
    org_id: &'a str,
    coupon_series_id: &'a str,
    audience_group_id: Option<&'a str>,
    audience_group_version_id: Option<&'a str>,
    #[serde(borrow)]
    audience_group: Option<Nested<'a>>,
    #[serde(borrow)]
    audience_group_version: Option<Nested<'a>>,
}

#[derive(Deserialize)]
struct Nested<'a> {
    id: &'a str,
}

/// One `uploadStatus` request for `series_id` with its org's key, and the checks. Sent on
/// `conn`, opened to `addr` first if there is none.
async fn request(
    conn: &mut Option<http1::Conn>,
    addr: &str,
    target: &Target,
    series_id: u32,
) -> Result<()> {
    let org = seed::org_of(i64::from(series_id));
    let body = format!(
        r#"{{"query":{},"variables":{{"id":"{series_id}"}}}}"#,
        target.query
    );
    if conn.is_none() {
        *conn = Some(http1::Conn::open(addr).await?);
    }
    let c = conn.as_mut().expect("opened");
    let (status, bytes) = c
        .post("/graphql", &target.keys[org as usize - 1], body.as_bytes())
        .await?;
    if status != 200 {
        bail!("HTTP {status}: {}", String::from_utf8_lossy(bytes));
    }
    let answer: Response = serde_json::from_slice(bytes)
        .with_context(|| format!("not the expected JSON: {}", String::from_utf8_lossy(bytes)))?;
    if answer.errors.is_some() {
        bail!("errors: {}", String::from_utf8_lossy(bytes));
    }
    let s = answer
        .data
        .and_then(|d| d.upload_status)
        .context("no data.uploadStatus")?;
    let want = series_id.to_string();
    ensure!(
        s.coupon_series_id == want,
        "couponSeriesId is {}",
        s.coupon_series_id
    );
    let jobs = &s.upload_job_statuses;
    let seeded = target.jobs_per_series[series_id as usize - 1];
    ensure!(
        jobs.len() == usize::from(seeded),
        "{} jobs, seeded {seeded}",
        jobs.len()
    );
    let org = org.to_string();
    let mut previous = i64::MAX;
    for job in jobs {
        ensure!(
            job.org_id == org && job.coupon_series_id == want,
            "job {} of org {} and series {}",
            job.job_id,
            job.org_id,
            job.coupon_series_id
        );
        let id: i64 = job.job_id.parse().context("jobId is not an integer")?;
        ensure!(
            id < previous,
            "jobs not newest first ({id} after {previous})"
        );
        previous = id;
        let group = job.audience_group.as_ref().map(|g| g.id);
        let version = job.audience_group_version.as_ref().map(|v| v.id);
        ensure!(
            group == job.audience_group_id && version == job.audience_group_version_id,
            "job {id}: audienceGroup {group:?} / audienceGroupId {:?}, audienceGroupVersion {version:?} / audienceGroupVersionId {:?}",
            job.audience_group_id,
            job.audience_group_version_id
        );
    }
    Ok(())
}

/// A minimal HTTP/1.1 keep-alive client, one connection, one request at a time: what the
/// benchmark needs and no more, so the load generator takes as little of the machine as it
/// can (as pgbench does for the floor).
pub mod http1 {
    use anyhow::{Context, Result, bail};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    pub struct Conn {
        stream: TcpStream,
        host: String,
        /// The request being written, then the response being read.
        out: Vec<u8>,
        buf: Vec<u8>,
    }

    impl Conn {
        pub async fn open(addr: &str) -> Result<Self> {
            let stream = TcpStream::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            stream.set_nodelay(true)?;
            Ok(Self {
                stream,
                host: addr.to_owned(),
                out: Vec::with_capacity(2048),
                buf: Vec::with_capacity(16 * 1024),
            })
        }

        /// POSTs a JSON body with a bearer key; the status and the body. The server must
        /// answer with `Content-Length` (hyper does for a whole body).
        pub async fn post(&mut self, path: &str, key: &str, body: &[u8]) -> Result<(u16, &[u8])> {
            use std::io::Write;
            self.out.clear();
            write!(
                self.out,
                "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                self.host,
                body.len()
            )?;
            self.out.extend_from_slice(body);
            self.stream.write_all(&self.out).await?;
            self.buf.clear();
            let (status, head, length) = loop {
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("the server closed the connection");
                }
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut res = httparse::Response::new(&mut headers);
                if let httparse::Status::Complete(head) = res.parse(&self.buf)? {
                    let status = res.code.context("no status code")?;
                    let mut length = None;
                    for h in res.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = Some(std::str::from_utf8(h.value)?.trim().parse::<usize>()?);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            bail!("a chunked response: not supported here");
                        }
                    }
                    break (status, head, length.context("no Content-Length")?);
                }
            };
            while self.buf.len() < head + length {
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    bail!("the server closed the connection mid-body");
                }
            }
            if self.buf.len() > head + length {
                bail!("more bytes than the response's length");
            }
            Ok((status, &self.buf[head..head + length]))
        }
    }
}

impl Load {
    pub fn latencies_us(&self) -> Vec<u32> {
        self.samples.iter().map(|s| s.latency_us).collect()
    }
}
