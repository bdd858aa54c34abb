//! The table the bench prints: rows of figures by section, and the verdict wording.

struct Row {
    section: &'static str,
    figure: String,
    value: String,
    note: String,
}

/// The table, plus problems seen in strait.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    problems: Vec<String>,
    pub(super) header: Vec<String>,
}

impl Report {
    /// An empty table under the given header lines.
    pub(super) fn new(header: Vec<String>) -> Self {
        Self {
            header,
            ..Self::default()
        }
    }

    pub(super) fn add(
        &mut self,
        section: &'static str,
        figure: impl Into<String>,
        value: impl Into<String>,
        note: impl Into<String>,
    ) {
        let row = Row {
            section,
            figure: figure.into(),
            value: value.into(),
            note: note.into(),
        };
        eprintln!("[{}] {}: {}  {}", row.section, row.figure, row.value, row.note);
        self.rows.push(row);
    }

    pub(super) fn na(&mut self, section: &'static str, figure: impl Into<String>, reason: impl std::fmt::Display) {
        self.add(section, figure, format!("n/a: {reason}"), "");
    }

    pub(super) fn problem(&mut self, p: String) {
        eprintln!("STRAIT PROBLEM: {p}");
        self.problems.push(p);
    }

    pub fn render(&self) -> String {
        let w_fig = self.rows.iter().map(|r| r.figure.len()).max().unwrap_or(10);
        let w_val = self.rows.iter().map(|r| r.value.len()).max().unwrap_or(10).min(60);
        let mut out = String::new();
        for h in &self.header {
            out.push_str(h);
            out.push('\n');
        }
        // Rows grouped by section, sections in order of first appearance.
        let mut order: Vec<&str> = Vec::new();
        for r in &self.rows {
            if !order.contains(&r.section) {
                order.push(r.section);
            }
        }
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        rows.sort_by_key(|r| order.iter().position(|s| *s == r.section));
        let mut section = "";
        for r in rows {
            if r.section != section {
                section = r.section;
                out.push_str(&format!("\n== {section}\n"));
            }
            out.push_str(format!("  {:<w_fig$}  {:>w_val$}  {}\n", r.figure, r.value, r.note).trim_end());
            out.push('\n');
        }
        if !self.problems.is_empty() {
            out.push_str("\n== strait problems seen in this run\n");
            for p in &self.problems {
                out.push_str(&format!("  - {p}\n"));
            }
        }
        out
    }
}

pub(super) fn verdict(met: bool, target: &str) -> String {
    format!("{} ({target})", if met { "MET" } else { "NOT MET" })
}
