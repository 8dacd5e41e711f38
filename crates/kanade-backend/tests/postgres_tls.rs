//! TLS to Postgres with libpq's `sslmode` meanings, against a real cluster that refuses plain
//! TCP (so every connection that gets in was encrypted) and a CA made in the test.

mod common;

use kanade_backend::db::Db;
use kanade_testkit::PgCluster;
use kanade_testkit::pki::Ca;

#[tokio::test(flavor = "multi_thread")]
async fn each_sslmode_connects_or_refuses_as_libpq_would() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let stranger = Ca::new(dir.path(), "stranger");
    // Valid for "localhost" only: reached as 127.0.0.1 the name does not match.
    let (cert, key) = ca.issue(dir.path(), "db", &["localhost"]);
    let pg = PgCluster::start_tls(&cert, &key).unwrap();
    pg.psql("postgres", "CREATE DATABASE tls").unwrap();
    let url = |host: &str, params: &str| format!("postgres://kanade@{host}:{}/tls?{params}", pg.port());
    let ca_path = ca.path.display().to_string();
    let stranger_path = stranger.path.display().to_string();

    let cases: Vec<(String, Result<(), &str>)> = vec![
        (
            url("127.0.0.1", "sslmode=disable"),
            Err(
                "rejects connection for host \"127.0.0.1\", user \"kanade\", database \"tls\", no encryption",
            ),
        ),
        (url("127.0.0.1", ""), Ok(())),
        (url("127.0.0.1", "sslmode=require"), Ok(())),
        (url("localhost", &format!("sslmode=verify-full&sslrootcert={ca_path}")), Ok(())),
        (url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca_path}")), Err("not valid for name")),
        (url("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca_path}")), Ok(())),
        (url("localhost", &format!("sslmode=verify-full&sslrootcert={stranger_path}")), Err("UnknownIssuer")),
        (url("127.0.0.1", &format!("sslmode=require&sslrootcert={stranger_path}")), Err("UnknownIssuer")),
        // As libpq: with a root file, even the default mode checks the chain.
        (url("127.0.0.1", &format!("sslrootcert={stranger_path}")), Err("UnknownIssuer")),
        (url("127.0.0.1", "sslmode=verify-ca"), Err("sslmode=verify-ca needs sslrootcert=")),
        (
            url("127.0.0.1", "sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem"),
            Err("cannot read sslrootcert /nonexistent/ca.pem"),
        ),
        (url("127.0.0.1", "sslmode=on"), Err("sslmode=\"on\" is not one of")),
    ];
    for (url, want) in cases {
        let got = Db::connect_postgres(&url).await.map(|_| ()).map_err(|e| e.to_string());
        match (&got, want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(part)) if e.contains(part) => {}
            _ => panic!("{url}: got {got:?}, want {want:?}"),
        }
    }
}
