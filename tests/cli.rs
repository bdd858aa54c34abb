//! The real binary: config errors exit 64 before any socket opens, with a message that names the
//! key, the value and the fix; unknown variables are warned about.

use std::process::{Command, Output};

fn strait(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strait"));
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("STRAIT_")) {
        cmd.env_remove(k);
    }
    // Port 9 (discard) on loopback: if validation were skipped, strait would try to connect.
    cmd.env("STRAIT_SOURCE__BOOTSTRAP_SERVERS", "127.0.0.1:9")
        .env("STRAIT_TARGET__BOOTSTRAP_SERVERS", "127.0.0.2:9");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run strait")
}

#[test]
fn version_prints_the_crate_version() {
    let out = strait(&["version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("strait {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn the_old_demo_subcommand_points_at_strait_demo() {
    let out = strait(&["demo", "produce", "--spans", "10"], &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("strait-demo produce --spans 10"), "{err}");
}

#[test]
fn bad_values_exit_64_naming_key_value_and_fix() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "STRAIT_COMPRESSION__ZSTD_LEVEL",
            "0",
            &["compression.zstd_level", "0", "22"],
        ),
        (
            "STRAIT_BATCH__MAX_BYTES",
            "abc",
            &["batch.max_bytes", "abc", "STRAIT_BATCH__MAX_BYTES"],
        ),
        ("STRAIT_TOPICS__INCLUDE", "spans(", &["topics.include", "spans("]),
        (
            "STRAIT_SOURCE__BOOTSTRAP_SERVERS",
            "kafka",
            &["source.bootstrap_servers", "kafka", "host:port"],
        ),
        ("STRAIT_START_FROM", "yesterday", &["start_from", "yesterday"]),
    ];
    for (var, value, needles) in cases {
        let out = strait(&["run"], &[(var, value)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{var}={value}: {err}");
        for n in *needles {
            assert!(err.contains(n), "{var}={value}: message lacks {n:?}: {err}");
        }
    }
}

#[test]
fn a_missing_config_file_exits_64() {
    let out = strait(&["run", "--config", "/nonexistent/strait.toml"], &[]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/strait.toml"));
}

#[test]
fn unknown_variables_get_a_suggestion() {
    use std::io::{BufRead, BufReader};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strait"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("STRAIT_")) {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .arg("run")
        .env("STRAIT_SOURCE__BOOTSTRAP_SERVER", "typo:9092")
        .env("STRAIT_SOURCE__BOOTSTRAP_SERVERS", "127.0.0.1:9")
        .env("STRAIT_TARGET__BOOTSTRAP_SERVERS", "127.0.0.2:9")
        .env("STRAIT_HTTP__LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn strait");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut warned = None;
    for line in BufReader::new(stderr).lines().map_while(Result::ok).take(50) {
        if line.contains("STRAIT_SOURCE__BOOTSTRAP_SERVER;") {
            warned = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = warned.expect("a warning about the unknown variable");
    assert!(line.contains("did you mean STRAIT_SOURCE__BOOTSTRAP_SERVERS"), "{line}");
}

#[test]
fn sasl_credentials_over_plaintext_exit_64_from_run_and_check_unless_allowed() {
    let plain = [
        ("STRAIT_TARGET__SASL__MECHANISM", "PLAIN"),
        ("STRAIT_TARGET__SASL__USERNAME", "strait"),
        ("STRAIT_TARGET__SASL__PASSWORD", "Tr0ub4dor-cli-5e1d"),
    ];
    for command in ["run", "check"] {
        let out = strait(&[command], &plain);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {err}");
        for needle in [
            "target.sasl.mechanism = \"PLAIN\"",
            "target.tls.enabled = true",
            "STRAIT_TARGET__ALLOW_PLAINTEXT_CREDENTIALS",
        ] {
            assert!(err.contains(needle), "{command}: lacks {needle:?}: {err}");
        }
        assert!(!err.contains("Tr0ub4dor-cli-5e1d"), "{command}: {err}");
    }
    // Allowed explicitly, validation passes and `check` goes on to the (absent) brokers: not 64.
    let mut allowed = plain.to_vec();
    allowed.push(("STRAIT_TARGET__ALLOW_PLAINTEXT_CREDENTIALS", "true"));
    allowed.push(("STRAIT_SOURCE__REQUEST_TIMEOUT_MS", "1000"));
    allowed.push(("STRAIT_TARGET__REQUEST_TIMEOUT_MS", "1000"));
    let out = strait(&["check"], &allowed);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(64), "{err}");
}

#[test]
fn a_toml_syntax_error_on_the_password_line_does_not_print_the_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("strait.toml");
    std::fs::write(
        &path,
        "[source.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"strait\"\npassword = \"Tr0ub4dor-cli-9a7b\n",
    )
    .expect("write");
    let path = path.to_str().expect("utf-8 temp dir");
    let out = strait(&["check", "--config", path], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(!err.contains("Tr0ub4dor-cli-9a7b"), "{err}");
    assert!(err.contains("line 4") && err.contains("source.sasl.password"), "{err}");
}

#[test]
fn config_reference_prints_the_annotated_reference_file() {
    let out = strait(&["config", "reference"], &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/strait.toml"))
        .expect("config/strait.toml");
    assert_eq!(String::from_utf8_lossy(&out.stdout), reference);
}

/// A one-connection HTTP server on loopback that answers `answer`; its thread returns the
/// request line it was sent.
fn answer_once(answer: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("bound address").port();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("the healthcheck's connection");
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("request line");
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 0) && header != "\r\n" {
            header.clear();
        }
        reader.get_mut().write_all(answer.as_bytes()).expect("answer");
        request_line
    });
    (port, server)
}

#[test]
fn healthcheck_exits_0_only_when_readyz_answers_200() {
    // Listening on every interface: the healthcheck asks loopback.
    let (port, server) = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 6\r\nconnection: close\r\n\r\nready\n");
    let listen = format!("0.0.0.0:{port}");
    let out = strait(&["healthcheck"], &[("STRAIT_HTTP__LISTEN", &listen)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.join().expect("server thread"), "GET /readyz HTTP/1.1\r\n");

    let (port, server) = answer_once(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 38\r\nconnection: close\r\n\r\nnot ready:\ntarget cluster unreachable\n",
    );
    let listen = format!("127.0.0.1:{port}");
    let out = strait(&["healthcheck"], &[("STRAIT_HTTP__LISTEN", &listen)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("503") && err.contains("target cluster unreachable"),
        "{err}"
    );
    server.join().expect("server thread");

    // Nothing listening there any more.
    let out = strait(&["healthcheck"], &[("STRAIT_HTTP__LISTEN", &listen)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}
