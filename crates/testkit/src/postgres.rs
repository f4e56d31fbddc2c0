//! The PostgreSQL server the tests use.

/// `THULIUM_TEST_POSTGRES`, or the machine's server (`postgres://postgres@127.0.0.1:5432/test`).
pub fn url() -> String {
    std::env::var("THULIUM_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether a test that cannot reach the server must fail rather than say it did not
/// run: in CI (`CI` set) or when `THULIUM_REQUIRE_POSTGRES` is set.
pub fn required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("THULIUM_REQUIRE_POSTGRES").is_some()
}

/// A schema name of its own for one test, so that tests running at once never meet:
/// `t_`, up to 24 characters of `test`, and a random suffix (40 characters at most,
/// as the inbox allows).
pub fn fresh_schema(test: &str) -> String {
    let short: String = test.chars().take(24).collect();
    format!("t_{short}_{:08x}", fastrand::u32(..))
}
