//! A self-contained HTML timeline of a check: one row per process, one bar
//! per operation, the failing ones marked; hovering a bar shows its call, its
//! answer and the model state after it in the longest linearizable prefix.
//! No network access: the CSS and the little script are inline.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use super::checker::{CheckReport, DESCRIPTION_LENGTH_MAX, shorten};
use super::history::Operation;
use super::model::Model;

/// The most operations drawn; a longer history is cut (the failing
/// partitions come first, so their operations are kept).
pub const OPERATIONS_DRAWN_MAX: usize = 5_000;

fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

const STYLE: &str = "body{font:13px sans-serif;margin:1em}\
.row{position:relative;height:22px;border-bottom:1px solid #eee}\
.label{position:absolute;left:0;width:90px;color:#555}\
.bar{position:absolute;height:16px;top:3px;background:#8bc34a;border-radius:3px;\
overflow:hidden;white-space:nowrap;font-size:11px;color:#111;box-sizing:border-box;\
border:1px solid #558b2f}\
.bar.unknown{background:#ffe082;border-color:#ff8f00}\
.bar.failing{background:#ef5350;border-color:#b71c1c;color:#fff}\
.bar.window{outline:2px dashed #b71c1c}\
.bar:hover{z-index:2;outline:2px solid #000}\
#tip{position:fixed;display:none;background:#222;color:#fff;padding:6px;\
border-radius:4px;white-space:pre;font:12px monospace;z-index:9;pointer-events:none}";

const SCRIPT: &str = "const tip=document.getElementById('tip');\
document.querySelectorAll('.bar').forEach(b=>{\
b.addEventListener('mousemove',e=>{tip.textContent=b.dataset.info;tip.style.display='block';\
tip.style.left=(e.clientX+12)+'px';tip.style.top=(e.clientY+12)+'px';});\
b.addEventListener('mouseleave',()=>{tip.style.display='none';});});";

/// Renders the timeline of `operations` with the verdicts of `report`.
pub fn render_html<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
    report: &CheckReport,
    title: &str,
) -> String {
    let mut failing: HashMap<usize, &'static str> = HashMap::new();
    let mut state_after: HashMap<usize, (usize, &str)> = HashMap::new();
    let mut drawn: Vec<usize> = Vec::new();
    let mut partitions: Vec<_> = report.partitions.iter().collect();
    partitions.sort_by_key(|partition| partition.counterexample.is_none());
    for partition in partitions {
        if let Some(counterexample) = &partition.counterexample {
            for index in &counterexample.window {
                failing.insert(*index, "window");
            }
            for index in counterexample
                .unplaceable
                .iter()
                .chain(&counterexample.blocking)
            {
                failing.insert(*index, "failing");
            }
            let first = counterexample.linearized_count - counterexample.linearized.len();
            for (position, step) in counterexample.linearized.iter().enumerate() {
                state_after.insert(step.operation, (first + position + 1, step.state.as_str()));
            }
        }
        drawn.extend(
            partition
                .operations
                .iter()
                .take(OPERATIONS_DRAWN_MAX - drawn.len()),
        );
    }
    // Times become ranks so that the picture does not depend on the clock's unit.
    let mut times: Vec<u64> = drawn
        .iter()
        .flat_map(|index| [operations[*index].call, operations[*index].completion])
        .filter(|time| *time != u64::MAX)
        .collect();
    times.sort_unstable();
    times.dedup();
    let span = (times.len() + 1) as f64;
    let rank = |time: u64| -> f64 {
        if time == u64::MAX {
            span
        } else {
            times.partition_point(|t| *t < time) as f64
        }
    };
    let mut rows: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for index in &drawn {
        rows.entry(operations[*index].process)
            .or_default()
            .push(*index);
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style>\
         </head><body><h2>{}</h2><p>model <b>{}</b>, verdict <b>{}</b>, {} of {} operations drawn. \
         Red: cannot be placed; dashed: the smallest window; yellow: outcome unknown.</p>",
        escape(title),
        escape(title),
        model.name(),
        report.verdict,
        drawn.len(),
        operations.len()
    );
    html.push_str("<div style=\"position:relative;margin-left:100px\">");
    for (process, indices) in &rows {
        let _ = write!(
            html,
            "<div class=\"row\"><span class=\"label\" style=\"left:-100px\">process {process}</span>"
        );
        for index in indices {
            let operation = &operations[*index];
            let left = 100.0 * rank(operation.call) / span;
            let width =
                (100.0 * (rank(operation.completion) - rank(operation.call)) / span).max(0.3);
            let description = shorten(
                model.describe_operation(&operation.input, operation.output.as_ref()),
                DESCRIPTION_LENGTH_MAX,
            );
            let mut class = String::from("bar");
            if operation.output.is_none() {
                class.push_str(" unknown");
            }
            if let Some(mark) = failing.get(index) {
                class.push(' ');
                class.push_str(mark);
            }
            let mut info = format!(
                "#{index} process {process}\n{description}\ncall {} completion {}",
                operation.call,
                if operation.completion == u64::MAX {
                    "unknown".to_string()
                } else {
                    operation.completion.to_string()
                }
            );
            if let Some((position, state)) = state_after.get(index) {
                let _ = write!(info, "\nlinearized #{position}; state after: {state}");
            }
            let _ = write!(
                html,
                "<div class=\"{class}\" style=\"left:{left:.3}%;width:{width:.3}%\" data-info=\"{}\">{}</div>",
                escape(&info),
                escape(&description)
            );
        }
        html.push_str("</div>");
    }
    let _ = write!(
        html,
        "</div><div id=\"tip\"></div><script>{SCRIPT}</script></body></html>"
    );
    html
}
