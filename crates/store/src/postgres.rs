//! PostgreSQL store (placeholder until implemented).
pub struct PostgresStore;
impl PostgresStore {
    pub async fn open(_url: &str) -> crate::Result<Self> { unimplemented!() }
}
