//! Object storage for a cluster: `--storage s3://bucket/prefix` on every `serve` and `worker`
//! node, so that no node needs a shared data directory (each keeps only local scratch).
//!
//! Layout under the prefix:
//! - `blobs/<aa>/<sha256>`: package bytes, content-addressed (one object per distinct package);
//! - `tmp/<id>`: a finished, valid upload between the end of its multipart upload and its
//!   commit (copied to its blob, then deleted; the start-up sweep removes stale ones);
//! - `uploads/<id>/<offset>`: the bytes of one `PATCH` of a resumable upload, named by the
//!   offset it starts at (zero-padded, so listing order is byte order);
//! - `jobs/<job>/artifacts/<target>.tar.gz`, `jobs/<job>/log.txt`, `jobs/<job>/worker.log`:
//!   what a worker keeps of a job.
//!
//! Package bytes are sent as they arrive, as an S3 multipart upload: at most one part
//! (`--storage-part-mib`, default 8 MiB) is buffered per upload, so memory stays bounded
//! whatever the upload size. An upload becomes an object only when its multipart upload is
//! completed, which happens only for valid packages; a refused, failed or interrupted one is
//! aborted (a killed server leaves an incomplete multipart upload, which no listing or read
//! shows; a bucket lifecycle rule removes those, see docs/deploy.md).
//!
//! Endpoint, region and credentials come from the usual `AWS_*` variables (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP=true` for a
//! plain-HTTP test server), read by `object_store`'s own `from_env`.

use std::io;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as Key;
use object_store::{MultipartUpload, ObjectMeta, ObjectStore, PutPayload};

const MIB: u64 = 1024 * 1024;
/// The largest object S3's CopyObject copies in one request.
const MAX_COPY_BYTES: u64 = 5 * 1024 * MIB;

/// Where package bytes live, as `--storage` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    /// `file:DIR`: blobs on the local file system (the embedded default: `<data-dir>/blobs`);
    /// artifacts stay in the node's job directories.
    File(std::path::PathBuf),
    /// `s3://bucket[/prefix]`: an S3-compatible object store shared by every node.
    S3 { bucket: String, prefix: String },
}

impl FromStr for StorageUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<StorageUrl, String> {
        if let Some(dir) = s.strip_prefix("file:") {
            let dir = dir.strip_prefix("//").unwrap_or(dir);
            if dir.is_empty() {
                return Err("file: needs a directory, e.g. file:data/blobs".into());
            }
            return Ok(StorageUrl::File(dir.into()));
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("s3:// needs a bucket, e.g. s3://byom/packages".into());
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|p| p == "." || p == "..") {
                return Err(format!("invalid prefix {prefix:?} in {s:?}"));
            }
            return Ok(StorageUrl::S3 {
                bucket: bucket.into(),
                prefix: prefix.into(),
            });
        }
        Err(format!(
            "{s:?} is not a storage URL; use file:DIR or s3://bucket/prefix"
        ))
    }
}

impl StorageUrl {
    pub fn describe(&self) -> String {
        match self {
            StorageUrl::File(d) => format!("file:{}", d.display()),
            StorageUrl::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

/// Bounds of `--storage-part-mib`: S3 refuses parts under 5 MiB (but the last), and a part is
/// held in memory per upload.
pub const PART_MIB_MIN: u64 = 5;
pub const PART_MIB_MAX: u64 = 256;

fn to_io(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        other => io::Error::other(other),
    }
}

/// An S3-compatible bucket (and prefix) shared by the nodes of a cluster.
pub struct S3Store {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    part_bytes: usize,
}

impl S3Store {
    /// Configure the client (`AWS_*` variables for endpoint, region and credentials). Nothing
    /// is sent yet; [`S3Store::check`] does the first request.
    pub fn new(bucket: &str, prefix: &str, part_mib: u64) -> Result<S3Store, String> {
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| format!("cannot configure the S3 client for bucket {bucket:?}: {e}"))?;
        Ok(S3Store::with_store(Arc::new(store), prefix, part_mib))
    }

    fn with_store(store: Arc<dyn ObjectStore>, prefix: &str, part_mib: u64) -> S3Store {
        let part = part_mib.clamp(PART_MIB_MIN, PART_MIB_MAX) * MIB;
        S3Store {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            part_bytes: usize::try_from(part).unwrap_or(usize::MAX),
        }
    }

    /// One listing request: fails at start-up, with the store's own message, when the bucket
    /// is missing or the credentials are wrong, instead of at the first upload.
    pub async fn check(&self) -> io::Result<()> {
        let mut listing = self.store.list(Some(&self.key("blobs")));
        match listing.next().await {
            Some(Err(e)) => Err(to_io(e)),
            _ => Ok(()),
        }
    }

    fn key(&self, rest: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rest)
        } else {
            Key::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// The blob of a package; only ever our own hex digest.
    pub fn blob_key(&self, sha256: &str) -> io::Result<Key> {
        if sha256.len() != 64 || !sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a sha256"));
        }
        Ok(self.key(&format!("blobs/{}/{sha256}", &sha256[..2])))
    }

