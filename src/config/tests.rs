//! Tests of the configuration: layers, env names, validation messages.

use figment::Jail;

use super::*;

/// The reference file, checked in next to the code it documents.
const REFERENCE: &str = REFERENCE_TOML;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// Loads as `strait` would, with both clusters' brokers named by env unless the test names them
/// itself (in `pairs` or in the file): there is no default for them.
fn load(file: Option<&str>, pairs: &[(&str, &str)]) -> Result<(Config, Vec<String>)> {
    let file_text = file.and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
    let in_file = |key: &str| {
        Figment::from(Toml::string(&file_text))
            .extract_inner::<String>(key)
            .is_ok()
    };
    let mut all = env(pairs);
    for (var, key, brokers) in [
        (
            "STRAIT_SOURCE__BOOTSTRAP_SERVERS",
            "source.bootstrap_servers",
            "127.0.0.1:9092",
        ),
        (
            "STRAIT_TARGET__BOOTSTRAP_SERVERS",
            "target.bootstrap_servers",
            "127.0.0.1:9093",
        ),
    ] {
        if !in_file(key) && !pairs.iter().any(|(k, _)| k.starts_with(var)) {
            all.push((var.to_owned(), brokers.to_owned()));
        }
    }
    Config::load_from(file.map(Path::new), all)
}

#[test]
fn the_budget_is_the_total_of_all_shards_unless_per_shard() {
    let budget = |extra: (&str, &str)| {
        let (c, _) = load(None, &[("STRAIT_BUDGET__BYTES_PER_SEC", "300000"), extra]).expect("loads");
        c.budget
    };
    let total = budget(("STRAIT_BUDGET__BURST_BYTES", "30000"));
    assert_eq!(total.share(1), (300_000, 30_000));
    assert_eq!(total.share(3), (100_000, 10_000));
    // Never split down to 0, which would mean unlimited.
    assert_eq!(total.share(400_000), (1, 1));
    assert_eq!(BudgetConfig::default().share(3), (0, 0));
    let own = budget(("STRAIT_BUDGET__PER_SHARD", "true"));
    assert_eq!(own.share(3), (300_000, 0));
}

#[test]
fn defaults_match_the_documented_interface() {
    let (c, warnings) = load(None, &[]).expect("defaults load");
    assert!(warnings.is_empty());
    let mut expected = Config::default();
    assert_eq!(expected.source.bootstrap_servers, "", "no default brokers");
    assert_eq!(expected.target.bootstrap_servers, "", "no default brokers");
    expected.source.bootstrap_servers = "127.0.0.1:9092".into();
    expected.target.bootstrap_servers = "127.0.0.1:9093".into();
    assert_eq!(c, expected);
    assert_eq!(
        (c.source.client_id.as_str(), c.source.request_timeout_ms),
        ("strait", 30_000)
    );
    assert_eq!(
        (c.source.connections_per_broker, c.target.connections_per_broker),
        (4, 2)
    );
    assert_eq!(c.topics.include, [".*"]);
    assert!(c.topics.exclude.is_empty() && c.topics.prefix.is_empty());
    assert_eq!(c.topics.refresh_secs, 30);
    assert_eq!(c.start_from, StartFrom::Earliest);
    assert_eq!((c.batch.max_bytes, c.batch.linger_ms), (1_048_576, 100));
    assert_eq!((c.fetch.max_bytes, c.fetch.max_wait_ms), (1_048_576, 50));
    assert_eq!(c.compression.zstd_level, 3);
    assert_eq!(
        c.http.socket_addr().expect("valid"),
        "0.0.0.0:9090".parse().expect("addr")
    );
    assert_eq!(c.checkpoint.topic, "strait-checkpoints");
    assert_eq!((c.shard.index, c.shard.count), (0, 1));
    assert_eq!(c.alerts.retention_headroom_secs, 3600);
    assert_eq!(c.shutdown_grace(), Duration::from_secs(30));
    assert_eq!(c.on_foreign_writer, OnForeignWriter::Halt);
    assert_eq!(c.on_missing_checkpoint, OnMissingCheckpoint::Halt);
}

#[test]
fn on_missing_checkpoint_is_set_from_env_and_a_bad_value_names_the_variable() {
    let (c, _) = load(None, &[("STRAIT_ON_MISSING_CHECKPOINT", "append")]).expect("loads");
    assert_eq!(c.on_missing_checkpoint, OnMissingCheckpoint::Append);
    let (c, _) = load(None, &[("STRAIT_ON_MISSING_CHECKPOINT", "align")]).expect("loads");
    assert_eq!(c.on_missing_checkpoint, OnMissingCheckpoint::Align);
    let err = load(None, &[("STRAIT_ON_MISSING_CHECKPOINT", "guess")]).expect_err("not a choice");
    assert!(err.to_string().contains("STRAIT_ON_MISSING_CHECKPOINT"), "{err}");
    assert_eq!(err.exit_code(), 64);
}

