//! A small hand-written SVG line chart (no font or bitmap dependencies): axes with ticks, one
//! polyline with markers per series, a legend. Axes may be logarithmic. A series is drawn in
//! one of three styles: measured (solid, coloured), reference (grey, dotted, no markers: the
//! floor and SQLite) or invalid (faded and dashed, "(invalid)" in the legend: failed
//! operations or anomalies, so it cannot read as a winner).

use std::fmt::Write;

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: Style,
}

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Measured,
    Reference,
    Invalid,
}

/// How to draw a chart.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub log_y: bool,
    /// Put the y axis at 0 (linear axes only).
    pub y_from_zero: bool,
    /// Ticks on the x axis at exactly these values (e.g. the measured process counts) instead
    /// of round ones.
    pub x_ticks: Option<Vec<f64>>,
}

const W: f64 = 760.0;
const H: f64 = 440.0;
const L: f64 = 80.0;
const R: f64 = 200.0;
const T: f64 = 40.0;
const B: f64 = 60.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1e6 {
        format!("{:.0}M", v / 1e6)
    } else if v.abs() >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// The axis range and its ticks.
fn axis(lo: f64, hi: f64, log: bool, from_zero: bool) -> (f64, f64, Vec<f64>) {
    if log {
        let lo = lo.max(1e-9);
        let (a, b) = (lo.log10().floor(), hi.max(lo * 1.0001).log10().ceil());
        let ticks = (a as i32..=b as i32).map(|e| 10f64.powi(e)).collect();
        (10f64.powf(a), 10f64.powf(b), ticks)
    } else {
        let lo = if from_zero { 0.0f64.min(lo) } else { lo };
        let hi = if hi <= lo { lo + 1.0 } else { hi };
        let raw = (hi - lo) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let (a, b) = ((lo / step).floor() * step, (hi / step).ceil() * step);
        let n = ((b - a) / step).round() as usize;
        (a, b, (0..=n).map(|i| a + i as f64 * step).collect())
    }
}

/// Render `series` as an SVG document.
pub fn line_chart(c: &Chart<'_>, series: &[Series]) -> String {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if (c.log_x && x <= 0.0) || (c.log_y && y <= 0.0) {
            continue;
        }
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (1.0, 2.0, 1.0, 2.0);
    }
    let (xa, xb, mut xt) = axis(x0, x1, c.log_x, false);
    if let Some(ticks) = &c.x_ticks {
        xt = ticks
            .iter()
            .copied()
            .filter(|t| (xa..=xb).contains(t))
            .collect();
    }
    let (ya, yb, yt) = axis(y0, y1, c.log_y, c.y_from_zero);
    let map = |v: f64, a: f64, b: f64, log: bool| {
        if log {
            (v.log10() - a.log10()) / (b.log10() - a.log10())
        } else {
            (v - a) / (b - a)
        }
    };
    let px = |x: f64| L + map(x, xa, xb, c.log_x) * (W - L - R);
    let py = |y: f64| H - B - map(y, ya, yb, c.log_y) * (H - T - B);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        (L + W - R) / 2.0,
        esc(c.title)
    );
    for &t in &xt {
        let x = px(t);
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{T}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            H - B,
            H - B + 16.0,
            fmt_tick(t)
        );
    }
    for &t in &yt {
        let y = py(t);
        let _ = write!(
            s,
            r##"<line x1="{L}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            W - R,
            L - 6.0,
            y + 4.0,
            fmt_tick(t)
        );
    }
    let _ = write!(
        s,
        r#"<rect x="{L}" y="{T}" width="{}" height="{}" fill="none" stroke="black"/>"#,
        W - L - R,
        H - T - B
    );
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (L + W - R) / 2.0,
        H - 18.0,
        esc(c.x_label)
    );
    let _ = write!(
        s,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>"#,
        (T + H - B) / 2.0,
        (T + H - B) / 2.0,
        esc(c.y_label)
    );
    for (i, se) in series.iter().enumerate() {
        let (color, dash, opacity, name) = match se.style {
            Style::Measured => (COLORS[i % COLORS.len()], "", 1.0, se.name.clone()),
            Style::Reference => ("#555", r#" stroke-dasharray="2 4""#, 1.0, se.name.clone()),
            Style::Invalid => (
                COLORS[i % COLORS.len()],
                r#" stroke-dasharray="8 5""#,
                0.45,
                format!("{} (invalid)", se.name),
            ),
        };
        let p: Vec<String> = se
            .points
            .iter()
            .filter(|(x, y)| !(c.log_x && *x <= 0.0 || c.log_y && *y <= 0.0))
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" stroke-opacity="{opacity}"{dash} points="{}"/>"#,
            p.join(" ")
        );
        if se.points.len() <= 12 && se.style != Style::Reference {
            for xy in &p {
                let (x, y) = xy.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
            }
        }
        let ly = T + 14.0 + 18.0 * i as f64;
        let lx = W - R + 12.0;
        let _ = write!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3" stroke-opacity="{opacity}"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 22.0,
            lx + 28.0,
            ly + 4.0,
            esc(&name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_one_svg_with_a_line_per_series_and_escaped_names() {
        let c = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_x: true,
            log_y: false,
            y_from_zero: true,
            x_ticks: Some(vec![1.0, 2.0, 8.0]),
        };
        let svg = line_chart(
            &c,
            &[
                Series {
                    name: "a<b".into(),
                    points: vec![(1.0, 10.0), (2.0, 20.0), (8.0, 5.0)],
                    style: Style::Measured,
                },
                Series {
                    name: "c".into(),
                    points: vec![(1.0, 1.0), (0.0, 3.0)],
                    style: Style::Invalid,
                },
            ],
        );
        assert!(svg.contains("c (invalid)") && svg.contains("stroke-dasharray"));
        // Ticks at the measured x values, not at powers of ten only.
        for t in ["1", "2", "8"] {
            assert!(svg.contains(&format!(">{t}</text>")), "no tick {t}");
        }
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
