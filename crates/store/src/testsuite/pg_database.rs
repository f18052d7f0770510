//! A PostgreSQL database of a test's own on the server
//! `KONTEXTUAL_TEST_DATABASE_URL` names, dropped when the guard is.

/// A fresh, empty database; [`PgTestDatabase::url`] connects to it.
pub struct PgTestDatabase {
    admin: String,
    name: String,
    pub url: String,
}

impl PgTestDatabase {
    /// Creates the database, or says the test is skipped (`None`) when no
    /// server is configured — which fails instead when CI sets
    /// `CI_REQUIRE_POSTGRES`.
    pub fn create() -> Option<PgTestDatabase> {
        let Ok(admin) = std::env::var("KONTEXTUAL_TEST_DATABASE_URL") else {
            eprintln!(
                "SKIPPED: KONTEXTUAL_TEST_DATABASE_URL is not set (e.g. postgres://postgres@127.0.0.1/postgres)"
            );
            assert!(
                std::env::var_os("CI_REQUIRE_POSTGRES").is_none(),
                "CI requires the PostgreSQL tests"
            );
            return None;
        };
        let name = format!("kx_test_{}", uuid::Uuid::now_v7().simple());
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("connect");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Some(PgTestDatabase { admin, name, url })
    }
}

impl Drop for PgTestDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