#[test]
fn start_from_takes_a_timestamp_and_a_bad_one_says_how_to_write_it() {
    let (c, _) = load(None, &[("STRAIT_START_FROM", "timestamp:1767225600000")]).expect("loads");
    assert_eq!(c.start_from, StartFrom::Timestamp(1_767_225_600_000));
    let (c, _) = load(None, &[("STRAIT_START_FROM", "Latest")]).expect("loads");
    assert_eq!(c.start_from, StartFrom::Latest);
    for bad in ["timestamp:", "timestamp:soon", "timestamp:-5", "yesterday"] {
        let err = load(None, &[("STRAIT_START_FROM", bad)]).expect_err("not a start");
        let msg = err.to_string();
        assert!(
            msg.contains("STRAIT_START_FROM") && msg.contains("timestamp:<ms>"),
            "{bad}: {msg}"
        );
        assert_eq!(err.exit_code(), 64);
    }
    // Written back as read.
    assert_eq!(String::from(StartFrom::Timestamp(5)), "timestamp:5");
}

#[test]
fn on_foreign_writer_is_set_from_env_and_a_bad_value_names_the_variable() {
    let (c, warnings) = load(None, &[("STRAIT_ON_FOREIGN_WRITER", "skip")]).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.on_foreign_writer, OnForeignWriter::Skip);
    let (c, _) = load(None, &[("STRAIT_ON_FOREIGN_WRITER", "halt")]).expect("loads");
    assert_eq!(c.on_foreign_writer, OnForeignWriter::Halt);
    let err = load(None, &[("STRAIT_ON_FOREIGN_WRITER", "ignore")]).expect_err("not a choice");
    let msg = err.to_string();
    assert!(msg.contains("STRAIT_ON_FOREIGN_WRITER"), "{msg}");
    assert_eq!(err.exit_code(), 64);
}

#[test]
fn retention_headroom_alert_is_set_from_env_zero_disables_and_bounds_are_checked() {
    let (c, warnings) = load(None, &[("STRAIT_ALERTS__RETENTION_HEADROOM_SECS", "7200")]).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.alerts.retention_headroom_secs, 7200);
    let (c, _) = load(None, &[("STRAIT_ALERTS__RETENTION_HEADROOM_SECS", "0")]).expect("0 disables");
    assert_eq!(c.alerts.retention_headroom_secs, 0);
    let err = load(None, &[("STRAIT_ALERTS__RETENTION_HEADROOM_SECS", "40000000")]).expect_err("over a year");
    let msg = err.to_string();
    assert!(msg.starts_with("alerts.retention_headroom_secs = 40000000"), "{msg}");
    assert!(msg.contains("0 to disable"), "{msg}");
    assert_eq!(err.exit_code(), 64);
    let err = load(None, &[("STRAIT_ALERTS__RETENTION_HEADROOM_SECS", "-1")]).expect_err("negative");
    assert!(
        err.to_string().contains("STRAIT_ALERTS__RETENTION_HEADROOM_SECS"),
        "{err}"
    );
}

#[test]
fn budget_weights_are_parsed_once_as_read_and_a_bad_rule_says_how_to_fix_it() {
    Jail::expect_with(|jail| {
        jail.create_file("good.toml", "[budget]\nweights = [\"jaeger-.*=3\", \"logs-.*=1\"]\n")?;
        let (c, _) = load(Some("good.toml"), &[]).expect("loads");
        let rules: Vec<String> = c.budget.weights.iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["jaeger-.*=3", "logs-.*=1"]);
        for bad in ["spans", "spans=0", "spans(=1"] {
            jail.create_file("bad.toml", &format!("[budget]\nweights = [\"jaeger-.*=3\", {bad:?}]\n"))?;
            let err = load(Some("bad.toml"), &[]).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.starts_with("budget.weights.1: "), "{msg}");
            assert!(msg.contains(&format!("{bad:?} is not a valid rule")), "{msg}");
            assert!(msg.contains("write rules as REGEX=WEIGHT"), "{msg}");
            assert!(msg.contains("fix budget.weights.1 in bad.toml"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert_eq!(err.exit_code(), 64);
        }
        Ok(())
    });
}

