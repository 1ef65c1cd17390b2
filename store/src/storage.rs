//! Where the Parquet files, watermarks and compaction logs live: one object store for the
//! process. By default it is the data directory, through `object_store`'s local file system
//! made durable (`DurableLocal`: every new object is fsync'd, and so is its directory, before
//! the put returns); with `[storage] url = "s3://bucket/prefix"` it is an S3 bucket. Both are
//! laid out alike (see [`crate::paths::object`]), so the embedded default and a cluster differ
//! only in the URL.
//!
//! The write-ahead log is not here: it stays on local disk, so an acknowledgement still means
//! fsync'd, whatever the object store does meanwhile.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::execution::object_store::ObjectStoreUrl;
use futures::stream::{BoxStream, StreamExt as _, TryStreamExt as _};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt as _, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, UploadPart,
};

use crate::error::{Result, StoreError};

/// The object store of the process, and how DataFusion finds it.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// A URL of this storage's own (`sightline://store-<n>`): every query engine and merge
    /// registers the store under it, and the scans of files name it.
    url: ObjectStoreUrl,
    /// The directory behind the store, when it is the local file system.
    local_root: Option<PathBuf>,
    /// What the storage is, for messages: `file:///…` or `s3://bucket/prefix`.
    location: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

static STORAGES: AtomicU64 = AtomicU64::new(0);

fn own_url() -> ObjectStoreUrl {
    let n = STORAGES.fetch_add(1, Ordering::Relaxed);
    // A host name of letters, digits and a dash always parses.
    ObjectStoreUrl::parse(format!("sightline://store-{n}")).unwrap_or_else(|_| {
        ObjectStoreUrl::local_filesystem() // unreachable: the URL above is well formed
    })
}

/// How to reach an S3 bucket (the keys of `[storage]` that are about it). What is not given
/// comes from the standard AWS environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `s3://bucket` or `s3://bucket/prefix`.
    pub url: String,
    /// An S3-compatible server's URL (`http://127.0.0.1:8333`); plain HTTP is allowed only when
    /// it says `http://`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl Storage {
    /// The local directory `dir` (made if missing) as the store.
    ///
    /// # Errors
    /// When the directory cannot be made or resolved.
    pub fn local(dir: &Path) -> Result<Self> {
        sightline_common::durable::create_dir_durable(dir).map_err(|e| StoreError::io(dir, e))?;
        let root = std::fs::canonicalize(dir).map_err(|e| StoreError::io(dir, e))?;
        let inner = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| StoreError::io(dir, std::io::Error::other(e)))?
            .with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(DurableLocal {
                inner,
                root: root.clone(),
            }),
            url: own_url(),
            location: format!("file://{}", root.display()),
            local_root: Some(root),
        })
    }

    /// An S3 bucket (and prefix) as the store. Must be called inside the Tokio runtime that
    /// will drive its connections: requests made from other runtimes (the query engine's, a
    /// merge's) are carried out on it.
    ///
    /// # Errors
    /// [`StoreError::Storage`] for a URL or settings the S3 client refuses.
    pub fn s3(settings: &S3Settings) -> Result<Self> {
        let url = settings.url.trim_end_matches('/');
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            StoreError::Storage(format!("storage.url {url:?} is not an s3:// URL"))
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Storage(format!(
                "storage.url {url:?} names no bucket"
            )));
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(object_store::RetryConfig {
                max_retries: 5,
                retry_timeout: std::time::Duration::from_secs(30),
                ..Default::default()
            });
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            builder = builder
                .with_http_connector(object_store::client::SpawnedReqwestConnector::new(handle));
        }
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(region) = &settings.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &settings.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let s3 = builder
            .build()
            .map_err(|e| StoreError::Storage(format!("storage.url {url:?}: {e}")))?;
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(s3)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                s3,
                ObjectPath::from(prefix),
            ))
        };
        Ok(Self {
            store,
            url: own_url(),
            local_root: None,
            location: url.to_string(),
        })
    }

    /// Any object store (tests, tools): `location` names it in messages.
    pub fn from_store(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Self {
        Self {
            store,
            url: own_url(),
            local_root: None,
            location: location.into(),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The URL DataFusion finds the store under (see [`Storage::register`]).
    pub fn url(&self) -> &ObjectStoreUrl {
        &self.url
    }

    /// `file:///…` or `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The directory behind the store, if it is the local file system.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// Where an object is on local disk, if the store is the local file system.
    pub fn local_path(&self, path: &ObjectPath) -> Option<PathBuf> {
        let root = self.local_root.as_ref()?;
        Some(
            path.parts()
                .fold(root.clone(), |p, part| p.join(part.as_ref())),
        )
    }

    /// Makes the store known to a DataFusion runtime under [`Storage::url`].
    pub fn register(&self, env: &datafusion::execution::runtime_env::RuntimeEnv) {
        env.register_object_store(self.url.as_ref(), self.store.clone());
    }

    /// Reads a whole object; `None` if there is none.
    ///
    /// # Errors
    /// [`StoreError::Object`] when the store cannot answer.
    pub async fn read(&self, path: &ObjectPath) -> Result<Option<bytes::Bytes>> {
        match self.store.get(path).await {
            Ok(got) => Ok(Some(got.bytes().await.map_err(|e| self.error(path, e))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(path, e)),
        }
    }

    /// Writes a whole object (replacing any); durable when this returns.
    ///
    /// # Errors
    /// [`StoreError::Object`] when the store refuses it.
    pub async fn write(&self, path: &ObjectPath, bytes: bytes::Bytes) -> Result<()> {
        self.store
            .put(path, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(path, e))
    }

    /// Deletes an object; one that is not there is no error.
    ///
    /// # Errors
    /// [`StoreError::Object`] when the store refuses it.
    pub async fn delete(&self, path: &ObjectPath) -> Result<()> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(path, e)),
        }
    }

    /// Every object under `prefix`.
    ///
    /// # Errors
    /// [`StoreError::Object`] when the store cannot list.
    pub async fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>> {
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))
    }

    /// The names directly under `prefix` that hold objects (its "directories").
    ///
    /// # Errors
    /// [`StoreError::Object`] when the store cannot list.
    pub async fn children(&self, prefix: Option<&ObjectPath>) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| self.error(&prefix.cloned().unwrap_or_default(), e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Removes what a crash in the middle of a local put left under `prefix`: the staged
    /// uploads (`<name>#<n>`, which listings do not show). Nothing to do on S3, where an
    /// unfinished upload is never visible (a bucket lifecycle rule drops its parts).
    pub fn sweep_staged(&self, prefix: &ObjectPath) {
        let Some(dir) = self.local_path(prefix) else {
            return;
        };
        fn walk(dir: &Path) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&path);
                } else if entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.rsplit_once('#'))
                    .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                {
                    tracing::warn!(path = %path.display(), "removing an unfinished upload left by a crash");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        walk(&dir);
    }

    /// An error of the store about `path`, with where the store is.
    pub fn error(&self, path: &ObjectPath, e: object_store::Error) -> StoreError {
        StoreError::Object {
            path: format!("{}/{path}", self.location),
            source: e,
        }
    }
}

