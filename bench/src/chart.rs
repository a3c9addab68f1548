//! PNG line chart of benchmark throughput: wallets per second against the number of wallets N.
//!
//! Everything is pure Rust (plotters' bitmap backend, text drawn by `ab_glyph`) and the font is
//! embedded in the binary, so drawing a chart needs no system library (fontconfig, freetype) at
//! build or run time. The font is a subset of DejaVu Sans (Latin-1 plus a few punctuation
//! marks; `DejaVuSans.LICENSE` beside it gives its license and how it was made); characters
//! outside it are drawn as an empty box.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, ensure};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One line of the chart: a setup's throughput at each size it was measured at.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(u64, f64)>,
}

/// Everything is drawn on a bitmap; a concrete type keeps the helpers free of generic bounds.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

const WIDTH: u32 = 1200;
/// The height with up to about twenty series; more make it taller (see [`chart_height`]).
const HEIGHT: u32 = 700;
/// The legend's first row, below the title, and the space between rows.
const LEGEND_TOP: u32 = 30;
const LEGEND_ROW: u32 = 28;
/// The legend gets its own column right of the plot, so it never hides a line whatever the data.
const LEGEND_MIN_WIDTH: u32 = 200;
const LEGEND_MAX_WIDTH: u32 = 420;
/// Where legend names start: left of them, a sample of the series' line and marker.
const LEGEND_TEXT_X: u32 = 50;
const LEGEND_RIGHT_PAD: u32 = 12;
const FONT_FAMILY: &str = "sans-serif";
const TITLE_SIZE: u32 = 26;
const AXIS_DESC_SIZE: u32 = 20;
const LABEL_SIZE: u32 = 16;
const MARKER_SIZE: u32 = 5;

/// Qualitative palette as 0xRRGGBB (d3's category10 plus two dark tones): twelve colours that
/// stay apart on white. Each series also gets a marker shape, so lines stay distinguishable in
/// greyscale and when the colours repeat past twelve series.
const PALETTE: [u32; 12] = [
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf,
    0x000000, 0x393b79,
];

/// The chart's height for `rows` legend rows: every row below the title, with a margin under
/// the last. A fixed height put the 25th and 26th of the bench's 26 series off the bottom.
fn chart_height(rows: usize) -> u32 {
    // Room above the legend: the top margin, the title and the space plotters leaves under it.
    const TITLE_ROOM: u32 = 12 + 2 * TITLE_SIZE;
    let rows = u32::try_from(rows).unwrap_or(u32::MAX);
    HEIGHT.max(rows.saturating_mul(LEGEND_ROW).saturating_add(TITLE_ROOM + LEGEND_TOP + LEGEND_ROW / 2))
}

/// Writes the chart to `path` as PNG (1200 wide, 700 high or taller for many series), titled
/// `title`.
///
/// The x axis (N) is logarithmic and ticked at the measured sizes (plus powers of ten where
/// there is room); the y axis is linear from zero so that heights compare honestly. Points need
/// not be sorted. A series with a single point shows as a lone marker, and when every point
/// shares one N the x range is widened around it.
///
/// With no points at all (an empty `series`, or only empty series) it still writes a chart,
/// one that says "no data", so a report that links the file never has a dangling link. Series
/// without points are left out of the legend.
///
/// Series are coloured by their position in `series` (twelve colours, three marker shapes) and
/// listed in that order in a legend column right of the plot, as tall as they need.
///
/// # Errors
///
/// Fails if a point has N = 0 (no place on a log axis) or a negative or non-finite
/// throughput, or if the file cannot be written. Nothing is written when the input is rejected.
pub fn render_png(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    validate(series)?;
    ensure_font_registered()?;
    // Drawing into memory and encoding here, rather than letting plotters write the file,
    // spares the `image` crate (most of plotters' build time) and never leaves a half-drawn
    // file behind when drawing fails.
    // A series keeps the colour and marker of its position in `series` even when one before it
    // is empty, so the same call site colours a setup the same way in every chart.
    let drawn: Vec<(usize, &Series)> =
        series.iter().enumerate().filter(|(_, s)| !s.points.is_empty()).collect();
    let height = chart_height(drawn.len());
    let mut pixels = vec![0u8; WIDTH as usize * height as usize * 3];
    draw(&BitMapBackend::with_buffer(&mut pixels, (WIDTH, height)).into_drawing_area(), title, &drawn)?;
    let png = encode_png(&pixels, height).context("encoding the chart as PNG")?;
    std::fs::write(path, png).with_context(|| format!("writing chart {}", path.display()))
}

