//! Where files live: uploaded CSVs and the error/success files made from them. Backed by the
//! `object_store` crate, so the same code runs on a local folder (the default) and on an
//! S3-compatible bucket (`--storage-url s3://…`).
//!
//! Keys start with the org: `org/<orgId>/uploads/<random>/uploaded.csv` for a file as uploaded,
//! `org/<orgId>/jobs/<jobId>/<name>` for the files made from it. The org in the key is what lets
//! a signed link be checked against nothing but itself.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

#[derive(Clone, Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// Bytes buffered per part of a streamed write: S3 needs at least 5 MiB, a folder less.
    part_size: usize,
}

const LOCAL_PART: usize = 1024 * 1024;
const S3_PART: usize = 5 * 1024 * 1024;

/// A stored file, opened for streaming.
pub struct StoredFile {
    pub size: u64,
    pub stream: BoxStream<'static, object_store::Result<Bytes>>,
}

/// A storage error that may clear by itself (the store unreachable, timing out, failing with
/// 5xx), as opposed to one about the request (no such object, a bad path, a missing feature).
pub fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        e,
        E::NotFound { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::UnknownConfigurationKey { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
    )
}

/// Whether `e` (from this module) failed for [`transient`] reasons.
pub fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<object_store::Error>()
            .is_some_and(transient)
            // A writer's error arrives wrapped in an `io::Error`, whose `source` skips it.
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<object_store::Error>())
                .is_some_and(transient)
    })
}

impl Storage {
    /// Storage named by a URL: `file:///path` (a local folder) or `s3://bucket[/prefix]` (an
    /// S3-compatible bucket; credentials, region and endpoint from the standard `AWS_*`
    /// variables, e.g. `AWS_ENDPOINT=http://127.0.0.1:9000` and `AWS_ALLOW_HTTP=true` for a
    /// local S3 server).
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if let Some(path) = url.strip_prefix("file://") {
            return Self::local(std::path::Path::new(path));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(
                !bucket.is_empty(),
                "the storage URL {url:?} names no bucket"
            );
            // A request is retried for a few seconds only: a longer outage reaches the caller
            // (an upload request answers 503; a job waits it out with its own backoff and
            // goes on from its last commit), instead of holding a request for minutes.
            let retry = object_store::RetryConfig {
                backoff: Default::default(),
                max_retries: 4,
                retry_timeout: std::time::Duration::from_secs(10),
            };
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_retry(retry)
                .with_bucket_name(bucket)
                .build()
                .with_context(|| format!("configuring S3 storage {url}"))?;
            let prefix = prefix.trim_matches('/');
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))
            };
            return Ok(Self {
                store,
                part_size: S3_PART,
            });
        }
        anyhow::bail!("unsupported storage URL {url:?}: use file:///path or s3://bucket/prefix")
    }

    /// A local folder, created if missing.
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the storage folder {}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .with_context(|| format!("opening the storage folder {}", dir.display()))?;
        Ok(Self {
            store: Arc::new(store),
            part_size: LOCAL_PART,
        })
    }

    pub fn job_key(org_id: i64, job_id: i64, name: &str) -> String {
        format!("org/{org_id}/jobs/{job_id}/{name}")
    }

    pub async fn put(&self, key: &str, data: impl Into<Bytes>) -> anyhow::Result<()> {
        let path = Path::parse(key).with_context(|| format!("bad storage key {key:?}"))?;
        self.store
            .put(&path, PutPayload::from_bytes(data.into()))
            .await
            .with_context(|| format!("storing {key}"))?;
        Ok(())
    }

    /// `None` when there is no such file.
    pub async fn open(&self, key: &str) -> anyhow::Result<Option<StoredFile>> {
        let path = Path::parse(key).with_context(|| format!("bad storage key {key:?}"))?;
        match self.store.get(&path).await {
            Ok(got) => Ok(Some(StoredFile {
                size: got.meta.size,
                stream: got.into_stream(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading {key}"))),
        }
    }
}

impl Storage {
    /// Streams `reader` into `key` without holding it in memory (multipart upload in parts);
    /// returns the bytes written. On error nothing is left at `key`.
    pub async fn put_stream<R>(&self, key: &str, mut reader: R) -> anyhow::Result<u64>
    where
        R: tokio::io::AsyncRead + Unpin + Send,
    {
        use tokio::io::AsyncWriteExt;
        let path = Path::parse(key).with_context(|| format!("bad storage key {key:?}"))?;
        let mut writer = self.buffered(path);
        let copied = tokio::io::copy(&mut reader, &mut writer).await;
        match copied {
            Ok(n) => {
                writer
                    .shutdown()
                    .await
                    .with_context(|| format!("storing {key}"))?;
                Ok(n)
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(anyhow::Error::new(e).context(format!("storing {key}")))
            }
        }
    }

    /// Writes go out in parts of `part_size`, at most two at a time, so the memory a file
    /// takes while written is bounded whatever its size (object_store's defaults would allow
    /// 8 parts of 10 MiB).
    fn buffered(&self, path: Path) -> object_store::buffered::BufWriter {
        object_store::buffered::BufWriter::with_capacity(self.store.clone(), path, self.part_size)
            .with_max_concurrency(2)
    }

    /// A writer for a new object; `shutdown()` completes it, `abort()` discards it.
    pub fn writer(&self, key: &str) -> anyhow::Result<object_store::buffered::BufWriter> {
        let path = Path::parse(key).with_context(|| format!("bad storage key {key:?}"))?;
        Ok(self.buffered(path))
    }

    /// The object as an `AsyncRead`, streamed.
    pub async fn reader(
        &self,
        key: &str,
    ) -> anyhow::Result<Option<impl tokio::io::AsyncRead + Send + Unpin + 'static>> {
        use futures_util::TryStreamExt;
        Ok(self.open(key).await?.map(|f| {
            tokio_util::io::StreamReader::new(
                f.stream.map_err(|e| std::io::Error::other(e.to_string())),
            )
        }))
    }

    /// Deletes `key`; deleting what is not there is not an error.
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = Path::parse(key).with_context(|| format!("bad storage key {key:?}"))?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("deleting {key}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_store_error_is_found_inside_an_io_error_too() {
        let store = || object_store::Error::Generic {
            store: "S3",
            source: "connection refused".into(),
        };
        let direct = anyhow::Error::new(store()).context("storing x");
        let wrapped = anyhow::Error::new(std::io::Error::other(store())).context("storing x");
        assert!(super::unreachable(&direct));
        assert!(super::unreachable(&wrapped));
        let missing = anyhow::Error::new(object_store::Error::NotFound {
            path: "x".into(),
            source: "gone".into(),
        });
        assert!(!super::unreachable(&missing));
        assert!(!super::unreachable(&anyhow::anyhow!("something else")));
    }
}