/// `object_store`'s local file system, durable: a put writes a staged file beside its target,
/// fsyncs it, renames (or, for [`PutMode::Create`], hard-links) it into place and fsyncs the
/// directory, so a power loss leaves the old object or the whole new one; a delete, copy or
/// rename fsyncs the directories it changed. Reads and listings are the inner store's.
#[derive(Debug)]
struct DurableLocal {
    inner: LocalFileSystem,
    root: PathBuf,
}

impl std::fmt::Display for DurableLocal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DurableLocal({})", self.root.display())
    }
}

fn io_error(path: &Path, e: std::io::Error) -> object_store::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        object_store::Error::NotFound {
            path: path.display().to_string(),
            source: Box::new(e),
        }
    } else {
        object_store::Error::Generic {
            store: "DurableLocal",
            source: format!("{}: {e}", path.display()).into(),
        }
    }
}

fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new("."))
}

/// A new staged file beside `dest` (`<dest>#<n>`, hidden from listings), its directory made.
fn staged_file(dest: &Path) -> std::result::Result<(std::fs::File, PathBuf), object_store::Error> {
    let dir = parent_of(dest);
    sightline_common::durable::create_dir_durable(dir).map_err(|e| io_error(dir, e))?;
    for n in 1u32.. {
        let mut name = dest.as_os_str().to_owned();
        name.push(format!("#{n}"));
        let staged = PathBuf::from(name);
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&staged)
        {
            Ok(f) => return Ok((f, staged)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&staged, e)),
        }
    }
    Err(io_error(
        dest,
        std::io::Error::other("no free staging name"),
    ))
}

/// Moves a written, fsync'd staged file into place and makes that durable.
fn publish(
    staged: &Path,
    dest: &Path,
    create: bool,
) -> std::result::Result<(), object_store::Error> {
    if create {
        let linked = std::fs::hard_link(staged, dest);
        let _ = std::fs::remove_file(staged);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(object_store::Error::AlreadyExists {
                    path: dest.display().to_string(),
                    source: Box::new(e),
                });
            }
            Err(e) => return Err(io_error(dest, e)),
        }
    } else if let Err(e) = std::fs::rename(staged, dest) {
        let _ = std::fs::remove_file(staged);
        return Err(io_error(dest, e));
    }
    sightline_common::durable::sync_dir(parent_of(dest)).map_err(|e| io_error(dest, e))
}