/// Draws the series that have points (`drawn`, each with its position in the caller's list).
fn draw(root: &Area, title: &str, drawn: &[(usize, &Series)]) -> Result<()> {
    root.fill(&WHITE)?;
    // The top margin matters: plotters' ab_glyph text sits a little above its anchor, so a
    // title anchored at the very top edge would lose the tops of its letters.
    let body = root.margin(12, 0, 0, 0).titled(title, (FONT_FAMILY, TITLE_SIZE))?;
    if drawn.is_empty() {
        let (w, h) = body.dim_in_pixel();
        body.draw(&Text::new(
            "no data",
            (w as i32 / 2, h as i32 / 2),
            (FONT_FAMILY, AXIS_DESC_SIZE)
                .into_font()
                .color(&BLACK.mix(0.6))
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    } else {
        draw_chart(&body, drawn)?;
    }
    root.present()?;
    Ok(())
}

/// Encodes the RGB `pixels` drawn by plotters as an 8-bit RGB PNG, in memory: the file is
/// then written in one call whose every error surfaces (a dropped buffered writer would hide
/// a failed final flush).
fn encode_png(pixels: &[u8], height: u32) -> Result<Vec<u8>> {
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, WIDTH, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(pixels)?;
    writer.finish()?;
    Ok(png)
}

/// Rejects points that cannot be drawn, naming the series, rather than drawing a wrong chart.
fn validate(series: &[Series]) -> Result<()> {
    for s in series {
        for &(n, y) in &s.points {
            ensure!(n > 0, "series {:?}: N = 0 cannot be placed on a log axis", s.name);
            ensure!(
                y.is_finite() && y >= 0.0,
                "series {:?}: throughput {y} at N = {n} is not a finite, non-negative number",
                s.name
            );
        }
    }
    Ok(())
}

/// plotters' `ab_glyph` text renderer only knows fonts registered by name, in a process-wide
/// table; registering once per process is enough, and this makes the module self-contained.
fn ensure_font_registered() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // 34 KB instead of DejaVu Sans' 760 KB, and with letter spacing fixed for plotters:
        // DejaVuSans.LICENSE says what was changed, why, and the script that did it.
        let font: &'static [u8] = include_bytes!("DejaVuSans-subset.ttf");
        register_font(FONT_FAMILY, FontStyle::Normal, font).is_ok()
    });
    ensure!(ok, "the embedded chart font is not a valid TrueType font");
    Ok(())
}

fn draw_chart(area: &Area, drawn: &[(usize, &Series)]) -> Result<()> {
    let label_font: TextStyle = (FONT_FAMILY, LABEL_SIZE).into();
    let widest_name = drawn
        .iter()
        .map(|(_, s)| area.estimate_text_size(&s.name, &label_font).map(|(w, _)| w))
        .try_fold(0, |acc, w| w.map(|w| acc.max(w)))?;
    let legend_width =
        (widest_name + LEGEND_TEXT_X + LEGEND_RIGHT_PAD).clamp(LEGEND_MIN_WIDTH, LEGEND_MAX_WIDTH);
    let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 - legend_width);

    let ns: Vec<f64> = drawn.iter().flat_map(|(_, s)| s.points.iter().map(|&(n, _)| n as f64)).collect();
    let (x_lo, x_hi) = padded_log_range(&ns);
    let y_max = drawn.iter().flat_map(|(_, s)| s.points.iter().map(|&(_, y)| y)).fold(0.0, f64::max);
    // Headroom above the highest point; a chart of zeros still needs a non-empty range.
    let y_hi = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };

    let x_axis = (x_lo..x_hi)
        .log_scale()
        .with_key_points(x_ticks(&ns, x_lo, x_hi))
        .with_light_points(x_grid(x_lo, x_hi));
    let mut chart = ChartBuilder::on(&plot_area)
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(x_axis, 0.0..y_hi)?;
    chart
        .configure_mesh()
        .x_desc("wallets (N)")
        .y_desc("wallets per second")
        .axis_desc_style((FONT_FAMILY, AXIS_DESC_SIZE))
        .label_style((FONT_FAMILY, LABEL_SIZE))
        .x_label_formatter(&|n| compact(*n))
        .y_label_formatter(&|y| compact(*y))
        .bold_line_style(BLACK.mix(0.15))
        .light_line_style(BLACK.mix(0.05))
        // Faint lines between the labelled values only clutter the linear axis.
        .y_max_light_lines(0)
        .draw()?;

    for &(i, s) in drawn {
        let style = series_style(i);
        let mut points: Vec<(f64, f64)> = s.points.iter().map(|&(n, y)| (n as f64, y)).collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart.draw_series(LineSeries::new(points.iter().copied(), style.stroke_width(2)))?;
        for &p in &points {
            draw_marker(chart.plotting_area(), i, p, style.filled())?;
        }
    }

    draw_legend(&legend_area, drawn, legend_width)?;
    Ok(())
}

