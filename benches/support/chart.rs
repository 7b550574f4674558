//! An SVG chart of latency percentiles: one panel per workload, one line
//! per scenario, percentiles on the x axis (p50 … p99.99, max), latency on a
//! logarithmic y axis.

use std::fmt::Write;

pub const PERCENTILES: [&str; 6] = ["p50", "p90", "p99", "p99.9", "p99.99", "max"];
const COLORS: [&str; 6] = [
    "#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#66a61e", "#a6761d",
];

pub struct Panel {
    pub title: String,
    /// (scenario, latency in µs at each of `PERCENTILES`).
    pub lines: Vec<(String, [u64; 6])>,
}

pub fn svg(title: &str, panels: &[Panel]) -> String {
    let (pw, ph, left, top, bottom) = (360.0, 300.0, 60.0, 50.0, 60.0);
    let width = left + panels.len() as f64 * (pw + 30.0) + 150.0;
    let height = top + ph + bottom;
    let max = panels
        .iter()
        .flat_map(|p| p.lines.iter().flat_map(|(_, v)| v.iter().copied()))
        .max()
        .unwrap_or(1000)
        .max(1000);
    let (lo, hi) = (10f64.log10(), (max as f64 * 1.5).log10().ceil());
    let y = |us: u64| top + ph - ((us.max(10) as f64).log10() - lo) / (hi - lo) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="15" font-weight="bold">{title}</text>"#
    );
    for (i, p) in panels.iter().enumerate() {
        let x0 = left + i as f64 * (pw + 30.0);
        let x = |j: usize| x0 + 20.0 + j as f64 * (pw - 40.0) / (PERCENTILES.len() - 1) as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            x0,
            top - 10.0,
            p.title
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        // Decades on the y axis.
        let mut d = lo as i32;
        while d as f64 <= hi {
            let us = 10u64.pow(d as u32);
            let yy = y(us);
            let label = if us >= 1_000_000 {
                format!("{} s", us / 1_000_000)
            } else if us >= 1000 {
                format!("{} ms", us / 1000)
            } else {
                format!("{us} µs")
            };
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" x2="{}" y1="{yy}" y2="{yy}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{label}</text>"##,
                x0 + pw,
                x0 - 4.0,
                yy + 4.0
            );
            d += 1;
        }
        for (j, name) in PERCENTILES.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="middle">{name}</text>"#,
                x(j),
                top + ph + 18.0
            );
        }
        for (k, (_, values)) in p.lines.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let points: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(j, v)| format!("{:.1},{:.1}", x(j), y(*v)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
                points.join(" ")
            );
            for pt in &points {
                let (px, py) = pt.split_once(',').unwrap();
                let _ = writeln!(s, r#"<circle cx="{px}" cy="{py}" r="3" fill="{color}"/>"#);
            }
        }
    }
    if let Some(first) = panels.first() {
        let lx = left + panels.len() as f64 * (pw + 30.0);
        for (k, (name, _)) in first.lines.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let ly = top + 20.0 + k as f64 * 20.0;
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}">{name}</text>"#,
                ly - 10.0,
                lx + 18.0,
                ly
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
