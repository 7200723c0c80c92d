//! The commands that compile models to native code: `nnc compile` (the compile report, or the IR, plan,
//! Cranelift IR or machine code) and `nnc bench` (latency and a per-kernel profile). `nnc run` uses
//! [`program`] too.

use std::fmt::Write;
use std::time::{Duration, Instant};

use nnc::codegen::{GemmImpl, WinogradKind};
use nnc::ir::Graph;
use nnc::runtime::Program;
use nnc::tensor::{self, Rng, Weights};

use crate::commands::Failure;

fn failure(message: String) -> Failure {
    Failure { message, code: 1 }
}

/// Plans `g` at `batch` and compiles it with `weights` and the GEMM `gemm`; also returns the plan time.
pub fn program(
    g: &Graph,
    batch: u64,
    weights: &Weights,
    threads: usize,
    (gemm, winograd): (GemmImpl, bool),
) -> Result<(Program, nnc::plan::KernelPlan, Duration), Failure> {
    let t = Instant::now();
    let mut plan = nnc::plan::build(g, batch);
    plan.winograd = winograd;
    let plan_time = t.elapsed();
    let p = Program::compile_with(g, &plan, weights, threads, gemm)
        .map_err(|e| failure(e.to_string()))?;
    Ok((p, plan, plan_time))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub enum Emit {
    Report,
    Ir,
    Plan,
    Clif,
    Asm,
}

/// `nnc compile`: the whole pipeline, then a report of every stage.
/// The fusion decisions: a count per rule, then one line each (rule, layers, what they became).
fn fusion_report(decisions: &[nnc::passes::Decision]) -> String {
    let mut out = String::new();
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for d in decisions {
        match counts.iter_mut().find(|(r, _)| *r == d.rule) {
            Some((_, n)) => *n += 1,
            None => counts.push((d.rule, 1)),
        }
    }
    let summary: Vec<String> = counts.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(
        out,
        "fusion: {} decisions{}",
        decisions.len(),
        if summary.is_empty() {
            String::new()
        } else {
            format!(" ({})", summary.join(", "))
        }
    );
    for d in decisions {
        let _ = writeln!(
            out,
            "  {:<16} {} -> {}",
            d.rule,
            d.nodes.join(" + "),
            d.result
        );
    }
    out
}

pub fn compile(
    g: &Graph,
    front: &[(String, Duration)],
    decisions: &[nnc::passes::Decision],
    batch: u64,
    threads: usize,
    gemm: (GemmImpl, bool),
    emit: Emit,
) -> Result<String, Failure> {
    let t = Instant::now();
    let weights = tensor::initialize(g, 0);
    let init_time = t.elapsed();
    let (p, plan, plan_time) = program(g, batch, &weights, threads, gemm)?;
    let mut out = String::new();
    match emit {
        Emit::Ir => return Ok(nnc::ir::dump::to_text(g)),
        Emit::Plan => return Ok(nnc::plan::to_text(&plan)),
        Emit::Clif | Emit::Asm => {
            return nnc::codegen::listing(&p.kernel_ids(), matches!(emit, Emit::Asm))
                .map_err(|e| failure(e.to_string()))
        }
        Emit::Report => {}
    }
    let stats = nnc::passes::count(g, batch);
    let front_total: Duration = front.iter().map(|(_, d)| *d).sum();
    let total = front_total + plan_time + p.lower_time + p.jit_time;
    let _ = writeln!(
        out,
        "compiled {} at batch {batch} for {} thread(s)",
        g.name, p.threads
    );
    let _ = writeln!(out, "stages:");
    for (stage, d) in front {
        let _ = writeln!(out, "  {:<28} {:>9.3} ms", stage, ms(*d));
    }
    let _ = writeln!(
        out,
        "  {:<28} {:>9.3} ms",
        "plan (schedule, memory)",
        ms(plan_time)
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>9.3} ms",
        "lower (pack weights, tables)",
        ms(p.lower_time)
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>9.3} ms",
        "jit (Cranelift)",
        ms(p.jit_time)
    );
    let _ = writeln!(
        out,
        "  {:<28} {:>9.3} ms",
        "total (parse to native code)",
        ms(total)
    );
    let _ = writeln!(
        out,
        "  ({:.3} ms initializing weights, not counted)",
        ms(init_time)
    );
    let (kernels, insts) = p.kernel_count();
    let _ = writeln!(
        out,
        "kernels: {kernels} generated ({insts} Cranelift instructions), {} steps; gemm: {}",
        p.steps.len(),
        p.gemm().name()
    );
    out.push_str(&fusion_report(decisions));
    // The layers computed as Winograd F(4x4, 3x3), F(2x2, 3x3) and F(2x2, 5x5) (one exec each, or three
    // on small planes: a transform, the products, a transform).
    for kind in [WinogradKind::F4x3, WinogradKind::F2x3, WinogradKind::F2x5] {
        let mut winograd: Vec<&str> = p
            .steps
            .iter()
            .filter(|s| s.winograd_kind() == Some(kind))
            .map(|s| s.layer.as_str())
            .collect();
        winograd.dedup();
        if !winograd.is_empty() {
            let _ = writeln!(
                out,
                "winograd {kind}: {} (--no-winograd: direct): {}",
                convolutions(winograd.len()),
                winograd.join(", ")
            );
        }
    }
    // First layers (few input channels) computed directly, the filters in the vector lanes.
    let rows: Vec<&str> = p
        .steps
        .iter()
        .filter(|s| s.is_conv_rows())
        .map(|s| s.layer.as_str())
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "direct, filters as vector lanes (few input channels): {}: {}",
            convolutions(rows.len()),
            rows.join(", ")
        );
    }
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let _ = writeln!(
        out,
        "memory: arena {:.2} MiB (naive {:.2} MiB, {:.1}x smaller), weights {:.2} MiB, packed {:.2} MiB",
        mib(plan.arena_bytes),
        mib(plan.naive_bytes),
        plan.naive_bytes as f64 / plan.arena_bytes.max(1) as f64,
        mib(plan.weight_bytes),
        mib(p.owned_bytes)
    );
    let scratch = p.scratch_bytes() * p.threads as u64;
    let _ = writeln!(
        out,
        "program: {:.2} MiB (packed weights and tables, arena, {:.2} MiB scratch for {} thread(s)); largest activation {:.2} MiB",
        mib(p.owned_bytes + plan.arena_bytes + scratch),
        mib(scratch),
        p.threads,
        mib(plan.largest_activation)
    );
    let _ = writeln!(
        out,
        "params: {} trainable, {} non-trainable; MACs: {}",
        stats.trainable, stats.non_trainable, stats.macs
    );
    Ok(out)
}