#[test]
fn budget_weights_come_from_one_comma_separated_variable_as_documented() {
    let (c, _) = load(None, &[("STRAIT_BUDGET__WEIGHTS", "jaeger-.*=3, logs-.{1,3}=1")]).expect("loads");
    let rules: Vec<String> = c.budget.weights.iter().map(ToString::to_string).collect();
    assert_eq!(rules, ["jaeger-.*=3", "logs-.{1,3}=1"]);
    let (c, _) = load(None, &[("STRAIT_BUDGET__WEIGHTS", "")]).expect("empty");
    assert!(c.budget.weights.is_empty());
    let err = load(None, &[("STRAIT_BUDGET__WEIGHTS", "jaeger-.*=3,spans")]).expect_err("no weight");
    let msg = err.to_string();
    assert!(msg.contains("\"spans\" is not a valid rule"), "{msg}");
    assert!(msg.contains("write rules as REGEX=WEIGHT"), "{msg}");
    assert!(msg.contains("STRAIT_BUDGET__WEIGHTS"), "{msg}");
    assert_eq!(err.exit_code(), 64);
}

#[test]
fn toml_overrides_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "strait.toml",
            r#"
                start_from = "latest"
                [source]
                bootstrap_servers = "a:9092,b:9092"
                [topics]
                include = ["orders", "pay.*"]
                prefix = "dr."
                [compression]
                zstd_level = 9
                "#,
        )?;
        let (c, _) = load(Some("strait.toml"), &[]).expect("loads");
        assert_eq!(c.source.bootstrap(), ["a:9092", "b:9092"]);
        assert_eq!(c.source.client_id, "strait", "untouched keys keep defaults");
        assert_eq!(c.topics.include, ["orders", "pay.*"]);
        assert_eq!(c.topics.prefix, "dr.");
        assert_eq!(c.start_from, StartFrom::Latest);
        assert_eq!(c.compression.zstd_level, 9);
        let mut target = Config::default().target;
        target.bootstrap_servers = "127.0.0.1:9093".into(); // from load's env
        assert_eq!(c.target, target);
        Ok(())
    });
}

#[test]
fn env_overrides_toml_with_nesting() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "strait.toml",
            "[batch]\nlinger_ms = 5\nmax_bytes = 2048\n[source]\nclient_id = \"from-file\"\n",
        )?;
        let (c, warnings) = load(
            Some("strait.toml"),
            &[
                ("STRAIT_BATCH__LINGER_MS", "7"),
                ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", "x:1, y:2"),
                ("STRAIT_TARGET__CLIENT_ID", "123"),
                ("STRAIT_START_FROM", "latest"),
                ("STRAIT_SHUTDOWN_GRACE_SECS", "5"),
                ("STRAIT_SHARD__COUNT", "4"),
                ("STRAIT_SHARD__INDEX", "3"),
                ("STRAIT_CONFIG", "ignored.toml"),
                ("STRAIT_LOG", "debug"),
            ],
        )
        .expect("loads");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.batch.linger_ms, 7, "env beats the file");
        assert_eq!(c.batch.max_bytes, 2048, "the file beats defaults");
        assert_eq!(c.source.client_id, "from-file");
        assert_eq!(c.source.bootstrap(), ["x:1", "y:2"]);
        assert_eq!(c.target.client_id, "123", "numeric-looking strings stay strings");
        assert_eq!(c.start_from, StartFrom::Latest);
        assert_eq!(c.shutdown_grace_secs, 5);
        assert_eq!((c.shard.index, c.shard.count), (3, 4));
        Ok(())
    });
}

#[test]
fn include_accepts_a_comma_list_from_env_and_toml() {
    let (c, _) = load(
        None,
        &[
            ("STRAIT_TOPICS__INCLUDE", "orders-.*, pay{1,2}, [ab,]x"),
            ("STRAIT_TOPICS__EXCLUDE", ""),
        ],
    )
    .expect("loads");
    assert_eq!(c.topics.include, ["orders-.*", "pay{1,2}", "[ab,]x"]);
    assert!(c.topics.exclude.is_empty());
    let f = c.topic_filter().expect("compiles");
    assert!(f.matches("orders-eu") && f.matches("payy") && f.matches("ax"));
    assert!(!f.matches("strait-checkpoints"));

    Jail::expect_with(|jail| {
        jail.create_file("strait.toml", "[topics]\ninclude = \"a.*,b\"\nexclude = [\"a,b\"]\n")?;
        let (c, _) = load(Some("strait.toml"), &[]).expect("loads");
        assert_eq!(c.topics.include, ["a.*", "b"]);
        assert_eq!(c.topics.exclude, ["a,b"], "array items are never split");
        Ok(())
    });
}

