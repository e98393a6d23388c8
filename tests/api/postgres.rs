//! Throwaway PostgreSQL servers for the tests, started with `initdb` and `pg_ctl` on a free
//! port: one shared per test binary (unless PHONEPROOF_TEST_DATABASE_URL names a server) with
//! a fresh database per test, or a dedicated one for tests that stop and start it. A watchdog
//! stops each server once the test process is gone, however it ended.
use std::process::Command;
use std::sync::OnceLock;

use sqlx::Connection;

pub struct PgServer {
    /// URL of the maintenance database, for CREATE DATABASE.
    pub admin_url: String,
    /// Set when we started it: its directory, so it can be stopped and started.
    dir: Option<String>,
    port: u16,
}

static SHARED: OnceLock<PgServer> = OnceLock::new();

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool as an unprivileged user when we are root (initdb refuses root).
fn pg_tool(tool: &str, args: &[&str]) -> std::process::Output {
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

const MISSING: &str = "POSTGRESQL BINARIES MISSING: the PostgreSQL tests need initdb and pg_ctl \
                       (Debian postgresql-15) on PATH, or PHONEPROOF_TEST_DATABASE_URL naming a server";

/// Whether PostgreSQL can be started here. Outside CI a missing installation skips the
/// PostgreSQL tests with a loud message; in CI (`CI=true`) it fails them.
pub fn available() -> bool {
    if binaries_present() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{MISSING}");
    }
    eprintln!("\n!!!!! {MISSING}; SKIPPING this PostgreSQL test !!!!!\n");
    false
}

impl PgServer {
    /// A new server of our own.
    pub fn start_new() -> PgServer {
        if !binaries_present() {
            eprintln!("\n!!!!! {MISSING} !!!!!\n");
            panic!("{MISSING}");
        }
        let mut tag = [0u8; 4];
        getrandom::fill(&mut tag).unwrap();
        let dir = format!(
            "/tmp/phoneproof-pg-{}-{}",
            std::process::id(),
            hex::encode(tag)
        );
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            Command::new("chown")
                .args(["postgres", &dir])
                .status()
                .unwrap();
        }
        let data = format!("{dir}/data");
        let out = pg_tool(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
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
        let me = std::process::id();
        let stop = if is_root() {
            "runuser -u postgres -- pg_ctl"
        } else {
            "pg_ctl"
        };
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 1; done; {stop} stop -D {data} -m immediate >/dev/null 2>&1; rm -rf {dir}"
        );
        // `setsid -f` detaches the watchdog and returns at once.
        Command::new("setsid")
            .args(["-f", "sh", "-c", &script])
            .status()
            .expect("watchdog starts");
        let server = PgServer {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir: Some(dir),
            port,
        };
        server.start();
        server
    }

    /// Starts (or restarts) a server we own.
    pub fn start(&self) {
        let dir = self.dir.as_deref().expect("a server of our own");
        let opts = format!(
            "-p {} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400 -c shared_buffers=64MB",
            self.port
        );
        let (data, log) = (format!("{dir}/data"), format!("{dir}/log"));
        let out = pg_tool(
            "pg_ctl",
            &["start", "-D", &data, "-w", "-l", &log, "-o", &opts],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops a server we own (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        let dir = self.dir.as_deref().expect("a server of our own");
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

    /// A fresh, empty database; returns its URL.
    pub async fn fresh_database(&self) -> String {
        let mut name = [0u8; 8];
        getrandom::fill(&mut name).unwrap();
        let db = format!("t_{}", hex::encode(name));
        let mut conn = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("admin connection");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = self
            .admin_url
            .rsplit_once('/')
            .expect("URL with a database")
            .0;
        format!("{base}/{db}")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = pg_tool(
                "pg_ctl",
                &["stop", "-D", &format!("{dir}/data"), "-m", "immediate"],
            );
        }
    }
}

/// The server the API suite shares on PostgreSQL.
pub fn shared() -> &'static PgServer {
    SHARED.get_or_init(|| match std::env::var("PHONEPROOF_TEST_DATABASE_URL") {
        Ok(url) => PgServer {
            admin_url: url,
            dir: None,
            port: 0,
        },
        Err(_) => PgServer::start_new(),
    })
}

/// A fresh database on the shared server.
pub async fn fresh_database() -> String {
    shared().fresh_database().await
}