pub struct BenchArgs {
    pub batch: u64,
    pub threads: usize,
    pub iters: usize,
    pub json: bool,
    pub gemm: GemmImpl,
    /// 3x3 stride-1 convolutions may run as Winograd F(2x2, 3x3) or F(4x4, 3x3).
    pub winograd: bool,
}

/// `nnc bench`: compiles, warms up, runs `iters` times; latency, throughput and a per-kernel profile.
pub fn bench(g: &Graph, front: &[(String, Duration)], a: &BenchArgs) -> Result<String, Failure> {
    let weights = tensor::initialize(g, 0);
    let (mut p, _, plan_time) = program(g, a.batch, &weights, a.threads, (a.gemm, a.winograd))?;
    let front_total: Duration = front.iter().map(|(_, d)| *d).sum();
    let compile = front_total + plan_time + p.lower_time + p.jit_time;
    p.set_inputs(&tensor::random_inputs(g, a.batch, &mut Rng::new(1), 1))
        .map_err(|e| failure(e.to_string()))?;
    for _ in 0..2 {
        p.execute(|_, _| {});
    }
    let mut per = vec![Duration::ZERO; p.steps.len()];
    // Each step's fastest run: on a shared host the mean carries other tenants' noise, the minimum less.
    let mut best = vec![Duration::MAX; p.steps.len()];
    let mut idle = vec![Duration::ZERO; p.steps.len()];
    let mut lat = Vec::with_capacity(a.iters);
    for _ in 0..a.iters {
        let t = Instant::now();
        p.execute(|i, d| {
            per[i] += d;
            best[i] = best[i].min(d);
        });
        lat.push(t.elapsed());
        for (sum, d) in idle.iter_mut().zip(p.idle()) {
            *sum += *d;
        }
    }
    // In the order they ran: a peer's timings can be compared run by run, or phase by phase.
    let runs: Vec<f64> = lat.iter().map(|d| ms(*d)).collect();
    lat.sort();
    let median = lat[lat.len() / 2];
    let min = lat[0];
    let total: Duration = per.iter().sum();
    let iters = a.iters as f64;
    let mut rows: Vec<(usize, f64)> = per
        .iter()
        .enumerate()
        .map(|(i, d)| (i, ms(*d) / iters))
        .collect();
    rows.sort_by(|x, y| y.1.total_cmp(&x.1));
    let macs: u64 = p.steps.iter().map(|s| s.macs).sum();
    // Per run, the time a thread spent waiting at the barriers for the last one.
    let idle_ms = ms(idle.iter().sum()) / iters;
    let gflops = |macs: u64, t_ms: f64| {
        if t_ms > 0.0 {
            2.0 * macs as f64 / t_ms / 1e6
        } else {
            0.0
        }
    };
    if a.json {
        let kernels: Vec<serde_json::Value> = rows
            .iter()
            .map(|&(i, t)| {
                let s = &p.steps[i];
                serde_json::json!({
                    "layer": s.layer, "op": s.op, "kernel": s.kernel_name(), "ms": t,
                    "min_ms": ms(best[i]), "share": t / (ms(total) / iters), "gflops": gflops(s.macs, t), "tasks": s.tasks(),
                    "idle_ms": ms(idle[i]) / iters,
                })
            })
            .collect();
        let v = serde_json::json!({
            "model": g.name, "batch": a.batch, "threads": p.threads, "gemm": p.gemm().name(),
            "iters": a.iters,
            "latency_ms": {"median": ms(median), "min": ms(min)}, "runs_ms": runs,
            "throughput_per_s": a.batch as f64 / median.as_secs_f64(),
            "compile_ms": ms(compile), "jit_ms": ms(p.jit_time),
            "gflops": gflops(macs, ms(median)), "macs": macs, "idle_ms": idle_ms,
            "kernels": kernels,
        });
        return Ok(serde_json::to_string_pretty(&v).expect("json") + "\n");
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} batch {} threads {} gemm {}: median {:.3} ms, min {:.3} ms, {:.1} samples/s, {:.1} GFLOP/s; compiled in {:.1} ms",
        g.name,
        a.batch,
        p.threads,
        p.gemm().name(),
        ms(median),
        ms(min),
        a.batch as f64 / median.as_secs_f64(),
        gflops(macs, ms(median)),
        ms(compile)
    );
    if p.threads > 1 {
        let _ = writeln!(
            out,
            "threads idle at the barrier after a kernel, waiting for the last one: {:.3} ms per run ({:.1}% of the kernels' time)",
            idle_ms,
            100.0 * idle_ms / (ms(total) / iters)
        );
    }
    let _ = writeln!(
        out,
        "{:<44} {:<12} {:<28} {:>9} {:>6} {:>8}",
        "layer", "op", "kernel", "ms", "share", "GFLOP/s"
    );
    for &(i, t) in rows.iter().take(40) {
        let s = &p.steps[i];
        let share = 100.0 * t / (ms(total) / iters);
        let gf = if s.macs > 0 {
            format!("{:.1}", gflops(s.macs, t))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{:<44} {:<12} {:<28} {:>9.3} {:>5.1}% {:>8}",
            s.layer,
            s.op,
            s.kernel_name(),
            t,
            share,
            gf
        );
    }
    if rows.len() > 40 {
        let rest: f64 = rows[40..].iter().map(|r| r.1).sum();
        let _ = writeln!(out, "... {} more kernels, {:.3} ms", rows.len() - 40, rest);
    }
    Ok(out)
}

/// "1 convolution", "3 convolutions".
fn convolutions(n: usize) -> String {
    format!("{n} convolution{}", if n == 1 { "" } else { "s" })
}