#[test]
fn unknown_env_var_warns_with_suggestion() {
    let (_, warnings) = load(None, &[("STRAIT_SOURCE__BOOTSTRAP_SERVER", "a:1"), ("HOME", "/root")])
        .expect("warnings do not fail the load");
    assert_eq!(
        warnings,
        ["unknown variable STRAIT_SOURCE__BOOTSTRAP_SERVER; did you mean \
              STRAIT_SOURCE__BOOTSTRAP_SERVERS?"]
    );
}

#[test]
fn env_type_error_names_key_and_variable() {
    let err = load(None, &[("STRAIT_BATCH__MAX_BYTES", "abc")]).expect_err("not a number");
    let msg = err.to_string();
    assert!(msg.starts_with("batch.max_bytes: invalid type"), "{msg}");
    assert!(msg.contains("environment variable STRAIT_BATCH__MAX_BYTES"), "{msg}");
    assert!(msg.contains("set STRAIT_BATCH__MAX_BYTES to a valid value"), "{msg}");
    assert_eq!(err.exit_code(), 64);

    let msg = load(None, &[("STRAIT_START_FROM", "beginning")])
        .expect_err("no such")
        .to_string();
    assert!(
        msg.contains("start_from") && msg.contains(r#""earliest", "latest" or "timestamp:<ms>""#),
        "{msg}"
    );
    assert!(msg.contains("STRAIT_START_FROM"), "{msg}");
}

#[test]
fn toml_type_error_names_key_and_file() {
    Jail::expect_with(|jail| {
        jail.create_file("strait.toml", "[batch]\nmax_bytes = \"lots\"\n")?;
        let msg = load(Some("strait.toml"), &[]).expect_err("string").to_string();
        assert!(msg.starts_with("batch.max_bytes: invalid type"), "{msg}");
        assert!(msg.contains("strait.toml"), "{msg}");
        assert!(msg.contains("fix batch.max_bytes in"), "{msg}");
        Ok(())
    });
}

#[test]
fn unknown_toml_key_is_an_error_with_suggestion() {
    Jail::expect_with(|jail| {
        jail.create_file("strait.toml", "[source]\nbootstrap_server = \"a:1\"\n")?;
        let err = load(Some("strait.toml"), &[]).expect_err("deny_unknown_fields");
        let msg = err.to_string();
        assert!(
            msg.starts_with(
                "source.bootstrap_server: unknown field `bootstrap_server`, expected one of \
                 `bootstrap_servers`, `client_id`, `request_timeout_ms`, `connections_per_broker`, `tls`, \
                 `sasl`, `allow_plaintext_credentials` (from config file"
            ),
            "{msg}"
        );
        assert!(msg.contains("did you mean `bootstrap_servers`?"), "{msg}");
        assert!(msg.contains("strait.toml"), "{msg}");
        jail.create_file("top.toml", "linger_ms = 5\n")?;
        let msg = load(Some("top.toml"), &[]).expect_err("not top level").to_string();
        assert!(msg.starts_with("linger_ms: unknown field"), "{msg}");
        Ok(())
    });
}

#[test]
fn broken_or_missing_file_is_an_error() {
    Jail::expect_with(|jail| {
        jail.create_file("bad.toml", "[source\n")?;
        let err = load(Some("bad.toml"), &[]).expect_err("syntax");
        assert!(matches!(err, Error::Parse { .. }), "{err:?}");
        assert!(err.to_string().contains("is not valid TOML"), "{err}");
        let err = load(Some("missing.toml"), &[]).expect_err("missing");
        assert!(matches!(err, Error::ReadFile { .. }), "{err:?}");
        assert!(err.to_string().contains("STRAIT_CONFIG"), "{err}");
        Ok(())
    });
}

#[test]
fn validation_runs_on_load() {
    let err = load(None, &[("STRAIT_COMPRESSION__ZSTD_LEVEL", "0")]).expect_err("level 0");
    assert!(
        err.to_string()
            .starts_with("compression.zstd_level = 0 is out of range"),
        "{err}"
    );
    let err = load(None, &[("STRAIT_SHARD__INDEX", "1")]).expect_err("index 1 of 1");
    assert!(err.to_string().contains("shard.count"), "{err}");
}

#[test]
fn target_replication_factor_is_the_brokers_default_or_at_least_one() {
    let rf = |value: &str| load(None, &[("STRAIT_TOPICS__REPLICATION_FACTOR", value)]);
    assert_eq!(load(None, &[]).expect("defaults").0.topics.replication_factor, -1);
    assert_eq!(rf("3").expect("3 replicas").0.topics.replication_factor, 3);
    assert_eq!(rf("-1").expect("the default").0.topics.replication_factor, -1);
    for bad in ["0", "-2"] {
        let err = rf(bad).expect_err(bad).to_string();
        assert!(
            err.starts_with(&format!("topics.replication_factor = {bad} is out of range")),
            "{err}"
        );
    }
}

#[test]
fn value_can_come_from_a_file_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("client-id", "from-secret-file\n")?;
        let path = jail.directory().join("client-id");
        let path = path.to_str().expect("utf-8 temp dir");
        let (c, warnings) = load(None, &[("STRAIT_SOURCE__CLIENT_ID_FILE", path)]).expect("loads");
        assert!(warnings.is_empty());
        assert_eq!(c.source.client_id, "from-secret-file");

        let err = load(
            None,
            &[
                ("STRAIT_SOURCE__CLIENT_ID_FILE", path),
                ("STRAIT_SOURCE__CLIENT_ID", "x"),
            ],
        )
        .expect_err("both");
        assert!(matches!(err, Error::EnvConflict { .. }), "{err:?}");
        let err = load(None, &[("STRAIT_SOURCE__CLIENT_ID_FILE", "/nonexistent/x")]).expect_err("unreadable");
        assert!(err.to_string().contains("STRAIT_SOURCE__CLIENT_ID_FILE"), "{err}");
        Ok(())
    });
}

