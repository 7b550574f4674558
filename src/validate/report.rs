//! What `validate` found: per range, per table and in all, as JSON and as
//! the summary a person reads; `--merge` joins the reports of shares.

use serde::{Deserialize, Serialize};

use crate::ranges::Range;

/// One difference, for the report: its kind, its key and what differs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub kind: String,
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detail: Vec<String>,
}

/// What the comparison of one range (or of a whole table) found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Found {
    pub rows_compared: u64,
    /// On the origin, not on the target.
    pub missing: u64,
    /// On the target, not on the origin.
    pub extra: u64,
    /// On both, with a cell that differs beyond the tolerances.
    pub differing: u64,
    /// Differences of the first read that the re-read did not confirm
    /// (writes in flight).
    pub settled: u64,
    /// Differences `--repair` wrote (missing and differing rows).
    pub repaired: u64,
    /// Extra rows `--delete-extra` deleted.
    pub deleted: u64,
    #[serde(default)]
    pub samples: Vec<Sample>,
}

impl Found {
    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.differing
    }

    /// Differences neither repaired nor deleted.
    pub fn remaining(&self) -> u64 {
        self.differences()
            .saturating_sub(self.repaired + self.deleted)
    }

    pub(super) fn add(&mut self, o: &Found, samples: usize) {
        self.rows_compared += o.rows_compared;
        self.missing += o.missing;
        self.extra += o.extra;
        self.differing += o.differing;
        self.settled += o.settled;
        self.repaired += o.repaired;
        self.deleted += o.deleted;
        for s in &o.samples {
            let same_kind = self.samples.iter().filter(|x| x.kind == s.kind).count();
            if same_kind < samples {
                self.samples.push(s.clone());
            }
        }
    }
}

/// One table's comparison.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableDiff {
    pub table: String,
    #[serde(flatten)]
    pub found: Found,
    /// Ranges compared by this run, and ranges a checkpoint said an earlier
    /// run had finished (their counts are included).
    pub ranges: u64,
    pub ranges_already_done: u64,
    /// The ranges with a difference: `--ranges-from` compares only these.
    pub differing_ranges: Vec<Range>,
    /// What was not compared or not repaired, and why.
    pub notes: Vec<String>,
}

/// The whole comparison, as JSON (`--report FILE`) and as a summary.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ValidateReport {
    pub keyspace: String,
    pub from: String,
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// Said before the comparison: e.g. a proxy's journal backlog that
    /// makes differences expected.
    #[serde(default)]
    pub warnings: Vec<String>,
    pub tables: Vec<TableDiff>,
}

impl ValidateReport {
    pub fn differences(&self) -> u64 {
        self.tables.iter().map(|t| t.found.differences()).sum()
    }

    pub fn remaining(&self) -> u64 {
        self.tables.iter().map(|t| t.found.remaining()).sum()
    }

    /// The reports of `--split` shares joined into one: counts added,
    /// ranges and notes put together, samples kept up to `samples` a kind.
    pub fn merge(reports: &[ValidateReport], samples: usize) -> Result<ValidateReport, String> {
        let first = reports.first().ok_or("no report to merge")?;
        let mut out = ValidateReport {
            keyspace: first.keyspace.clone(),
            from: first.from.clone(),
            to: first.to.clone(),
            split: None,
            warnings: Vec::new(),
            tables: Vec::new(),
        };
        let mut shares = Vec::new();
        for r in reports {
            if r.keyspace != out.keyspace {
                return Err(format!(
                    "the reports compare different keyspaces ({} and {})",
                    out.keyspace, r.keyspace
                ));
            }
            shares.extend(r.split.clone());
            for w in &r.warnings {
                if !out.warnings.contains(w) {
                    out.warnings.push(w.clone());
                }
            }
            for t in &r.tables {
                let i = match out.tables.iter().position(|x| x.table == t.table) {
                    Some(i) => i,
                    None => {
                        out.tables.push(TableDiff {
                            table: t.table.clone(),
                            ..Default::default()
                        });
                        out.tables.len() - 1
                    }
                };
                let m = &mut out.tables[i];
                m.found.add(&t.found, samples);
                m.ranges += t.ranges;
                m.ranges_already_done += t.ranges_already_done;
                m.differing_ranges
                    .extend(t.differing_ranges.iter().copied());
                m.differing_ranges.sort();
                for n in &t.notes {
                    if !m.notes.contains(n) {
                        m.notes.push(n.clone());
                    }
                }
            }
        }
        out.tables.sort_by(|a, b| a.table.cmp(&b.table));
        if !shares.is_empty() {
            out.split = Some(format!("merged: {}", shares.join(", ")));
        }
        Ok(out)
    }

    /// The summary a person reads: per table, what was compared and found,
    /// and a sample of keys.
    pub fn human(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "validate {} from {} to {}{}",
            self.keyspace,
            self.from,
            self.to,
            self.split
                .as_ref()
                .map(|x| format!(" (share {x})"))
                .unwrap_or_default()
        );
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        for t in &self.tables {
            let f = &t.found;
            let _ = writeln!(
                s,
                "  {}: {} rows compared, {} missing, {} extra, {} differing{}{}{}",
                t.table,
                f.rows_compared,
                f.missing,
                f.extra,
                f.differing,
                if f.settled > 0 {
                    format!(", {} settled on re-read", f.settled)
                } else {
                    String::new()
                },
                if f.repaired > 0 {
                    format!(", {} repaired", f.repaired)
                } else {
                    String::new()
                },
                if f.deleted > 0 {
                    format!(", {} deleted", f.deleted)
                } else {
                    String::new()
                },
            );
            for x in &f.samples {
                let _ = writeln!(
                    s,
                    "    {:<9} {}{}",
                    x.kind,
                    x.key,
                    if x.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", x.detail.join("; "))
                    }
                );
            }
            for n in &t.notes {
                let _ = writeln!(s, "    note: {n}");
            }
        }
        let d = self.differences();
        let left = self.remaining();
        let _ = if d == 0 {
            writeln!(s, "no differences")
        } else if left == 0 {
            writeln!(
                s,
                "{d} difference(s), all repaired: validate again to confirm"
            )
        } else {
            writeln!(s, "{left} difference(s) remain")
        };
        s
    }
}