/// One row per series: a sample of its line and marker, then its name (shortened with an
/// ellipsis if it would not fit in the widest legend column).
fn draw_legend(area: &Area, drawn: &[(usize, &Series)], width: u32) -> Result<()> {
    let font = (FONT_FAMILY, LABEL_SIZE).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center));
    let text_room = width.saturating_sub(LEGEND_TEXT_X + LEGEND_RIGHT_PAD);
    for (row, &(i, s)) in drawn.iter().enumerate() {
        let y = (LEGEND_TOP + row as u32 * LEGEND_ROW) as i32;
        let style = series_style(i);
        area.draw(&PathElement::new(vec![(5, y), (40, y)], style.stroke_width(2)))?;
        draw_marker(area, i, (22, y), style.filled())?;
        let name = fit_text(area, &s.name, &font, text_room)?;
        area.draw(&Text::new(name, (LEGEND_TEXT_X as i32, y), font.clone()))?;
    }
    Ok(())
}

/// Cuts `text` down, with a trailing ellipsis, until it is at most `max_width` pixels wide.
fn fit_text(area: &Area, text: &str, font: &TextStyle, max_width: u32) -> Result<String> {
    let mut fitted = text.to_owned();
    let mut keep = text.chars().count();
    while keep > 0 && area.estimate_text_size(&fitted, font)?.0 > max_width {
        keep -= 1;
        fitted = text.chars().take(keep).collect::<String>() + "…";
    }
    Ok(fitted)
}

/// Series `i`'s colour, from [`PALETTE`] round and round.
fn series_style(i: usize) -> ShapeStyle {
    let [_, r, g, b] = PALETTE[i % PALETTE.len()].to_be_bytes();
    RGBColor(r, g, b).into()
}

/// Draws the marker of series `i` centred on `at`, in the coordinates of `area` (data
/// coordinates on the plot, pixels in the legend). The shape shifts once the palette wraps, so
/// series 0 and 12 still differ.
fn draw_marker<CT>(
    area: &DrawingArea<BitMapBackend, CT>,
    i: usize,
    at: CT::From,
    style: ShapeStyle,
) -> Result<()>
where
    CT: CoordTranslate,
    CT::From: Clone,
{
    let s = MARKER_SIZE as i32;
    let at = EmptyElement::at(at);
    match (i + i / PALETTE.len()) % 3 {
        0 => area.draw(&(at + Circle::new((0, 0), MARKER_SIZE, style)))?,
        1 => area.draw(&(at + TriangleMarker::new((0, 0), MARKER_SIZE + 2, style)))?,
        _ => area.draw(&(at + Rectangle::new([(-s, -s), (s, s)], style)))?,
    }
    Ok(())
}

/// The x range around the measured sizes, padded so end points are not drawn on the frame.
/// The padding is in log space, and never less than a factor of about 1.4 each side, which
/// also gives a sensible range when every point has the same N.
fn padded_log_range(ns: &[f64]) -> (f64, f64) {
    let lo = ns.iter().copied().fold(f64::INFINITY, f64::min).log10();
    let hi = ns.iter().copied().fold(f64::NEG_INFINITY, f64::max).log10();
    let pad = ((hi - lo) * 0.05).max(0.15);
    (10f64.powf(lo - pad), 10f64.powf(hi + pad))
}

/// Labelled x ticks: every measured size (what a reader wants to read off), then the powers of
/// ten in range; a tick too close to one already kept is dropped so labels do not overlap.
fn x_ticks(ns: &[f64], lo: f64, hi: f64) -> Vec<f64> {
    // About 7% of the axis width keeps labels like "100k" apart on a ~800 px wide plot.
    let min_gap = (hi / lo).log10() * 0.07;
    let mut measured = ns.to_vec();
    measured.sort_by(f64::total_cmp);
    measured.dedup();
    let decades = (lo.log10().ceil() as i32..=hi.log10().floor() as i32).map(|k| 10f64.powi(k));
    let mut ticks: Vec<f64> = Vec::new();
    for candidate in measured.into_iter().chain(decades) {
        if ticks.iter().all(|t| (t.log10() - candidate.log10()).abs() >= min_gap) {
            ticks.push(candidate);
        }
    }
    ticks.sort_by(f64::total_cmp);
    ticks
}

/// Unlabelled grid lines at 1..9 times each power of ten: the usual log-paper look, which
/// shows the reader that the axis is logarithmic.
fn x_grid(lo: f64, hi: f64) -> Vec<f64> {
    (lo.log10().floor() as i32..=hi.log10().ceil() as i32)
        .flat_map(|k| (1..=9).map(move |m| f64::from(m) * 10f64.powi(k)))
        .filter(|v| (lo..=hi).contains(v))
        .collect()
}