#[test]
fn every_error_exits_64() {
    let errors = [
        load(None, &[("STRAIT_BATCH__MAX_BYTES", "abc")]),
        load(None, &[("STRAIT_BATCH__MAX_BYTES", "1")]),
        load(None, &[("STRAIT_TOPICS__INCLUDE", "(")]),
        load(Some("/nonexistent/strait.toml"), &[]),
        load(None, &[("STRAIT_HTTP__LISTEN_FILE", "/nonexistent/x")]),
    ];
    for result in errors {
        assert_eq!(result.expect_err("bad config").exit_code(), 64);
    }
}

#[test]
fn reference_file_is_exactly_the_defaults() {
    // Parsed alone, without the defaults layer: every key must be spelled out in the file.
    let from_file: Config = Figment::from(Toml::string(REFERENCE))
        .extract()
        .expect("config/strait.toml parses");
    assert_eq!(from_file, Config::default());
}

#[test]
fn reference_file_documents_every_key_and_variable() {
    for key in known_keys() {
        let leaf = key.rsplit('.').next().unwrap_or(&key);
        assert!(REFERENCE.contains(&format!("{leaf} = ")), "{key} missing");
        assert!(REFERENCE.contains(&env_var_for(&key)), "{} missing", env_var_for(&key));
    }
}

/// Item 10 of issue 15: a config error never carries a secret's value, whichever layer or error
/// path it takes, and still names the key and where it is.
#[test]
fn no_config_error_echoes_a_secret_value() {
    const SECRET: &str = "73519";
    Jail::expect_with(|jail| {
        let head = "[source]\nbootstrap_servers = \"a:9092\"\n[source.sasl]\nmechanism = \"PLAIN\"\nusername = \"u\"\n";
        // (file body after `head`, what the message must say besides the key)
        let syntax_errors = [
            format!("password = \"{SECRET}\n"),
            format!("password = \"{SECRET}\" trailing\n"),
            format!("password = \"\"\"{SECRET}\n"),
            format!("password = {SECRET}x\n"),
        ];
        for body in &syntax_errors {
            jail.create_file("syntax.toml", &format!("{head}{body}"))?;
            let err = load(Some("syntax.toml"), &[]).expect_err("not TOML");
            let msg = err.to_string();
            assert!(matches!(err, Error::Parse { .. }), "{err:?}");
            assert!(!msg.contains(SECRET), "{body:?} echoed the secret: {msg}");
            assert!(msg.contains("syntax.toml") && msg.contains("line 6"), "{msg}");
            assert!(msg.contains("source.sasl.password"), "{msg}");
            assert_eq!(err.exit_code(), 64);
        }
        for value in [SECRET.to_owned(), format!("{SECRET}.5"), format!("-{SECRET}")] {
            jail.create_file("typed.toml", &format!("{head}password = {value}\n"))?;
            let err = load(Some("typed.toml"), &[]).expect_err("not a string");
            let msg = err.to_string();
            assert!(!msg.contains(SECRET), "{value} echoed the secret: {msg}");
            assert!(msg.starts_with("source.sasl.password: "), "{msg}");
            assert!(msg.contains("typed.toml") && msg.contains("quote"), "{msg}");
            assert_eq!(err.exit_code(), 64);
        }
        Ok(())
    });
    // The env layer types a secret key as text, so a numeric password stays a string: the only
    // error left is a rule's, which shows `***`.
    let err = load(None, &[("STRAIT_TARGET__SASL__PASSWORD", SECRET)]).expect_err("no mechanism");
    let msg = err.to_string();
    assert!(msg.starts_with("target.sasl.password = \"***\" is set"), "{msg}");
    assert!(!msg.contains(SECRET), "{msg}");
}

