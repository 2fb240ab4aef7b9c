//! SQLite store (placeholder until implemented).
pub struct SqliteStore;
impl SqliteStore {
    pub async fn open(_path: &std::path::Path) -> crate::Result<Self> { unimplemented!() }
}