    pub fn tmp_key(&self, id: &str) -> Key {
        self.key(&format!("tmp/{id}"))
    }

    pub fn upload_prefix(&self, upload: &str) -> Key {
        self.key(&format!("uploads/{upload}"))
    }

    /// The object holding the bytes a `PATCH` sent from `offset` on.
    pub fn upload_part_key(&self, upload: &str, offset: u64) -> Key {
        self.key(&format!("uploads/{upload}/{offset:020}"))
    }

    pub fn job_prefix(&self, job: &str) -> Key {
        self.key(&format!("jobs/{job}"))
    }

    pub fn artifact_key(&self, job: &str, target: &str) -> Key {
        self.key(&format!("jobs/{job}/artifacts/{target}.tar.gz"))
    }

    /// Start a multipart upload to `key`.
    pub async fn writer(&self, key: &Key) -> io::Result<ObjectWriter> {
        let upload = self.store.put_multipart(key).await.map_err(to_io)?;
        Ok(ObjectWriter {
            upload,
            buf: Vec::new(),
            part_bytes: self.part_bytes,
            written: 0,
            handle: tokio::runtime::Handle::current(),
        })
    }

    /// Make the completed upload `tmp` the blob `sha256` (a server-side copy unless that blob
    /// exists already: identical bytes are stored once), then delete `tmp`. S3 copies at most
    /// 5 GiB in one request; a larger object is streamed through this server instead.
    pub async fn commit_blob(&self, tmp: &Key, sha256: &str) -> io::Result<()> {
        let blob = self.blob_key(sha256)?;
        match self.store.head(&blob).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                let size = self.store.head(tmp).await.map_err(to_io)?.size;
                if size <= MAX_COPY_BYTES {
                    self.store.copy(tmp, &blob).await.map_err(to_io)?
                } else {
                    self.restream(tmp, &blob).await?
                }
            }
            Err(e) => return Err(to_io(e)),
        }
        self.delete(tmp).await
    }

    /// Copy `from` to `to` through this process, one part in memory.
    async fn restream(&self, from: &Key, to: &Key) -> io::Result<()> {
        let (_, mut stream) = self.read(from).await?;
        let mut writer = self.writer(to).await?;
        while let Some(chunk) = stream.next().await {
            let written = match chunk {
                Ok(c) => writer.write_async(&c).await,
                Err(e) => Err(to_io(e)),
            };
            if let Err(e) = written {
                writer.abort().await;
                return Err(e);
            }
        }
        writer.complete().await
    }

    pub async fn delete_blob(&self, sha256: &str) -> io::Result<()> {
        self.delete(&self.blob_key(sha256)?).await
    }

    /// Delete one object; one that is not there is fine.
    pub async fn delete(&self, key: &Key) -> io::Result<()> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(to_io(e)),
        }
    }

    /// Delete every object under `prefix`.
    pub async fn delete_prefix(&self, prefix: &Key) -> io::Result<()> {
        for meta in self.list(prefix).await? {
            self.delete(&meta.location).await?;
        }
        Ok(())
    }

    /// Every object under `prefix`, in key order.
    pub async fn list(&self, prefix: &Key) -> io::Result<Vec<ObjectMeta>> {
        let mut out: Vec<ObjectMeta> = Vec::new();
        let mut listing = self.store.list(Some(prefix));
        while let Some(meta) = listing.next().await {
            out.push(meta.map_err(to_io)?);
        }
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    /// Every object under the store's own area `rest` (`blobs`, `tmp`, `uploads`, …).
    pub async fn list_area(&self, rest: &str) -> io::Result<Vec<ObjectMeta>> {
        self.list(&self.key(rest)).await
    }

    /// An object as a stream of chunks, with its size.
    pub async fn read(
        &self,
        key: &Key,
    ) -> io::Result<(u64, impl Stream<Item = Result<Bytes, object_store::Error>>)> {
        let got = self.store.get(key).await.map_err(to_io)?;
        Ok((got.meta.size, got.into_stream()))
    }

    /// Copy an object into the local file `dest`; refused past `max` bytes (the job's package
    /// is no larger than its row says, and the job's disk allowance is computed from that).
    pub async fn download(&self, key: &Key, dest: &Path, max: u64) -> io::Result<u64> {
        use tokio::io::AsyncWriteExt;
        let (size, mut stream) = self.read(key).await?;
        if size > max {
            return Err(io::Error::other(format!(
                "{key} has {size} bytes, more than the {max} expected"
            )));
        }
        let mut file = tokio::fs::File::create(dest).await?;
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(to_io)?;
            n += chunk.len() as u64;
            if n > max {
                return Err(io::Error::other(format!("{key} grew past {max} bytes")));
            }
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        Ok(n)
    }

    /// Send the local regular file `path` to `key` (a multipart upload, one part in memory).
    pub async fn upload_file(&self, path: &Path, key: &Key) -> io::Result<()> {
        use tokio::io::AsyncReadExt;
        let file = crate::jobs::runner::open_nofollow(path)?;
        let mut file = tokio::fs::File::from_std(file);
        let mut writer = self.writer(key).await?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await;
                    return Err(e);
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.write_async(&buf[..n]).await {
                writer.abort().await;
                return Err(e);
            }
        }
        writer.complete().await
    }
}