/// Item 6 of issue 15: a mechanism that sends a reusable secret needs TLS, or an explicit
/// `allow_plaintext_credentials = true` on that cluster.
#[test]
fn credentials_over_plaintext_are_refused_unless_allowed() {
    let mut cases = vec![
        ("SOURCE", "PLAIN", vec![("USERNAME", "u"), ("PASSWORD", "pw-5f1e")]),
        ("TARGET", "PLAIN", vec![("USERNAME", "u"), ("PASSWORD", "pw-5f1e")]),
        ("SOURCE", "OAUTHBEARER", vec![("PASSWORD", "tok-5f1e")]),
    ];
    if cfg!(feature = "msk-iam") {
        cases.push(("TARGET", "AWS_MSK_IAM", vec![("AWS_REGION", "eu-west-1")]));
    }
    for (side, mechanism, keys) in cases {
        let var = |key: &str| format!("STRAIT_{side}__{key}");
        let mut vars: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| (var(&format!("SASL__{k}")), (*v).to_owned()))
            .collect();
        vars.push((var("SASL__MECHANISM"), mechanism.to_owned()));
        vars.push(("STRAIT_SOURCE__BOOTSTRAP_SERVERS".into(), "a:9092".into()));
        vars.push(("STRAIT_TARGET__BOOTSTRAP_SERVERS".into(), "b:9092".into()));
        let pairs =
            |extra: &[(String, String)]| -> Vec<(String, String)> { vars.iter().chain(extra).cloned().collect() };
        let err = Config::load_from(None, pairs(&[])).expect_err("credentials in clear text");
        let msg = err.to_string();
        let cluster = side.to_ascii_lowercase();
        for needle in [
            format!("{cluster}.sasl.mechanism = \"{mechanism}\""),
            format!("{cluster}.tls.enabled = true"),
            format!("{cluster}.allow_plaintext_credentials = true"),
            var("ALLOW_PLAINTEXT_CREDENTIALS"),
        ] {
            assert!(msg.contains(&needle), "{side} {mechanism}: lacks {needle:?}: {msg}");
        }
        assert!(!msg.contains("5f1e"), "{msg}");
        assert_eq!(err.exit_code(), 64);
        let allowed = [(var("ALLOW_PLAINTEXT_CREDENTIALS"), "true".to_owned())];
        let (c, warnings) = Config::load_from(None, pairs(&allowed)).expect("explicitly allowed");
        assert!(warnings.is_empty(), "{warnings:?}");
        let shown = serde_json::to_value(&c).expect("a config serializes");
        assert_eq!(shown[cluster.as_str()]["allow_plaintext_credentials"], true);
        let tls = [(var("TLS__ENABLED"), "true".to_owned())];
        Config::load_from(None, pairs(&tls)).expect("over TLS");
    }
    // SCRAM sends a proof, never the password: accepted, with a warning about offline guessing.
    let scram = [
        ("STRAIT_SOURCE__SASL__MECHANISM", "SCRAM-SHA-512"),
        ("STRAIT_SOURCE__SASL__USERNAME", "u"),
        ("STRAIT_SOURCE__SASL__PASSWORD", "pw"),
    ];
    let (_, warnings) = load(None, &scram).expect("SCRAM without TLS loads");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("source.sasl.mechanism = \"SCRAM-SHA-512\""),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("source.tls.enabled = true"), "{warnings:?}");
    let mut allowed = scram.to_vec();
    allowed.push(("STRAIT_SOURCE__ALLOW_PLAINTEXT_CREDENTIALS", "true"));
    let (_, warnings) = load(None, &allowed).expect("loads");
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn the_orphan_threshold_runs_only_with_shards_and_never_below_its_floor() {
    let mut c = Config::default();
    c.shard.orphan_after_secs = 10;
    // One shard owns every partition: nothing to watch.
    assert_eq!(c.orphan_after(), None);
    c.shard.count = 2;
    // Raised to 2 topic refreshes of 30 s.
    assert_eq!(c.orphan_after(), Some(Duration::from_secs(60)));
    c.topics.refresh_secs = 1;
    c.checkpoint.interval_ms = 5_000;
    // Raised to 3 checkpoint intervals.
    assert_eq!(c.orphan_after(), Some(Duration::from_secs(15)));
    c.shard.orphan_after_secs = 300;
    assert_eq!(c.orphan_after(), Some(Duration::from_secs(300)));
    c.shard.orphan_after_secs = 0;
    assert_eq!(c.orphan_after(), None);
}

