//! The Prometheus text exposition format (version 0.0.4), written by hand:
//! HELP and TYPE lines, label values escaped, histograms with cumulative
//! `le` buckets, `_sum` and `_count`.

use std::fmt::Write;

use super::LatencyFamily;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
        }
    }
}

/// Upper bounds of the `/metrics` histogram buckets, in µs: tens of
/// microseconds apart below 1 ms, then coarser up to a minute.
pub const LATENCY_BUCKETS_MICROS: [u64; 38] = [
    25, 50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 700, 800, 900, 1_000, 1_250, 1_500, 2_000,
    2_500, 3_000, 4_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 50_000, 75_000, 100_000,
    250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
];

/// The quantiles shown as gauges over the recent window.
pub const RECENT_QUANTILES: [(f64, &str); 5] = [
    (0.5, "0.5"),
    (0.9, "0.9"),
    (0.99, "0.99"),
    (0.999, "0.999"),
    (0.9999, "0.9999"),
];

/// A text exposition being written.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Exposition {
    /// Starts a family: its HELP and TYPE lines.
    pub fn family(&mut self, name: &str, help: &str, ty: MetricType) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", ty.name());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn secs(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// Histograms (cumulative since start) and quantile gauges (recent window).
pub fn render_latency(out: &mut Exposition, families: &[LatencyFamily<'_>]) {
    let bounds: Vec<String> = LATENCY_BUCKETS_MICROS
        .iter()
        .map(|b| number(secs(*b)))
        .collect();
    for f in families {
        out.family(f.name, f.help, MetricType::Histogram);
        let bucket = format!("{}_bucket", f.name);
        let sum = format!("{}_sum", f.name);
        let count = format!("{}_count", f.name);
        for (scope, table) in &f.tables {
            for (op, outcome, series) in table.series() {
                let snap = series.cumulative();
                let mut labels: Vec<(&str, &str)> = Vec::with_capacity(4);
                if let Some(l) = f.scope_label {
                    labels.push((l, scope));
                }
                labels.push(("op", op.name()));
                labels.push(("outcome", outcome.name()));
                let cumulative = cumulative_buckets(&snap);
                for (b, n) in bounds.iter().zip(cumulative) {
                    let mut l = labels.clone();
                    l.push(("le", b));
                    out.sample(&bucket, &l, n as f64);
                }
                let mut l = labels.clone();
                l.push(("le", "+Inf"));
                out.sample(&bucket, &l, snap.count() as f64);
                out.sample(&sum, &labels, secs(snap.sum_micros));
                out.sample(&count, &labels, snap.count() as f64);
            }
        }
        let base = f.name.trim_end_matches("_seconds");
        let recent = format!("{base}_recent_seconds");
        let recent_max = format!("{base}_recent_max_seconds");
        let mut quantiles = Exposition::default();
        let mut maxima = Exposition::default();
        // A summary: quantiles over the recent window (as client libraries'
        // summaries with a max age), `_sum` and `_count` since the start.
        quantiles.family(
            &recent,
            &format!(
                "Quantiles of {} over the recent window ([metrics] window); _sum and _count since start",
                f.name
            ),
            MetricType::Summary,
        );
        maxima.family(
            &recent_max,
            &format!("Largest value of {} over the recent window", f.name),
            MetricType::Gauge,
        );
        for (scope, table) in &f.tables {
            for (op, outcome, series) in table.series() {
                let snap = series.recent();
                let total = series.cumulative();
                let mut labels: Vec<(&str, &str)> = Vec::with_capacity(4);
                if let Some(l) = f.scope_label {
                    labels.push((l, scope));
                }
                labels.push(("op", op.name()));
                labels.push(("outcome", outcome.name()));
                for (q, name) in RECENT_QUANTILES {
                    let mut l = labels.clone();
                    l.push(("quantile", name));
                    let v = if snap.count() == 0 {
                        f64::NAN
                    } else {
                        secs(snap.quantile(q))
                    };
                    quantiles.sample(&recent, &l, v);
                }
                quantiles.sample(&format!("{recent}_sum"), &labels, secs(total.sum_micros));
                quantiles.sample(&format!("{recent}_count"), &labels, total.count() as f64);
                let max = if snap.count() == 0 {
                    0.0
                } else {
                    secs(snap.histogram.max())
                };
                maxima.sample(&recent_max, &labels, max);
            }
        }
        out.out.push_str(&quantiles.finish());
        out.out.push_str(&maxima.finish());
    }
}

/// For each bound of `LATENCY_BUCKETS_MICROS`, how many values were at most
/// that (a value counts by its HDR bucket's lowest value, exact below 2 ms).
fn cumulative_buckets(snap: &super::Snapshot) -> Vec<u64> {
    let mut counts = vec![0u64; LATENCY_BUCKETS_MICROS.len()];
    for v in snap.histogram.iter_recorded() {
        let value = snap.histogram.lowest_equivalent(v.value_iterated_to());
        let first = LATENCY_BUCKETS_MICROS.partition_point(|b| *b < value);
        if first < counts.len() {
            counts[first] += v.count_at_value();
        }
    }
    let mut running = 0;
    for c in counts.iter_mut() {
        running += *c;
        *c = running;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_numbers_plain() {
        let mut e = Exposition::default();
        e.family("x_total", "help", MetricType::Counter);
        e.sample("x_total", &[("a", "q\"b\\c\nd")], 3.0);
        e.sample("x_total", &[], 0.25);
        let t = e.finish();
        assert!(t.contains("x_total{a=\"q\\\"b\\\\c\\nd\"} 3\n"), "{t}");
        assert!(t.contains("x_total 0.25\n"));
    }

    #[test]
    fn buckets_are_cumulative() {
        let s = super::super::LatencySeries::new(1, std::time::Duration::from_secs(60));
        for us in [10, 25, 26, 990, 1_000, 70_000_000] {
            s.record(std::time::Duration::from_micros(us));
        }
        let b = cumulative_buckets(&s.cumulative());
        assert_eq!(b[0], 2); // <= 25 µs
        assert_eq!(b[1], 3); // <= 50 µs
        assert_eq!(b[14], 5); // <= 1 ms
        assert_eq!(*b.last().unwrap(), 5); // 70 s only in +Inf
    }
}