/// One multipart upload being written: bytes are buffered up to one part and sent part by
/// part, so memory stays at one part per upload. Nothing is visible until [`complete`];
/// [`abort`] (or dropping it) leaves no object.
///
/// [`complete`]: ObjectWriter::complete
/// [`abort`]: ObjectWriter::abort
pub struct ObjectWriter {
    upload: Box<dyn MultipartUpload>,
    buf: Vec<u8>,
    part_bytes: usize,
    written: u64,
    handle: tokio::runtime::Handle,
}

impl ObjectWriter {
    /// Bytes accepted so far (buffered or sent).
    pub fn written(&self) -> u64 {
        self.written
    }

    pub async fn write_async(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.buf.extend_from_slice(chunk);
        self.written += chunk.len() as u64;
        while self.buf.len() >= self.part_bytes {
            let rest = self.buf.split_off(self.part_bytes);
            let part = std::mem::replace(&mut self.buf, rest);
            self.upload
                .put_part(PutPayload::from(part))
                .await
                .map_err(to_io)?;
        }
        Ok(())
    }

    /// Send what is buffered as the last part.
    pub async fn flush_async(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let part = std::mem::take(&mut self.buf);
            self.upload
                .put_part(PutPayload::from(part))
                .await
                .map_err(to_io)?;
        }
        Ok(())
    }

    /// Flush and make the object visible.
    pub async fn complete(mut self) -> io::Result<()> {
        self.flush_async().await?;
        self.upload.complete().await.map_err(to_io).map(|_| ())
    }

    /// Give the upload up: its parts are deleted and no object appears. Best effort (a store
    /// that cannot be reached now is left to its lifecycle rule).
    pub async fn abort(mut self) {
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(error = %e, "could not abort a multipart upload; the bucket's lifecycle rule removes it");
        }
    }
}

/// The upload pipeline's disk stage runs on a blocking thread; there the writer waits for each
/// part's request on the runtime that created it.
impl crate::ingest::Sink for ObjectWriter {
    fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        let handle = self.handle.clone();
        handle.block_on(self.write_async(chunk))
    }

    fn flush(&mut self) -> io::Result<()> {
        let handle = self.handle.clone();
        handle.block_on(self.flush_async())
    }
}