#[test]
fn the_target_codec_is_zstd_unless_set_and_an_unknown_one_lists_the_accepted() {
    let (c, _) = load(None, &[]).expect("defaults");
    assert_eq!(c.compression.codec, Codec::Zstd);
    for (name, codec) in [
        ("zstd", Codec::Zstd),
        ("lz4", Codec::Lz4),
        ("gzip", Codec::Gzip),
        ("snappy", Codec::Snappy),
        ("none", Codec::None),
    ] {
        let (c, _) = load(None, &[("STRAIT_COMPRESSION__CODEC", name)]).expect(name);
        assert_eq!(c.compression.codec, codec);
        assert_eq!(codec.name(), name);
    }
    Jail::expect_with(|jail| {
        jail.create_file("strait.toml", "[compression]\ncodec = \"snappy\"\n")?;
        let (c, _) = load(Some("strait.toml"), &[]).expect("loads");
        assert_eq!(c.compression.codec, Codec::Snappy);
        jail.create_file("bad.toml", "[compression]\ncodec = \"brotli\"\n")?;
        let err = load(Some("bad.toml"), &[]).expect_err("unknown codec");
        let msg = err.to_string();
        assert!(msg.starts_with("compression.codec: unknown variant `brotli`"), "{msg}");
        assert!(msg.contains("fix compression.codec in bad.toml"), "{msg}");
        assert_eq!(err.exit_code(), 64);
        Ok(())
    });
    let err = load(None, &[("STRAIT_COMPRESSION__CODEC", "LZ5")]).expect_err("unknown codec");
    let msg = err.to_string();
    for accepted in ["zstd", "lz4", "gzip", "snappy", "none", "STRAIT_COMPRESSION__CODEC"] {
        assert!(msg.contains(accepted), "{accepted}: {msg}");
    }
    assert_eq!(err.exit_code(), 64);
}

#[test]
fn level_keys_set_with_another_codec_are_ignored_with_a_warning() {
    let warned = |pairs: &[(&str, &str)]| {
        let (_, warnings) = load(None, pairs).expect("loads");
        warnings
    };
    assert!(
        warned(&[("STRAIT_COMPRESSION__CODEC", "lz4")]).is_empty(),
        "levels not set"
    );
    assert!(
        warned(&[("STRAIT_COMPRESSION__ZSTD_LEVEL", "9")]).is_empty(),
        "zstd uses them"
    );
    let w = warned(&[
        ("STRAIT_COMPRESSION__CODEC", "gzip"),
        ("STRAIT_COMPRESSION__ZSTD_LEVEL", "9"),
    ]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("compression.zstd_level set while compression.codec = gzip: the zstd level keys are ignored"),
        "{w:?}"
    );
    Jail::expect_with(|jail| {
        // Set in the file, even to its default value, is set explicitly.
        jail.create_file(
            "strait.toml",
            "[compression]\ncodec = \"none\"\nmin_level = 1\nmax_level = 9\n",
        )?;
        let (_, w) = load(Some("strait.toml"), &[]).expect("loads");
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("compression.min_level, compression.max_level set"),
            "{w:?}"
        );
        Ok(())
    });
}

