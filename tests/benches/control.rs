//! Control plane latency (`cargo bench --bench control`): a collector in-process on port 0,
//! Claude Code `http` hook calls over real HTTP.
//! 1. POST resume -> the decision reaches a hook call held by a pause (the held request returns).
//! 2. A hook call with nothing pending: `POST /hooks/claude` vs the same record as OTLP to
//!    `/v1/logs` (what the decision adds to the common path).

use std::time::{Duration, Instant};

use agent_console::app;
use agent_console::config::ServeArgs;
use serde_json::json;

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, v: &mut [f64]) {
    println!(
        "{name}: n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        pct(v, 0.5),
        pct(v, 0.9),
        pct(v, 0.99),
        pct(v, 1.0)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = ServeArgs::defaults();
        args.data_dir = dir.path().to_path_buf();
        args.grpc_addr = "127.0.0.1:0".parse().expect("addr");
        args.http_addr = "127.0.0.1:0".parse().expect("addr");
        args.pg_addr = "127.0.0.1:0".parse().expect("addr");
        let running = app::start(args).await.expect("start");
        let base = format!("http://{}", running.http_addr);
        let client = reqwest::Client::new();
        let hook = |body: serde_json::Value| {
            let c = client.clone();
            let url = format!("{base}/hooks/claude");
            async move { c.post(url).json(&body).send().await.expect("hook").bytes().await.expect("body") }
        };
        let session = "bench-session";
        hook(json!({"session_id": session, "hook_event_name": "UserPromptSubmit", "prompt": "x"})).await;
        let n = 200;
        let mut resume = Vec::with_capacity(n);
        let mut post_only = Vec::with_capacity(n);
        for i in 0..n {
            let r = client
                .post(format!("{base}/api/sessions/{session}/commands"))
                .json(&json!({"kind": "pause"}))
                .send()
                .await
                .expect("pause");
            assert_eq!(r.status(), 201);
            let held = tokio::spawn(hook(json!({"session_id": session, "hook_event_name": "PreToolUse",
                "tool_name": "Bash", "tool_use_id": format!("toolu_{i}"), "tool_input": {"command": "ls"}})));
            // Wait until the call is held.
            loop {
                let d: serde_json::Value = client
                    .get(format!("{base}/api/sessions/{session}"))
                    .send()
                    .await
                    .expect("get")
                    .json()
                    .await
                    .expect("json");
                if d["session"]["control"]["held"].as_array().is_some_and(|h| !h.is_empty()) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let t0 = Instant::now();
            let r = client
                .post(format!("{base}/api/sessions/{session}/commands"))
                .json(&json!({"kind": "resume"}))
                .send()
                .await
                .expect("resume");
            assert_eq!(r.status(), 201);
            post_only.push(t0.elapsed().as_secs_f64() * 1e3);
            let answer = held.await.expect("held call");
            resume.push(t0.elapsed().as_secs_f64() * 1e3);
            assert!(answer.is_empty(), "released with no decision");
        }
        report("POST resume -> held hook call answered", &mut resume);
        report("POST resume answered (201, committed)", &mut post_only);

        let pre = |i: usize| {
            json!({"session_id": "bench-plain", "hook_event_name": "Notification", "message": format!("m{i}"),
                   "notification_type": "idle_prompt"})
        };
        let mut plain = Vec::with_capacity(n);
        for i in 0..n {
            let t0 = Instant::now();
            hook(pre(i)).await;
            plain.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        report("POST /hooks/claude, nothing pending (store + decide)", &mut plain);
        let mut otlp = Vec::with_capacity(n);
        for i in 0..n {
            let input = agent_console_hook::translate::parse(pre(i).to_string().as_bytes());
            let t = agent_console_hook::translate::translate(&input, &Default::default(), 1, None);
            let body = prost::Message::encode_to_vec(&t.logs);
            let t0 = Instant::now();
            let r = client
                .post(format!("{base}/v1/logs"))
                .header("content-type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .expect("otlp");
            assert_eq!(r.status(), 200);
            otlp.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        report("POST /v1/logs, the same record as OTLP (store only)", &mut otlp);
        running.shutdown().await;
    });
}
