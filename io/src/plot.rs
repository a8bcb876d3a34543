//! PNG plots of training curves: one or more panels side by side (e.g. loss
//! and accuracy), each with any number of named line series and a legend.
//!
//! Drawn with `plotters` on its bitmap backend, with text rendered by
//! `ab_glyph` from a font embedded in the binary (DejaVu Sans, see
//! `io/assets/README.md`): no system font, fontconfig or other system library
//! is used, so plots work on a bare CI machine. The image is rendered in
//! memory, encoded with the `png` crate and written atomically
//! (`gradc_runtime::io::write_atomic`).
//!
//! ```no_run
//! use gradc_io::plot::{plot_curves, Panel, Series};
//! let loss = Panel {
//!     title: "Loss".into(),
//!     x_label: "epoch".into(),
//!     y_label: "cross-entropy".into(),
//!     series: vec![
//!         Series::new("train", vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.3)]),
//!         Series::new("test", vec![(1.0, 1.0), (2.0, 0.6), (3.0, 0.45)]),
//!     ],
//! };
//! plot_curves(std::path::Path::new("curves.png"), "MLP on MNIST", &[loss])?;
//! # Ok::<(), gradc_io::plot::PlotError>(())
//! ```

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The embedded font: DejaVu Sans (Bitstream Vera license, see `io/assets/`).
static FONT_TTF: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// The family name the embedded font is registered under (plotters' default).
const FONT: &str = "sans-serif";

/// Size in pixels of one panel.
const PANEL_SIZE: (u32, u32) = (640, 480);
/// Height in pixels of the band holding the overall title.
const TITLE_HEIGHT: u32 = 40;
/// The most panels one image may hold (an image 640 × 32 = 20480 pixels wide).
const MAX_PANELS: usize = 32;
/// Points per series up to which each point also gets a marker.
const MAX_MARKED_POINTS: usize = 60;

/// Line colors, in series order (Tableau 10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// One named curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// `(x, y)` points, drawn in order; points with a NaN or infinite
    /// coordinate are left out.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series called `name` through `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// One chart: axes, title, labels, and its series with a legend.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Panel {
    /// Shown above the chart.
    pub title: String,
    /// Label of the x axis, e.g. `epoch`.
    pub x_label: String,
    /// Label of the y axis, e.g. `loss`.
    pub y_label: String,
    /// The curves, each in its own color.
    pub series: Vec<Series>,
}

/// Everything that can go wrong drawing or writing a plot.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// There is nothing to draw.
    #[error("cannot plot {}: no panels", path.display())]
    NoPanels {
        /// The PNG path.
        path: PathBuf,
    },
    /// More panels than fit one image.
    #[error("cannot plot {}: {count} panels, at most {MAX_PANELS} fit one image", path.display())]
    TooManyPanels {
        /// The PNG path.
        path: PathBuf,
        /// The number of panels given.
        count: usize,
    },
    /// The embedded font could not be loaded (a build problem, not an input one).
    #[error("cannot plot {}: the embedded font could not be loaded", path.display())]
    Font {
        /// The PNG path.
        path: PathBuf,
    },
    /// plotters failed to draw.
    #[error("cannot plot {}: drawing failed: {message}", path.display())]
    Draw {
        /// The PNG path.
        path: PathBuf,
        /// The plotters error.
        message: String,
    },
    /// The image could not be encoded as PNG.
    #[error("cannot plot {}: PNG encoding failed: {source}", path.display())]
    Encode {
        /// The PNG path.
        path: PathBuf,
        /// The PNG encoder error.
        source: png::EncodingError,
    },
    /// The file could not be written (the previous file, if any, is intact).
    #[error("cannot write plot {}: {source}", path.display())]
    Write {
        /// The PNG path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// Registers the embedded font with plotters once per process.
fn font_ready() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, FONT_TTF).is_ok())
}

