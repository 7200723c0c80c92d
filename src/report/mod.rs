//! Reports for people and tools: the Keras-style summary table and its JSON form. Returns strings; the
//! CLI prints them.

use std::fmt::Write;

use crate::ir::Graph;
use crate::passes::Stats;

/// The summary as a table: one row per layer, then totals.
pub fn summary_table(g: &Graph, s: &Stats) -> String {
    let arena = crate::plan::build(g, s.batch).arena_bytes;
    let headers = ["Layer (path)", "Op", "Output shape", "Params", "MACs"];
    let rows: Vec<[String; 5]> = s
        .layers
        .iter()
        .map(|l| {
            [
                l.path.clone(),
                l.op.to_string(),
                shape(&l.shape),
                thousands(l.params),
                thousands(l.macs),
            ]
        })
        .collect();
    let mut width = headers.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.len());
        }
    }
    let total_width: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
    let mut out = String::new();
    let _ = writeln!(out, "Model: {} (batch {})", g.name, s.batch);
    let line = |out: &mut String, cells: &[String; 5]| {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            cells[4],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
            w4 = width[4]
        );
    };
    let _ = writeln!(out, "{}", "-".repeat(total_width));
    line(&mut out, &headers.map(String::from));
    let _ = writeln!(out, "{}", "=".repeat(total_width));
    for r in &rows {
        line(&mut out, r);
    }
    let _ = writeln!(out, "{}", "=".repeat(total_width));
    let total = s.trainable.saturating_add(s.non_trainable);
    let nums = [
        ("Total params:", thousands(total), bytes(s.weight_bytes)),
        (
            "Trainable params:",
            thousands(s.trainable),
            bytes(s.trainable_bytes),
        ),
        (
            "Non-trainable params:",
            thousands(s.non_trainable),
            bytes(s.weight_bytes - s.trainable_bytes),
        ),
        ("MACs:", thousands(s.macs), si(s.macs)),
        (
            "FLOPs:",
            thousands(s.macs.saturating_mul(2)),
            format!("{}, 2 x MACs", si(s.macs.saturating_mul(2))),
        ),
        (
            "Activation memory:",
            thousands(s.activation_bytes),
            format!("{}, all layer outputs, no reuse", bytes(s.activation_bytes)),
        ),
        (
            "Planned arena:",
            thousands(arena),
            format!("{}, buffers reused, in place, concat slices", bytes(arena)),
        ),
        (
            "Weight memory:",
            thousands(s.weight_bytes),
            bytes(s.weight_bytes),
        ),
    ];
    let wl = nums.iter().map(|n| n.0.len()).max().unwrap_or(0);
    let wn = nums.iter().map(|n| n.1.len()).max().unwrap_or(0);
    for (label, n, extra) in nums {
        let _ = writeln!(out, "{label:<wl$} {n:>wn$} ({extra})");
    }
    for (name, id) in &g.outputs {
        let _ = writeln!(
            out,
            "Output {name}: {}",
            shape(&g.node(*id).ty.shape_at(s.batch))
        );
    }
    out
}

/// The summary as JSON (keys documented in docs/cli.md).
pub fn summary_json(g: &Graph, s: &Stats) -> String {
    let arena = crate::plan::build(g, s.batch).arena_bytes;
    let shapes =
        |list: &[(String, crate::ir::NodeId)]| -> serde_json::Map<String, serde_json::Value> {
            list.iter()
                .map(|(n, id)| {
                    (
                        n.clone(),
                        serde_json::json!(g.node(*id).ty.shape_at(s.batch)),
                    )
                })
                .collect()
        };
    let v = serde_json::json!({
        "model": g.name,
        "batch": s.batch,
        "params": {
            "trainable": s.trainable,
            "non_trainable": s.non_trainable,
            "total": s.trainable.saturating_add(s.non_trainable),
        },
        "macs": s.macs,
        "flops": s.macs.saturating_mul(2),
        "memory": {
            "activation_bytes": s.activation_bytes,
            "arena_bytes": arena,
            "weight_bytes": s.weight_bytes,
        },
        "input_shapes": shapes(&g.inputs),
        "output_shapes": shapes(&g.outputs),
        "layers": s.layers,
    });
    serde_json::to_string_pretty(&v).expect("summary values always serialize") + "\n"
}

fn shape(dims: &[u64]) -> String {
    format!(
        "[{}]",
        dims.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `25557032` -> `25,557,032`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", units[u])
    }
}

fn si(n: u64) -> String {
    let units = ["", "K", "M", "G", "T", "P"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}")
    } else {
        format!("{v:.2} {}", units[u])
    }
}
