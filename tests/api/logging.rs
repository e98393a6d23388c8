//! The log the real binary writes when its stderr is not a terminal.
use std::time::Duration;

use crate::binary::BinaryServer;

#[tokio::test]
async fn a_log_written_to_a_pipe_has_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = BinaryServer::start(&[
        ("PHONEPROOF_DATA_DIR", dir.path().display().to_string()),
        ("PHONEPROOF_LOG_FORMAT", "text".into()),
        // An empty NO_COLOR means "colours allowed": only the pipe may turn them off.
        ("NO_COLOR", String::new()),
    ])
    .await;
    let (clean, log) = server.terminate(Duration::from_secs(10)).await;
    assert!(clean, "{log}");
    assert!(log.contains("listening on"), "the log has lines: {log}");
    assert!(
        !log.contains("\x1b["),
        "ANSI escapes in a piped log: {log:?}"
    );
}