/// Draws `panels` side by side under `title` (no title band if empty) and
/// writes the result to `path` as a PNG, atomically.
///
/// Each panel is 640×480 pixels (at most 32 panels); the axes fit the finite points of all its
/// series (with a margin); a panel without points gets empty unit axes.
pub fn plot_curves(path: &Path, title: &str, panels: &[Panel]) -> Result<(), PlotError> {
    let png = render_png(path, title, panels)?;
    gradc_runtime::io::write_atomic(path, &png).map_err(|source| PlotError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Renders and encodes the plot; `path` is only used in error messages.
fn render_png(path: &Path, title: &str, panels: &[Panel]) -> Result<Vec<u8>, PlotError> {
    if panels.is_empty() {
        return Err(PlotError::NoPanels {
            path: path.to_path_buf(),
        });
    }
    if panels.len() > MAX_PANELS {
        return Err(PlotError::TooManyPanels {
            path: path.to_path_buf(),
            count: panels.len(),
        });
    }
    if !font_ready() {
        return Err(PlotError::Font {
            path: path.to_path_buf(),
        });
    }
    let title_height = if title.is_empty() { 0 } else { TITLE_HEIGHT };
    let width = PANEL_SIZE.0 * panels.len() as u32;
    let height = PANEL_SIZE.1 + title_height;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];

    draw(&mut rgb, (width, height), title, panels).map_err(|message| PlotError::Draw {
        path: path.to_path_buf(),
        message,
    })?;

    let encode_err = |source| PlotError::Encode {
        path: path.to_path_buf(),
        source,
    };
    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(encode_err)?;
    writer.write_image_data(&rgb).map_err(encode_err)?;
    writer.finish().map_err(encode_err)?;
    Ok(png_bytes)
}

fn draw(rgb: &mut [u8], size: (u32, u32), title: &str, panels: &[Panel]) -> Result<(), String> {
    let backend = BitMapBackend::<plotters::backend::RGBPixel>::with_buffer_and_format(rgb, size)
        .map_err(|e| e.to_string())?;
    let root = backend.into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let body = if title.is_empty() {
        root.clone()
    } else {
        root.titled(title, (FONT, 24)).map_err(|e| e.to_string())?
    };
    let areas = body.split_evenly((1, panels.len()));
    for (area, panel) in areas.iter().zip(panels) {
        draw_panel(area, panel).map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

/// The finite points of a series.
fn finite(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect()
}

/// `lo..hi` widened by `pad` of its length on each side, never empty.
fn padded(lo: f64, hi: f64, pad: f64) -> std::ops::Range<f64> {
    if !(lo.is_finite() && hi.is_finite()) || lo > hi {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= f64::EPSILON * lo.abs().max(hi.abs()).max(1.0) {
        let d = (lo.abs() * 0.05).max(0.5);
        return (lo - d)..(hi + d);
    }
    (lo - span * pad)..(hi + span * pad)
}

/// A tick label: at most 6 decimals without trailing zeros (`1`, `0.45`,
/// `60000`), or scientific notation for very large or small values (`2.5e9`).
fn tick_label(v: &f64) -> String {
    let trim = |s: String| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let a = v.abs();
    let s = if a != 0.0 && !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim(mantissa.to_string())),
            None => s,
        }
    } else {
        trim(format!("{v:.6}"))
    };
    if s == "-0" {
        "0".to_string()
    } else {
        s
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a, plotters::backend::RGBPixel>, plotters::coord::Shift>;

fn draw_panel(area: &Area<'_>, panel: &Panel) -> Result<(), Box<dyn std::error::Error + 'static>> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = panel
        .series
        .iter()
        .map(|s| (s.name.as_str(), finite(&s.points)))
        .collect();
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let xr = padded(x0, x1, 0.02);
    let yr = padded(y0, y1, 0.05);

    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(xr, yr.clone())?;
    chart
        .configure_mesh()
        .x_desc(&panel.x_label)
        .y_desc(&panel.y_label)
        .x_label_formatter(&tick_label)
        .y_label_formatter(&tick_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .draw()?;

    let mut ends_high = 0usize;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        if points.len() <= MAX_MARKED_POINTS {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        if let Some(&(_, y)) = points.last() {
            if y > (yr.start + yr.end) / 2.0 {
                ends_high += 1;
            }
        }
    }

    if series.iter().any(|(name, _)| !name.is_empty()) {
        // Put the legend in the right-hand corner the curves end away from
        // (bottom for accuracies, which end high; top for losses).
        let position = if 2 * ends_high > series.len() {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        };
        chart
            .configure_series_labels()
            .position(position)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves(n: usize) -> Vec<Panel> {
        let epochs: Vec<f64> = (1..=n).map(|e| e as f64).collect();
        let curve = |f: &dyn Fn(f64) -> f64| epochs.iter().map(|&e| (e, f(e))).collect();
        vec![
            Panel {
                title: "Loss".into(),
                x_label: "epoch".into(),
                y_label: "cross-entropy".into(),
                series: vec![
                    Series::new("train", curve(&|e| 2.3 / e)),
                    Series::new("test", curve(&|e| 2.3 / e + 0.1)),
                ],
            },
            Panel {
                title: "Accuracy".into(),
                x_label: "epoch".into(),
                y_label: "accuracy".into(),
                series: vec![
                    Series::new("train", curve(&|e| 1.0 - 0.5 / e)),
                    Series::new("test", curve(&|e| 0.97 - 0.5 / e)),
                ],
            },
        ]
    }

    /// Decodes a PNG, returning (width, height, distinct colors in a sample).
    fn decode(bytes: &[u8]) -> (u32, u32, usize) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        let mut colors: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).step_by(7).collect();
        colors.sort();
        colors.dedup();
        (info.width, info.height, colors.len())
    }

    #[test]
    fn writes_a_png_of_side_by_side_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        plot_curves(&path, "MLP on MNIST", &curves(10)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
        let (w, h, colors) = decode(&bytes);
        assert_eq!((w, h), (2 * 640, 480 + 40));
        // Anti-aliased text and four colored curves: many distinct colors.
        assert!(colors > 50, "{colors} colors");
        // Only the PNG is left in the directory (no temporary file).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn one_panel_comparing_two_models() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compare.png");
        let panel = Panel {
            title: "Test accuracy".into(),
            x_label: "epoch".into(),
            y_label: "accuracy".into(),
            series: vec![
                Series::new(
                    "SGD",
                    (1..=20)
                        .map(|e| (e as f64, 0.9 + 0.004 * e as f64))
                        .collect(),
                ),
                Series::new(
                    "Adam",
                    (1..=20)
                        .map(|e| (e as f64, 0.95 + 0.002 * e as f64))
                        .collect(),
                ),
            ],
        };
        plot_curves(&path, "", &[panel]).unwrap();
        let (w, h, _) = decode(&std::fs::read(&path).unwrap());
        assert_eq!((w, h), (640, 480));
    }

    #[test]
    fn degenerate_input_draws_or_errors_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.png");
        let panels = vec![
            // No series at all.
            Panel::default(),
            // Empty, single-point, constant, NaN and infinite values; no names.
            Panel {
                title: "odd".into(),
                series: vec![
                    Series::new("", vec![]),
                    Series::new("", vec![(1.0, 5.0)]),
                    Series::new(
                        "",
                        vec![
                            (0.0, 5.0),
                            (1.0, 5.0),
                            (f64::NAN, 1.0),
                            (2.0, f64::INFINITY),
                        ],
                    ),
                ],
                ..Panel::default()
            },
            // Many points (no markers) and huge values.
            Panel {
                title: "steps".into(),
                series: vec![Series::new(
                    "loss",
                    (0..5000)
                        .map(|s| (s as f64 * 1e9, 1e300 / (1.0 + s as f64)))
                        .collect(),
                )],
                ..Panel::default()
            },
        ];
        plot_curves(&path, "odd", &panels).unwrap();
        assert_eq!(decode(&std::fs::read(&path).unwrap()).0, 3 * 640);

        let e = plot_curves(&path, "none", &[]).unwrap_err();
        assert!(matches!(e, PlotError::NoPanels { .. }));
        assert!(e.to_string().contains("odd.png"), "{e}");
        let e = plot_curves(&path, "many", &vec![Panel::default(); 33]).unwrap_err();
        assert!(
            matches!(e, PlotError::TooManyPanels { count: 33, .. }),
            "{e}"
        );
    }

    #[test]
    fn tick_labels_are_short() {
        let labels: Vec<String> = [
            1.0,
            10.0,
            0.45,
            0.5,
            0.1 + 0.2,
            -0.0,
            -2.5,
            60000.0,
            2.5e9,
            5e-4,
            1e300,
        ]
        .iter()
        .map(tick_label)
        .collect();
        assert_eq!(
            labels,
            ["1", "10", "0.45", "0.5", "0.3", "0", "-2.5", "60000", "2.5e9", "5e-4", "1e300"]
        );
    }

    #[test]
    fn failed_write_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("p.png");
        let e = plot_curves(&path, "t", &curves(3)).unwrap_err();
        assert!(matches!(e, PlotError::Write { .. }));
        assert!(e.to_string().contains("missing-dir/p.png"), "{e}");
    }
}
