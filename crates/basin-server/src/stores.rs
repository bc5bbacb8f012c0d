//! The object stores a served query may reach: the lake's, read-only, and nothing else. The
//! statement gate ([`crate::statement`]) keeps paths and writes out of what clients send; this
//! is the wall behind it, so that whatever a statement plans into, the engine can neither
//! write a byte nor open a file or URL outside the lake's root.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreRegistry;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use url::Url;

use crate::statement::Refused;

/// Scheme deltalake registers each table's own store under (rooted at that table).
const DELTA_SCHEME: &str = "delta-rs";

/// The registry a role's sessions resolve object stores through: the lake's stores, each
/// read-only and, for the store holding the lake's root, limited to paths under the root.
#[derive(Debug)]
pub struct LakeStores {
    inner: Arc<dyn ObjectStoreRegistry>,
    root: Url,
}

impl LakeStores {
    pub fn new(inner: Arc<dyn ObjectStoreRegistry>, root: &Url) -> LakeStores {
        LakeStores { inner, root: root.clone() }
    }

    /// The part of the root's path inside its store (`tmp/x/lake` for `file:///tmp/x/lake/`).
    fn root_prefix(&self) -> Path {
        Path::from_url_path(self.root.path()).unwrap_or_default()
    }
}

fn outside_lake() -> DataFusionError {
    DataFusionError::External(Box::new(Refused::path()))
}

impl ObjectStoreRegistry for LakeStores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        // deltalake registers a table's store when it plans a scan of the table; anything else
        // would come from a statement the gate let through, which no allowed statement does.
        if url.scheme() == DELTA_SCHEME {
            return self.inner.register_store(url, store);
        }
        tracing::warn!(scheme = url.scheme(), "object store registration refused by the SQL endpoint");
        None
    }

    fn deregister_store(&self, _url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        Err(outside_lake())
    }

    fn get_store(&self, url: &Url) -> datafusion::error::Result<Arc<dyn ObjectStore>> {
        if url.scheme() == DELTA_SCHEME {
            let store = self.inner.get_store(url)?;
            return Ok(Arc::new(ReadOnly { inner: store, under: None }));
        }
        let same_store = url.scheme() == self.root.scheme()
            && url.host_str() == self.root.host_str()
            && url.port() == self.root.port();
        if !same_store {
            return Err(outside_lake());
        }
        let store = self.inner.get_store(url)?;
        Ok(Arc::new(ReadOnly { inner: store, under: Some(self.root_prefix()) }))
    }
}

/// A store that reads, lists and heads objects under `under` (anywhere when `None`) and
/// refuses every write, copy, rename and delete.
#[derive(Debug)]
struct ReadOnly {
    inner: Arc<dyn ObjectStore>,
    under: Option<Path>,
}

impl std::fmt::Display for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadOnly({})", self.inner)
    }
}

fn read_only() -> object_store::Error {
    object_store::Error::PermissionDenied {
        path: String::new(),
        source: "the SQL endpoint is read-only: no statement writes to the lake or the server's files".into(),
    }
}

impl ReadOnly {
    fn check(&self, location: &Path) -> object_store::Result<()> {
        match &self.under {
            Some(root) if !location.prefix_matches(root) => Err(object_store::Error::PermissionDenied {
                path: String::new(),
                source: "the SQL endpoint reads only the lake's tables".into(),
            }),
            _ => Ok(()),
        }
    }

    /// `prefix`, unless it reaches outside the lake (listing the store's root lists the lake).
    fn scope(&self, prefix: Option<&Path>) -> object_store::Result<Option<Path>> {
        match (prefix, &self.under) {
            (Some(p), _) => self.check(p).map(|_| Some(p.clone())),
            (None, under) => Ok(under.clone()),
        }
    }
}

