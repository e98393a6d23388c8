//! `/metrics`: its label values come from fixed sets, whatever the clients send.
use futures::StreamExt;

use crate::helpers::*;

#[tokio::test]
async fn made_up_methods_are_counted_as_other_and_do_not_grow_the_metrics() {
    let app = spawn_app().await;
    let methods = (0..2_000).map(|i| format!("MADEUP{i}"));
    futures::stream::iter(methods)
        .for_each_concurrent(16, |m| {
            let req = app.client.request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}/healthz", app.address),
            );
            async move {
                let status = req.send().await.unwrap().status();
                assert_eq!(status, 405, "{m}");
            }
        })
        .await;
    let text = app.metrics_text().await;
    assert!(
        text.len() < 50 * 1024,
        "/metrics is {} bytes after 2,000 made-up methods",
        text.len()
    );
    assert!(!text.contains("MADEUP"), "a made-up method became a label");
    assert!(
        text.contains(r#"phoneproof_http_request_duration_seconds_count{route="/healthz",method="other",status="405"} 2000"#),
        "{text}"
    );
    app.stop().await;
}