/// fsyncs the nearest directory of `path` that still exists (the inner store removes emptied
/// directories after a delete).
fn sync_nearest_dir(path: &Path, root: &Path) {
    let mut dir = parent_of(path);
    while !dir.is_dir() && dir.starts_with(root) && dir != root {
        dir = parent_of(dir);
    }
    if let Err(e) = sightline_common::durable::sync_dir(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot sync a directory after a delete");
    }
}

#[allow(
    clippy::disallowed_methods,
    reason = "file system work runs in spawn_blocking, awaited right away"
)]
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, object_store::Error> + Send + 'static,
) -> std::result::Result<T, object_store::Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "DurableLocal",
            source: Box::new(e),
        })?
}

#[async_trait]
impl ObjectStore for DurableLocal {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create = match opts.mode {
            PutMode::Overwrite => false,
            PutMode::Create => true,
            PutMode::Update(_) => {
                return Err(object_store::Error::NotImplemented {
                    operation: "put with PutMode::Update".into(),
                    implementer: self.to_string(),
                });
            }
        };
        let dest = self.inner.path_to_filesystem(location)?;
        blocking(move || {
            let (mut file, staged) = staged_file(&dest)?;
            let written = payload
                .iter()
                .try_for_each(|chunk| file.write_all(chunk))
                .and_then(|()| file.sync_all());
            drop(file);
            if let Err(e) = written {
                let _ = std::fs::remove_file(&staged);
                return Err(io_error(&staged, e));
            }
            publish(&staged, &dest, create)
        })
        .await?;
        let meta = self.inner.head(location).await?;
        Ok(PutResult {
            e_tag: meta.e_tag,
            version: None,
        })
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() {
            return Err(object_store::Error::NotImplemented {
                operation: "multipart put with attributes".into(),
                implementer: self.to_string(),
            });
        }
        let dest = self.inner.path_to_filesystem(location)?;
        let (file, staged) = {
            let dest = dest.clone();
            blocking(move || staged_file(&dest)).await?
        };
        Ok(Box::new(DurableUpload {
            file: Arc::new(Mutex::new(Some(file))),
            staged: Some(staged),
            dest,
            offset: 0,
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        let root = self.root.clone();
        let resolve = self.inner.clone();
        self.inner
            .delete_stream(locations)
            .and_then(move |deleted| {
                let fs = resolve.path_to_filesystem(&deleted);
                let root = root.clone();
                async move {
                    let fs = fs?;
                    blocking(move || {
                        sync_nearest_dir(&fs, &root);
                        Ok(())
                    })
                    .await?;
                    Ok(deleted)
                }
            })
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        let dest = self.inner.path_to_filesystem(to)?;
        blocking(move || {
            std::fs::File::open(&dest)
                .and_then(|f| f.sync_all())
                .and_then(|()| sightline_common::durable::sync_dir(parent_of(&dest)))
                .map_err(|e| io_error(&dest, e))
        })
        .await
    }

    async fn rename_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await?;
        let (src, dest) = (
            self.inner.path_to_filesystem(from)?,
            self.inner.path_to_filesystem(to)?,
        );
        let root = self.root.clone();
        blocking(move || {
            sightline_common::durable::sync_dir(parent_of(&dest))
                .map_err(|e| io_error(&dest, e))?;
            sync_nearest_dir(&src, &root);
            Ok(())
        })
        .await
    }
}

/// A multipart upload to the local file system: parts are written into a staged file at
/// their offsets; completing fsyncs it and moves it into place durably.
#[derive(Debug)]
struct DurableUpload {
    file: Arc<Mutex<Option<std::fs::File>>>,
    staged: Option<PathBuf>,
    dest: PathBuf,
    offset: u64,
}

#[async_trait]
impl MultipartUpload for DurableUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.offset;
        self.offset += data.content_length() as u64;
        let file = self.file.clone();
        let dest = self.dest.clone();
        Box::pin(blocking(move || {
            let mut guard = file.lock().unwrap_or_else(|e| e.into_inner());
            let f = guard.as_mut().ok_or_else(|| {
                io_error(
                    &dest,
                    std::io::Error::other("the upload is already finished"),
                )
            })?;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| data.iter().try_for_each(|chunk| f.write_all(chunk)))
                .map_err(|e| io_error(&dest, e))
        }))
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let staged = self
            .staged
            .take()
            .ok_or_else(|| io_error(&self.dest, std::io::Error::other("upload finished")))?;
        let (file, dest) = (self.file.clone(), self.dest.clone());
        blocking(move || {
            let f = file.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(f) = f
                && let Err(e) = f.sync_all()
            {
                let _ = std::fs::remove_file(&staged);
                return Err(io_error(&staged, e));
            }
            publish(&staged, &dest, false)
        })
        .await?;
        Ok(PutResult {
            e_tag: None,
            version: None,
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        if let Some(staged) = self.staged.take() {
            self.file.lock().unwrap_or_else(|e| e.into_inner()).take();
            blocking(move || std::fs::remove_file(&staged).map_err(|e| io_error(&staged, e)))
                .await?;
        }
        Ok(())
    }
}