#[test]
fn target_config_rules_come_from_a_toml_list_or_one_variable_and_bad_ones_name_the_rule() {
    let texts = |c: &Config| -> Vec<String> { c.topics.target_configs.iter().map(ToString::to_string).collect() };
    Jail::expect_with(|jail| {
        jail.create_file(
            "strait.toml",
            "[topics]\ntarget_configs = [\"spans-.*:retention.ms=604800000\", \"logs:cleanup.policy=compact,delete\"]\n",
        )?;
        let (c, _) = load(Some("strait.toml"), &[]).expect("loads");
        assert_eq!(
            texts(&c),
            ["spans-.*:retention.ms=604800000", "logs:cleanup.policy=compact,delete"]
        );
        let set = target_config_overrides(&c.topics.target_configs, "logs");
        assert_eq!(set.get("cleanup.policy").map(String::as_str), Some("compact,delete"));
        jail.create_file(
            "bad.toml",
            "[topics]\ntarget_configs = [\"spans:retention.ms=1\", \"spans:=1\"]\n",
        )?;
        let err = load(Some("bad.toml"), &[]).expect_err("empty config name");
        let msg = err.to_string();
        assert!(msg.starts_with("topics.target_configs.1: "), "{msg}");
        assert!(
            msg.contains("\"spans:=1\" is not a valid rule: it has an empty config name"),
            "{msg}"
        );
        assert!(msg.contains("fix topics.target_configs.1 in bad.toml"), "{msg}");
        assert_eq!(err.exit_code(), 64);
        Ok(())
    });
    let var = "STRAIT_TOPICS__TARGET_CONFIGS";
    let (c, _) = load(
        None,
        &[(var, "a{1,3}:retention.ms=1, logs:cleanup.policy=compact\\,delete")],
    )
    .expect("loads");
    assert_eq!(
        texts(&c),
        ["a{1,3}:retention.ms=1", "logs:cleanup.policy=compact\\,delete"]
    );
    let set = target_config_overrides(&c.topics.target_configs, "logs");
    assert_eq!(set.get("cleanup.policy").map(String::as_str), Some("compact,delete"));
    for (bad, why) in [
        ("spans(:retention.ms=1", "is not a valid rule (regex parse error"),
        ("spans:retention.ms", "has no '='"),
        ("spans-retention.ms=1", "has no ':'"),
    ] {
        let err = load(None, &[(var, bad)]).expect_err(bad);
        let msg = err.to_string();
        assert!(msg.contains(&format!("{bad:?}")) && msg.contains(why), "{msg}");
        assert!(msg.contains(var) && msg.contains("REGEX:CONFIG=VALUE"), "{msg}");
        assert_eq!(err.exit_code(), 64);
    }
}

/// OAUTHBEARER with a token endpoint from `STRAIT_*` variables; an `http://`
/// endpoint needs `allow_plaintext_credentials`, and a secret never shows in a message.
#[test]
fn oauth_client_credentials_load_from_the_environment() {
    let vars = |url: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
        [
            ("STRAIT_SOURCE__BOOTSTRAP_SERVERS", "a:9092"),
            ("STRAIT_TARGET__BOOTSTRAP_SERVERS", "b:9092"),
            ("STRAIT_SOURCE__TLS__ENABLED", "true"),
            ("STRAIT_SOURCE__SASL__MECHANISM", "OAUTHBEARER"),
            ("STRAIT_SOURCE__SASL__OAUTH_TOKEN_ENDPOINT_URL", url),
            ("STRAIT_SOURCE__SASL__OAUTH_CLIENT_ID", "strait"),
            ("STRAIT_SOURCE__SASL__OAUTH_CLIENT_SECRET", "73519"),
            ("STRAIT_SOURCE__SASL__OAUTH_SCOPE", "kafka"),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    let https = "https://keycloak.example/realms/kafka/protocol/openid-connect/token";
    let (c, _) = Config::load_from(None, vars(https, &[])).expect("valid");
    assert!(c.source.sasl.uses_token_endpoint());
    assert_eq!(c.source.sasl.oauth_client_secret.expose(), "73519");
    assert!(!format!("{:?}", c.source.sasl).contains("73519"));

    // TLS to the brokers does not cover the endpoint.
    let err = Config::load_from(None, vars("http://keycloak:8080/token", &[])).expect_err("http");
    let msg = err.to_string();
    assert!(
        msg.starts_with("source.sasl.oauth_token_endpoint_url = \"http://keycloak:8080/token\""),
        "{msg}"
    );
    assert!(
        msg.contains("STRAIT_SOURCE__ALLOW_PLAINTEXT_CREDENTIALS = true"),
        "{msg}"
    );
    assert_eq!(err.exit_code(), 64);
    let allowed = [("STRAIT_SOURCE__ALLOW_PLAINTEXT_CREDENTIALS", "true")];
    Config::load_from(None, vars("http://keycloak:8080/token", &allowed)).expect("allowed");

    let token = [("STRAIT_SOURCE__SASL__PASSWORD", "static-tok")];
    let err = Config::load_from(None, vars(https, &token)).expect_err("both");
    let msg = err.to_string();
    assert!(
        msg.starts_with("source.sasl.password = \"***\" is set together with"),
        "{msg}"
    );
    assert!(!msg.contains("static-tok") && !msg.contains("73519"), "{msg}");
    assert_eq!(err.exit_code(), 64);
}