#[async_trait]
impl ObjectStore for ReadOnly {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(read_only())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(read_only())
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.check(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.check(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(read_only())).boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.scope(prefix) {
            Ok(p) => self.inner.list(p.as_ref()),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.scope(prefix) {
            Ok(p) => self.inner.list_with_offset(p.as_ref(), offset),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let p = self.scope(prefix)?;
        self.inner.list_with_delimiter(p.as_ref()).await
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(read_only())
    }

    async fn rename_opts(&self, _: &Path, _: &Path, _: object_store::RenameOptions) -> object_store::Result<()> {
        Err(read_only())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::object_store::DefaultObjectStoreRegistry;
    use object_store::ObjectStoreExt;

    use super::*;

    /// A lake under a temporary folder, a file beside it, and the registry a role would get.
    fn setup() -> (tempfile::TempDir, LakeStores, Url) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lake/silver/t")).unwrap();
        std::fs::write(dir.path().join("lake/silver/t/part.parquet"), b"data").unwrap();
        std::fs::write(dir.path().join("secret.txt"), b"secret").unwrap();
        let root = Url::from_directory_path(dir.path().join("lake")).unwrap();
        let stores = LakeStores::new(Arc::new(DefaultObjectStoreRegistry::new()), &root);
        (dir, stores, root)
    }

    #[tokio::test]
    async fn the_lake_is_readable_and_nothing_else_is_reachable_or_writable() {
        let (dir, stores, root) = setup();
        let store = stores.get_store(&root).unwrap();
        let inside = Path::from_filesystem_path(dir.path().join("lake/silver/t/part.parquet")).unwrap();
        assert_eq!(&store.get(&inside).await.unwrap().bytes().await.unwrap()[..], b"data");
        let outside = Path::from_filesystem_path(dir.path().join("secret.txt")).unwrap();
        let e = store.get(&outside).await.unwrap_err();
        assert!(matches!(e, object_store::Error::PermissionDenied { .. }), "{e}");
        assert!(!e.to_string().contains("secret"), "the refusal names no path: {e}");
        assert!(store.head(&Path::from("etc/passwd")).await.is_err());
        // Listing the store's root lists the lake, not the disk.
        let listed: Vec<_> = store.list(None).map(|m| m.unwrap().location.to_string()).collect().await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert!(store.list(Some(&Path::from("etc"))).next().await.unwrap().is_err());
        // No write of any kind, inside the lake or out.
        let new =
            Path::from_filesystem_path(dir.path().join("lake/silver/t")).unwrap().join("_delta_log").join("9.json");
        assert!(store.put(&new, PutPayload::from_static(b"{}")).await.is_err());
        assert!(store.delete(&inside).await.is_err());
        assert!(store.copy(&inside, &new).await.is_err());
        assert!(store.put_multipart(&new).await.is_err());
        assert!(!dir.path().join("lake/silver/t/_delta_log").exists());
        assert!(dir.path().join("lake/silver/t/part.parquet").exists());
        // Stores other than the lake's are not handed out, nor can a statement register one.
        for other in ["http://evil.example/x", "s3://bucket/", "memory:///"] {
            assert!(stores.get_store(&Url::parse(other).unwrap()).is_err(), "{other}");
        }
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        stores.register_store(&Url::parse("http://evil.example/").unwrap(), memory);
        assert!(stores.get_store(&Url::parse("http://evil.example/x").unwrap()).is_err());
    }

    /// The wall behind the statement gate: statements the gate refuses, planned and run
    /// directly in a session over these stores, still neither read a file outside the lake nor
    /// write anywhere.
    #[tokio::test]
    async fn statements_past_the_gate_still_cannot_read_or_write_files() {
        use datafusion::execution::runtime_env::RuntimeEnvBuilder;
        use datafusion::prelude::{SessionConfig, SessionContext};

        let (dir, stores, _) = setup();
        std::fs::write(dir.path().join("secret.csv"), "user,password\nroot,hunter2\n").unwrap();
        let runtime = RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(stores)).build_arc().unwrap();
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        let before = std::fs::read_dir(dir.path().join("lake/silver/t")).unwrap().count();
        let outside = dir.path().join("secret.csv").display().to_string();
        let inside = dir.path().join("lake/silver/t/new.csv").display().to_string();
        for sql in [
            format!("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '{outside}'"),
            "CREATE EXTERNAL TABLE q STORED AS CSV LOCATION '/etc/passwd'".to_string(),
            format!("COPY (SELECT 'x' AS a) TO '{inside}' STORED AS CSV"),
            format!("COPY (SELECT 'x' AS a) TO '{}/out.csv' STORED AS CSV", dir.path().display()),
        ] {
            let outcome = async { ctx.sql(&sql).await?.collect().await }.await;
            let e = outcome.expect_err(&sql).to_string();
            assert!(!e.contains("hunter2") && !e.contains("root:"), "{sql}: {e}");
        }
        assert!(ctx.sql("SELECT * FROM p").await.is_err(), "nothing was registered");
        assert_eq!(std::fs::read_dir(dir.path().join("lake/silver/t")).unwrap().count(), before);
        assert!(!dir.path().join("out.csv").exists());
    }
}
