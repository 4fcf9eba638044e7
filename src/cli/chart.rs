//! Charts of benchmark results (`bench --plot`, `chart`): GFLOPS against problem size, one line
//! per (API, kernel, device), with an optional reference library (cuBLAS) as a dashed line. SVG or
//! PNG by file extension.
//!
//! Text is rendered with a TrueType font found on this host at run time (`TILEGEMM_FONT`, or
//! DejaVu/Liberation/Arial in the usual places), so building needs no system font library.

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use tilegemm::bench::Measurement;

/// One result of a reference library, as `cublas_sgemm.py` prints it (one JSON object per line).
#[derive(Clone, Debug, Deserialize)]
pub struct ReferencePoint {
    pub library: String,
    /// Products per call of a batched reference (1 where the file does not say).
    #[serde(default = "one")]
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub gflops: f64,
}

/// Reads reference results: JSON objects one per line (lines that are not JSON objects are skipped),
/// or one JSON array.
pub fn read_reference(path: &Path) -> Result<Vec<ReferencePoint>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let not_reference = || format!("{} holds no valid reference results", path.display());
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text).with_context(not_reference);
    }
    let points: Vec<ReferencePoint> = text
        .lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .map(serde_json::from_str)
        .collect::<serde_json::Result<_>>()
        .with_context(not_reference)?;
    if points.is_empty() {
        bail!(not_reference());
    }
    Ok(points)
}

const FONT_CANDIDATES: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a system font as plotters' "sans-serif", once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let candidates = std::env::var("TILEGEMM_FONT")
                .into_iter()
                .chain(FONT_CANDIDATES.iter().map(|s| s.to_string()));
            for path in candidates {
                if let Ok(bytes) = std::fs::read(&path) {
                    // Fonts live for the whole process: plotters wants them 'static.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                        .is_ok()
                    {
                        return Ok(());
                    }
                }
            }
            Err(
                "no TrueType font found for chart text: set TILEGEMM_FONT=/path/to/font.ttf \
                 (on Debian/Ubuntu: apt install fonts-dejavu-core)"
                    .to_string(),
            )
        })
        .clone()
        .map_err(|message| anyhow!(message))
}

/// Problem size on the x axis: N for N³, the geometric mean ∛(M·N·K) otherwise.
fn size(m: usize, n: usize, k: usize) -> f64 {
    (m as f64 * n as f64 * k as f64).cbrt()
}

/// Writes a chart of `measurements` (and `reference`) to `path` (.svg or .png).
pub fn chart(
    measurements: &[Measurement],
    reference: &[ReferencePoint],
    path: &Path,
    title: &str,
) -> Result<()> {
    ensure_font()?;
    let size_px = (1200, 760);
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match extension.as_str() {
        "svg" => draw(
            SVGBackend::new(path, size_px).into_drawing_area(),
            measurements,
            reference,
            title,
        ),
        "png" => draw(
            BitMapBackend::new(path, size_px).into_drawing_area(),
            measurements,
            reference,
            title,
        ),
        _ => Err("the chart file must end in .svg or .png".to_string()),
    }
    .map_err(|message| anyhow!("{}: {message}", path.display()))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    measurements: &[Measurement],
    reference: &[ReferencePoint],
    title: &str,
) -> std::result::Result<(), String> {
    let text = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for m in measurements {
        let device = m.device.split('(').next().unwrap_or("").trim();
        let device: String = device.chars().take(24).collect();
        let label = format!("{}/{} {} · {}", m.backend, m.api, m.kernel, device);
        series
            .entry(label)
            .or_default()
            .push((size(m.m, m.n, m.k), m.gflops));
    }
    let mut reference_line: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in reference {
        reference_line
            .entry(r.library.clone())
            .or_default()
            .push((size(r.m, r.n, r.k), r.gflops));
    }
    for points in series.values_mut().chain(reference_line.values_mut()) {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let all = || series.values().chain(reference_line.values()).flatten();
    if all().next().is_none() {
        return Err("nothing to plot".to_string());
    }
    let (x_min, x_max) = all().fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let (y_min, y_max) = all().fold((f64::MAX, 0.0f64), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let legend_entries = series.len() + reference_line.len() + 1;
    root.fill(&WHITE).map_err(text)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x_min * 0.9)..(x_max * 1.05),
            // Room below the lowest line for the legend: about a quarter decade per entry.
            ((y_min / 10f64.powf(0.22 * legend_entries as f64)).max(1e-4)..(y_max * 1.5))
                .log_scale(),
        )
        .map_err(text)?;
    chart
        .configure_mesh()
        .x_desc("problem size N (∛(M·N·K); N for N×N×N)")
        .y_desc("GFLOPS (kernel time, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1.0 {
                format!("{y:.0}")
            } else {
                format!("{y}")
            }
        })
        .axis_desc_style(("sans-serif", 18))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(text)?;
    for (i, (label, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(text)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(text)?;
    }
    for (label, points) in &reference_line {
        chart
            .draw_series(DashedLineSeries::new(
                points.iter().copied(),
                10,
                6,
                BLACK.stroke_width(3),
            ))
            .map_err(text)?
            .label(label.as_str())
            .legend(|(x, y)| PathElement::new([(x, y), (x + 24, y)], BLACK.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(text)?;
    root.present().map_err(text)
}

/// The batch of a reference point that does not say.
fn one() -> usize {
    1
}