impl Drop for DurableUpload {
    fn drop(&mut self) {
        if let Some(staged) = self.staged.take() {
            let _ = std::fs::remove_file(staged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_local_store_is_the_data_directory_and_leaves_nothing_staged() {
        let dir = tempfile::tempdir().expect("tempdir");
        block(async {
            let s = Storage::local(dir.path()).expect("local");
            let p = ObjectPath::from("default/spans/date=2025-11-28/hour=08/a.parquet");
            s.write(&p, bytes::Bytes::from_static(b"abc"))
                .await
                .expect("put");
            let on_disk = s.local_path(&p).expect("local path");
            assert_eq!(std::fs::read(&on_disk).expect("file"), b"abc");
            assert!(on_disk.starts_with(std::fs::canonicalize(dir.path()).expect("canon")));
            // Create refuses an existing object, Overwrite replaces it.
            let create = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            let e = s
                .store()
                .put_opts(&p, "x".into(), create.clone())
                .await
                .expect_err("exists");
            assert!(
                matches!(e, object_store::Error::AlreadyExists { .. }),
                "{e}"
            );
            s.write(&p, bytes::Bytes::from_static(b"de"))
                .await
                .expect("overwrite");
            assert_eq!(s.read(&p).await.expect("read").as_deref(), Some(&b"de"[..]));
            // A multipart upload appears whole when completed, not before.
            let big = ObjectPath::from("default/spans/date=2025-11-28/hour=08/b.parquet");
            let mut up = s.store().put_multipart(&big).await.expect("multipart");
            up.put_part(vec![1u8; 10].into()).await.expect("part");
            up.put_part(vec![2u8; 5].into()).await.expect("part");
            assert_eq!(
                s.read(&big).await.expect("read"),
                None,
                "not before completion"
            );
            up.complete().await.expect("complete");
            let got = s.read(&big).await.expect("read").expect("there");
            assert_eq!(got.len(), 15);
            assert_eq!(got[10], 2);
            let listed = s.list(&ObjectPath::from("default")).await.expect("list");
            assert_eq!(listed.len(), 2, "{listed:?}");
            assert_eq!(s.children(None).await.expect("children"), ["default"]);
            // An upload dropped unfinished leaves nothing.
            let mut gone = s
                .store()
                .put_multipart(&ObjectPath::from("x/c"))
                .await
                .expect("mp");
            gone.put_part(vec![0u8; 3].into()).await.expect("part");
            drop(gone);
            s.delete(&p).await.expect("delete");
            s.delete(&p).await.expect("deleting what is gone is fine");
            s.delete(&big).await.expect("delete");
            assert!(
                !dir.path().join("default/spans/date=2025-11-28").exists(),
                "emptied partitions go with their last file"
            );
        });
        let left: Vec<_> = walk(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_crash_mid_put_leaves_a_staged_file_that_the_sweep_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::local(dir.path()).expect("local");
        let part = dir.path().join("default/logs/date=2025-11-28/hour=08");
        std::fs::create_dir_all(&part).expect("mkdir");
        std::fs::write(part.join("a.parquet#1"), b"half").expect("write");
        std::fs::write(part.join("b#tag.parquet"), b"kept").expect("write");
        s.sweep_staged(&ObjectPath::from("default/logs"));
        assert!(!part.join("a.parquet#1").exists());
        assert!(
            part.join("b#tag.parquet").exists(),
            "only <name>#<digits> is staging"
        );
    }

    #[test]
    fn s3_urls_are_checked() {
        let bad = |url: &str| {
            Storage::s3(&S3Settings {
                url: url.into(),
                endpoint: Some("http://127.0.0.1:1".into()),
                region: Some("us-east-1".into()),
                ..Default::default()
            })
            .expect_err(url)
            .to_string()
        };
        assert!(bad("gs://bucket").contains("not an s3:// URL"));
        assert!(bad("s3:///prefix").contains("names no bucket"));
        let ok = Storage::s3(&S3Settings {
            url: "s3://bucket/some/prefix/".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: Some("us-east-1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
        })
        .expect("s3");
        assert_eq!(ok.location(), "s3://bucket/some/prefix");
        assert_eq!(ok.local_root(), None);
        assert_ne!(ok.url(), Storage::from_store(ok.store().clone(), "x").url());
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
        out
    }
}
