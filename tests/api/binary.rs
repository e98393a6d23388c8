//! The real `phoneproof` binary as a child process, for crash and replica tests.
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct BinaryServer {
    child: Child,
    pub base: String,
}

impl BinaryServer {
    /// Starts `phoneproof serve` with these settings and waits until it answers /healthz.
    pub async fn start(env: &[(&str, String)]) -> BinaryServer {
        let server = BinaryServer::spawn(env);
        server.wait_ready(Duration::from_secs(10)).await
    }

    /// Starts `phoneproof serve` without waiting for it.
    pub fn spawn(env: &[(&str, String)]) -> BinaryServer {
        Self::spawn_limited(env, None)
    }

    /// Starts it with at most `open_files` descriptors (`ulimit -n`), as systemd would.
    pub async fn start_with_open_files(env: &[(&str, String)], open_files: u32) -> BinaryServer {
        Self::spawn_limited(env, Some(open_files))
            .wait_ready(Duration::from_secs(10))
            .await
    }

    fn spawn_limited(env: &[(&str, String)], open_files: Option<u32>) -> BinaryServer {
        let port = free_port();
        let bin = env!("CARGO_BIN_EXE_phoneproof");
        let mut cmd = match open_files {
            None => Command::new(bin),
            Some(n) => {
                let mut c = Command::new("bash");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), bin]);
                c
            }
        };
        cmd.arg("serve")
            .env("PHONEPROOF_LISTEN", format!("127.0.0.1:{port}"))
            .env("PHONEPROOF_LOG", "debug,sqlx=warn,hyper=warn,reqwest=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        BinaryServer {
            child: cmd.spawn().expect("binary starts"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until the server answers /healthz; panics with its log after `limit`.
    pub async fn wait_ready(self, limit: Duration) -> BinaryServer {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if reqwest::get(format!("{}/healthz", self.base)).await.is_ok() {
                return self;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = self.kill();
        panic!("server did not come up:\n{log}");
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits (up to `limit`) for the exit; returns whether it exited cleanly.
    pub async fn terminate(mut self, limit: Duration) -> (bool, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut log = String::new();
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut log)
                    .unwrap();
                return (status.success(), log);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (false, self.kill())
    }

    /// SIGKILL, and the log it wrote.
    pub fn kill(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        log
    }
}

/// `phoneproof token` against the same data dir / database.
pub fn token(env: &[(&str, String)], user: &str) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoneproof"));
    cmd.args(["token", "--user", user, "--org", "1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
