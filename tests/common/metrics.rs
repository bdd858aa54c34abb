//! strait's Prometheus series, read by tests: from the binary's `/metrics`, or from a recorder
//! installed in the test process for strait run in-process.

use std::sync::OnceLock;

use metrics_exporter_prometheus::PrometheusHandle;

/// strait's own recorder (`strait::telemetry::install`), installed once in this test process,
/// so in-process runs count requests, retries and errors as the binary does. Series are
/// process-wide: tests of one file running at once add to the same counters.
pub fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| strait::telemetry::install().expect("the only metrics recorder of this test process"))
}

/// The text exposition of every series recorded in this process so far, as `/metrics` serves it.
pub fn render() -> String {
    strait::telemetry::render(recorder())
}

/// Sum of a Prometheus series over the samples whose labels contain every `labels` pair;
/// `None` when no sample matches.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, name, labels)
        .into_iter()
        .map(|(_, v)| v)
        .reduce(|a, b| a + b)
}

/// Every sample of `name` whose labels contain every `labels` pair, as (label text, value).
pub fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = series.split_once('{').unwrap_or((series, ""));
            if metric != name || !labels.iter().all(|(k, v)| label_text.contains(&format!("{k}=\"{v}\""))) {
                return None;
            }
            Some((label_text.trim_end_matches('}').to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}
