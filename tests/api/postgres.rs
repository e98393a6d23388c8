//! A throwaway PostgreSQL for the tests: started once per test binary with `initdb` and
//! `pg_ctl` on a free port (unless PHONEPROOF_TEST_DATABASE_URL names a server), a fresh
//! database per test, and a watchdog that stops the server when the test process is gone.
use std::process::Command;
use std::sync::OnceLock;

use sqlx::Connection;

pub struct PgServer {
    /// URL of the maintenance database, for CREATE DATABASE.
    pub admin_url: String,
    /// Set when we started it: (data dir, port) for stop/start in fault tests.
    pub owned: Option<(String, u16)>,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool as an unprivileged user when we are root (initdb refuses root).
pub fn pg_tool(tool: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", tool]);
        c
    } else {
        Command::new(tool)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

fn binaries_present() -> bool {
    Command::new("initdb")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn start_throwaway() -> PgServer {
    if !binaries_present() {
        let msg = "POSTGRESQL BINARIES MISSING: the PostgreSQL tests need initdb/pg_ctl (Debian postgresql-15) \
                   or PHONEPROOF_TEST_DATABASE_URL pointing at a server";
        eprintln!("\n!!!!! {msg} !!!!!\n");
        panic!("{msg}");
    }
    let dir = format!("/tmp/phoneproof-pg-{}", std::process::id());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if is_root() {
        Command::new("chown")
            .args(["postgres", &dir])
            .status()
            .unwrap();
    }
    let out = pg_tool(
        "initdb",
        &[
            "-D",
            &format!("{dir}/data"),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ],
    );
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    start_owned(&dir, port);
    // Stops the server once this test process has exited, however it exited.
    let me = std::process::id();
    let stop = if is_root() {
        "runuser -u postgres -- pg_ctl"
    } else {
        "pg_ctl"
    };
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 1; done; {stop} stop -D {dir}/data -m immediate >/dev/null 2>&1; rm -rf {dir}"
    );
    Command::new("setsid")
        .args(["sh", "-c", &script])
        .spawn()
        .expect("watchdog starts");
    PgServer {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        owned: Some((dir, port)),
    }
}

/// Starts (or restarts) the server we own.
pub fn start_owned(dir: &str, port: u16) {
    let opts = format!(
        "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400 -c shared_buffers=64MB"
    );
    let out = pg_tool(
        "pg_ctl",
        &[
            "start",
            "-D",
            &format!("{dir}/data"),
            "-w",
            "-l",
            &format!("{dir}/log"),
            "-o",
            &opts,
        ],
    );
    assert!(
        out.status.success(),
        "pg_ctl start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn stop_owned(dir: &str) {
    let out = pg_tool(
        "pg_ctl",
        &["stop", "-D", &format!("{dir}/data"), "-m", "fast", "-w"],
    );
    assert!(
        out.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| match std::env::var("PHONEPROOF_TEST_DATABASE_URL") {
        Ok(url) => PgServer {
            admin_url: url,
            owned: None,
        },
        Err(_) => start_throwaway(),
    })
}

/// A fresh, empty database on the test server; returns its URL.
pub async fn fresh_database() -> String {
    let admin = &server().admin_url;
    let mut name = [0u8; 8];
    getrandom::fill(&mut name).unwrap();
    let db = format!("t_{}", hex::encode(name));
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .expect("admin connection");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').expect("URL with a database").0;
    format!("{base}/{db}")
}