/// Short axis labels: 2000 -> "2k", 1500000 -> "1.5M", 0.25 -> "0.25".
fn compact(v: f64) -> String {
    let (scaled, suffix) = match v.abs() {
        a if a >= 1e6 => (v / 1e6, "M"),
        a if a >= 1e3 => (v / 1e3, "k"),
        _ => (v, ""),
    };
    let digits = format!("{scaled:.2}");
    let digits = digits.trim_end_matches('0').trim_end_matches('.');
    format!("{digits}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file in the temp dir that is removed when the test ends, pass or fail.
    struct TempPng(std::path::PathBuf);
    impl TempPng {
        fn new(tag: &str) -> Self {
            Self(std::env::temp_dir().join(format!("rotor-chart-{tag}-{}.png", std::process::id())))
        }
    }
    impl Drop for TempPng {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn series(name: &str, points: &[(u64, f64)]) -> Series {
        Series { name: name.to_owned(), points: points.to_vec() }
    }

    /// A whole chart compresses to tens of KB; a few KB means lines or text went missing.
    fn assert_png(path: &Path, min_bytes: usize) {
        let bytes = std::fs::read(path).expect("chart file was written");
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert!(bytes.len() > min_bytes, "suspiciously small PNG: {} bytes", bytes.len());
        let reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().expect("PNG decodes");
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
    }

    /// The legend of as many series as the bench draws, and more, ends above the bottom edge:
    /// the lowest ink in the legend column is a margin away from it.
    #[test]
    fn a_long_legend_makes_the_chart_taller_and_fits() {
        let out = TempPng::new("thirty");
        let data: Vec<Series> = (0..30)
            .map(|i| series(&format!("setup number {i}"), &[(100_000, 1_000.0 * f64::from(i + 1))]))
            .collect();
        render_png(&out.0, "thirty series", &data).expect("chart renders");
        let bytes = std::fs::read(&out.0).unwrap();
        let mut reader = png::Decoder::new(std::io::Cursor::new(&bytes)).read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut pixels).unwrap();
        let height = chart_height(30);
        assert!(height > HEIGHT);
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, height));
        // The legend column: its last 150 pixels of width, which no plot reaches.
        let row_bytes = WIDTH as usize * 3;
        let inked = |y: usize| {
            pixels[y * row_bytes..][..row_bytes][(WIDTH as usize - 150) * 3..].iter().any(|&b| b < 128)
        };
        let lowest = (0..height as usize).rev().find(|&y| inked(y)).expect("a legend was drawn");
        assert!(lowest + 10 < height as usize, "legend ink at row {lowest} of {height}");
        assert!(lowest > HEIGHT as usize - 50, "the thirtieth row is not drawn (lowest ink {lowest})");
    }

    #[test]
    fn renders_three_series() {
        let out = TempPng::new("three");
        let data = [
            series(
                "rotate SQLite",
                &[(2_000, 9_500.0), (10_000, 21_000.0), (100_000, 30_500.0), (1_000_000, 31_200.0)],
            ),
            series(
                "raw rewrite SQLite",
                &[(2_000, 41_000.0), (10_000, 88_000.0), (100_000, 120_000.0), (1_000_000, 118_000.0)],
            ),
            series("OpenBao Transit rewrap", &[(2_000, 1_900.0), (10_000, 2_300.0), (100_000, 2_350.0)]),
        ];
        render_png(&out.0, "KEK rotation throughput", &data).expect("chart renders");
        assert_png(&out.0, 16 * 1024);
    }

    #[test]
    fn renders_degenerate_inputs() {
        let out = TempPng::new("degenerate");
        // One N for every point, and a series with a single point.
        let data = [
            series("validate SQLite", &[(10_000, 50_000.0)]),
            series("rotate SQLite", &[(10_000, 20_000.0)]),
        ];
        render_png(&out.0, "one size", &data).expect("chart renders");
        assert_png(&out.0, 8 * 1024);
        render_png(&out.0, "nothing measured", &[]).expect("empty chart renders");
        assert_png(&out.0, 2 * 1024);
    }

    #[test]
    fn rejects_bad_input() {
        let out = TempPng::new("bad");
        assert!(render_png(&out.0, "t", &[series("s", &[(0, 1.0)])]).is_err());
        assert!(render_png(&out.0, "t", &[series("s", &[(1, f64::NAN)])]).is_err());
        assert!(render_png(Path::new("/nonexistent-dir/chart.png"), "t", &[]).is_err());
    }

    #[test]
    fn ticks_and_labels() {
        assert_eq!(compact(2_000.0), "2k");
        assert_eq!(compact(1_500_000.0), "1.5M");
        assert_eq!(compact(0.0), "0");
        let ns = [2_000.0, 10_000.0, 100_000.0, 1_000_000.0];
        let (lo, hi) = padded_log_range(&ns);
        assert_eq!(x_ticks(&ns, lo, hi), ns);
        let (lo, hi) = padded_log_range(&[5_000.0]);
        assert!(lo < 5_000.0 && hi > 5_000.0);
    }
}
