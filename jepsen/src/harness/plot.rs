//! Latency and throughput plots over time as self-contained SVG, nemesis periods shaded.
//! Written by hand rather than through a plotting crate so that no font or system library
//! is needed to render them: the text is left to the browser.

use std::fmt::Write as _;

use super::history::{Outcome, Sample};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 360.0;
const MARGIN_LEFT: f64 = 64.0;
const MARGIN_RIGHT: f64 = 16.0;
const MARGIN_TOP: f64 = 28.0;
const MARGIN_BOTTOM: f64 = 40.0;

fn colour(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Ok => "#1f77b4",
        Outcome::Fail => "#d62728",
        Outcome::Info => "#ff7f0e",
    }
}

struct Frame {
    x_max: f64,
    y_max: f64,
    text: String,
}

impl Frame {
    fn new(
        title: &str,
        y_label: &str,
        x_max: f64,
        y_max: f64,
        periods: &[(u64, u64, String)],
    ) -> Self {
        let x_max = x_max.max(1e-9);
        let y_max = y_max.max(1e-9);
        let mut text = String::new();
        let _ = write!(
            text,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(text, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let mut frame = Self { x_max, y_max, text };
        for (start, stop, fault) in periods {
            let left = frame.x(*start as f64 / 1e9);
            let right = frame.x(*stop as f64 / 1e9);
            let _ = write!(
                frame.text,
                r##"<rect x="{left:.1}" y="{MARGIN_TOP}" width="{:.1}" height="{:.1}" fill="#999" fill-opacity="0.25"><title>{fault}</title></rect>"##,
                (right - left).max(1.0),
                HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
            );
            let _ = write!(
                frame.text,
                r##"<text x="{left:.1}" y="{:.1}" font-size="9" fill="#555">{fault}</text>"##,
                MARGIN_TOP + 10.0
            );
        }
        let bottom = HEIGHT - MARGIN_BOTTOM;
        let right = WIDTH - MARGIN_RIGHT;
        let _ = write!(
            frame.text,
            r#"<line x1="{MARGIN_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/><line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{bottom}" stroke="black"/>"#
        );
        let _ = write!(
            frame.text,
            r#"<text x="{}" y="18" text-anchor="middle">{title}</text>"#,
            WIDTH / 2.0
        );
        let _ = write!(
            frame.text,
            r#"<text x="{}" y="{}" text-anchor="middle">time (s)</text>"#,
            WIDTH / 2.0,
            HEIGHT - 6.0
        );
        let _ = write!(
            frame.text,
            r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{y_label}</text>"#,
            HEIGHT / 2.0,
            HEIGHT / 2.0
        );
        for step in 0..=4 {
            let fraction = f64::from(step) / 4.0;
            let x_value = x_max * fraction;
            let y_value = y_max * fraction;
            let _ = write!(
                frame.text,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{x_value:.1}</text><text x="{:.1}" y="{:.1}" text-anchor="end">{y_value:.1}</text>"#,
                frame.x(x_value),
                bottom + 16.0,
                MARGIN_LEFT - 4.0,
                frame.y(y_value) + 4.0
            );
        }
        frame
    }

    fn x(&self, seconds: f64) -> f64 {
        MARGIN_LEFT + (seconds / self.x_max).min(1.0) * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        HEIGHT
            - MARGIN_BOTTOM
            - (value / self.y_max).min(1.0) * (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)
    }

    fn finish(mut self) -> String {
        let legend = [Outcome::Ok, Outcome::Fail, Outcome::Info];
        for (position, outcome) in legend.iter().enumerate() {
            let x = WIDTH - MARGIN_RIGHT - 150.0 + 50.0 * position as f64;
            let _ = write!(
                self.text,
                r#"<rect x="{x}" y="8" width="10" height="10" fill="{}"/><text x="{}" y="17">{outcome:?}</text>"#,
                colour(*outcome),
                x + 13.0
            );
        }
        self.text.push_str("</svg>\n");
        self.text
    }
}

/// Latency of every operation (at its invocation time), coloured by outcome.
pub fn latency_svg(
    title: &str,
    samples: &[Sample],
    periods: &[(u64, u64, String)],
    end_ns: u64,
) -> String {
    let latency_ms = |sample: &Sample| (sample.complete_ns - sample.invoke_ns) as f64 / 1e6;
    let y_max = samples.iter().map(latency_ms).fold(1.0, f64::max) * 1.05;
    let mut frame = Frame::new(title, "latency (ms)", end_ns as f64 / 1e9, y_max, periods);
    for sample in samples {
        let _ = write!(
            frame.text,
            r#"<circle cx="{:.1}" cy="{:.1}" r="1.6" fill="{}"/>"#,
            frame.x(sample.invoke_ns as f64 / 1e9),
            frame.y(latency_ms(sample)),
            colour(sample.outcome)
        );
    }
    frame.finish()
}

/// Completed operations per second, one line per outcome.
pub fn throughput_svg(
    title: &str,
    samples: &[Sample],
    periods: &[(u64, u64, String)],
    end_ns: u64,
) -> String {
    let seconds = usize::try_from(end_ns / 1_000_000_000 + 1).unwrap_or(1);
    let outcomes = [Outcome::Ok, Outcome::Fail, Outcome::Info];
    let mut bins = vec![[0_u64; 3]; seconds];
    for sample in samples {
        let second = usize::try_from(sample.complete_ns / 1_000_000_000).unwrap_or(0);
        if let (Some(bin), Some(index)) = (
            bins.get_mut(second),
            outcomes
                .iter()
                .position(|outcome| *outcome == sample.outcome),
        ) {
            bin[index] += 1;
        }
    }
    let y_max = bins.iter().flatten().copied().max().unwrap_or(1) as f64 * 1.05;
    let mut frame = Frame::new(
        title,
        "operations / s",
        end_ns as f64 / 1e9,
        y_max.max(1.0),
        periods,
    );
    for (index, outcome) in outcomes.iter().enumerate() {
        let points: Vec<String> = bins
            .iter()
            .enumerate()
            .map(|(second, bin)| {
                format!(
                    "{:.1},{:.1}",
                    frame.x(second as f64 + 0.5),
                    frame.y(bin[index] as f64)
                )
            })
            .collect();
        let _ = write!(
            frame.text,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            colour(*outcome),
            points.join(" ")
        );
    }
    frame.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_svg_with_one_mark_per_sample_and_a_shaded_period() {
        let samples: Vec<Sample> = (0..10)
            .map(|index| Sample {
                invoke_ns: index * 100_000_000,
                complete_ns: index * 100_000_000 + 5_000_000,
                outcome: if index == 3 {
                    Outcome::Info
                } else {
                    Outcome::Ok
                },
            })
            .collect();
        let periods = vec![(200_000_000, 500_000_000, "kill-one".to_string())];
        let latency = latency_svg("t", &samples, &periods, 1_000_000_000);
        assert!(latency.starts_with("<svg") && latency.trim_end().ends_with("</svg>"));
        assert_eq!(latency.matches("<circle").count(), 10);
        assert_eq!(latency.matches("<title>kill-one</title>").count(), 1);
        let throughput = throughput_svg("t", &samples, &periods, 1_000_000_000);
        assert_eq!(throughput.matches("<polyline").count(), 3);
    }
}