/// The bytes a resumable upload holds: the parts that follow each other from offset 0 (a part
/// whose name is not the sum of the sizes before it is ignored: it can only be a stray of a
/// request that raced another for the same offset).
pub fn contiguous(parts: &[ObjectMeta]) -> (u64, Vec<&ObjectMeta>) {
    let mut offset = 0u64;
    let mut chain = Vec::new();
    for p in parts {
        let starts = p.location.filename().and_then(|n| n.parse::<u64>().ok());
        if starts == Some(offset) && p.size > 0 {
            offset += p.size;
            chain.push(p);
        }
    }
    (offset, chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn storage_urls() {
        assert_eq!(
            "file:data/blobs".parse::<StorageUrl>().unwrap(),
            StorageUrl::File("data/blobs".into())
        );
        assert_eq!(
            "s3://bkt/a/b/".parse::<StorageUrl>().unwrap(),
            StorageUrl::S3 {
                bucket: "bkt".into(),
                prefix: "a/b".into()
            }
        );
        assert_eq!(
            "s3://bkt".parse::<StorageUrl>().unwrap(),
            StorageUrl::S3 {
                bucket: "bkt".into(),
                prefix: "".into()
            }
        );
        assert!("s3:///x".parse::<StorageUrl>().is_err());
        assert!("s3://b/../x".parse::<StorageUrl>().is_err());
        assert!("gs://b".parse::<StorageUrl>().is_err());
        assert!("file:".parse::<StorageUrl>().is_err());
    }

    #[tokio::test]
    async fn writes_are_invisible_until_complete_and_blobs_dedupe() {
        let store = S3Store::with_store(Arc::new(InMemory::new()), "p", 5);
        assert!(store.blob_key("../x").is_err());
        // An aborted upload leaves nothing.
        let mut w = store.writer(&store.tmp_key("a")).await.unwrap();
        w.write_async(&vec![1u8; 6 * MIB as usize]).await.unwrap();
        assert!(store.list_area("tmp").await.unwrap().is_empty());
        w.abort().await;
        assert!(store.list_area("").await.unwrap().is_empty());
        // Completed (two parts: 5 MiB and the rest), committed twice: one blob, no temp.
        let sha = "ab".repeat(32);
        for id in ["b", "c"] {
            let mut w = store.writer(&store.tmp_key(id)).await.unwrap();
            w.write_async(&vec![2u8; 6 * MIB as usize]).await.unwrap();
            assert_eq!(w.written(), 6 * MIB);
            w.complete().await.unwrap();
            store.commit_blob(&store.tmp_key(id), &sha).await.unwrap();
        }
        let all = store.list_area("").await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].location.as_ref(), format!("p/blobs/ab/{sha}"));
        assert_eq!(all[0].size, 6 * MIB);
        // Past the copy limit, the same result by streaming.
        let sha2 = "cd".repeat(32);
        let mut w = store.writer(&store.tmp_key("d")).await.unwrap();
        w.write_async(b"big").await.unwrap();
        w.complete().await.unwrap();
        store
            .restream(&store.tmp_key("d"), &store.blob_key(&sha2).unwrap())
            .await
            .unwrap();
        let (n, _) = store.read(&store.blob_key(&sha2).unwrap()).await.unwrap();
        assert_eq!(n, 3);
        store.delete(&store.tmp_key("d")).await.unwrap();
        store.delete_blob(&sha2).await.unwrap();
        store.delete_blob(&sha).await.unwrap();
        store.delete_blob(&sha).await.unwrap(); // gone already: fine
        assert!(store.list_area("").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn resumable_parts_count_only_while_contiguous() {
        let store = S3Store::with_store(Arc::new(InMemory::new()), "", 5);
        for (offset, len) in [(0u64, 3usize), (3, 4), (9, 1)] {
            let mut w = store
                .writer(&store.upload_part_key("up_1", offset))
                .await
                .unwrap();
            w.write_async(&vec![0u8; len]).await.unwrap();
            w.complete().await.unwrap();
        }
        let parts = store.list(&store.upload_prefix("up_1")).await.unwrap();
        let (offset, chain) = contiguous(&parts);
        assert_eq!(offset, 7);
        assert_eq!(chain.len(), 2);
    }
}
