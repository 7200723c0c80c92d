//! What one task of an exec does: a simple kernel call, a block of a GEMM (packing its B panels, then
//! the macro-kernel calls on its rows), a recurrent layer. `exec` says which tasks there are and runs
//! them on threads; every task here writes memory no other task of its exec touches.

use crate::codegen::{
    KernelId, Table, GEMM_WIDEST_N, PACK_PANELS, STREAM_PANEL_ROWS, TAP_READ, TILE_M, TILE_N,
};

use super::exec::{Addr, Arg, Bases, Form, Gemm, Recurrent, Region, Simple, Winograd, STREAM_ROWS};

pub(super) fn simple(x: &Simple, k: &Table, bases: &Bases, scratch: i64, t: u64) {
    let (image, chunk) = (t / x.chunks, t % x.chunks);
    // The longest argument list of a simple kernel (`ConvRows`) has 21 entries.
    let mut args = [0i64; 21];
    for (slot, a) in args.iter_mut().zip(&x.args) {
        *slot = match *a {
            Arg::Ptr {
                addr,
                image_stride,
                chunk_stride,
            } => bases.resolve(
                addr.at(image * image_stride + chunk * chunk_stride),
                scratch,
            ),
            Arg::Len { total, chunk: c } => c.min(total - chunk * c) as i64,
            Arg::Start { chunk: c } => (chunk * c) as i64,
            Arg::Int(v) => v,
        };
    }
    k.call(x.kernel, &args[..x.args.len()]);
}

/// Task `t` of a GEMM: one block of column panels of one image and group, for one share of the rows.
pub(super) fn gemm_task(g: &Gemm, k: &Table, bases: &Bases, scratch: i64, t: u64) {
    let splits = g.row_splits;
    let (rest, split) = if g.shares_first {
        let per = g.tasks() / splits;
        (t % per, t / per)
    } else {
        (t / splits, t % splits)
    };
    let (rest, cb) = (rest / g.col_blocks(), rest % g.col_blocks());
    let (image, group) = (rest / g.groups, rest % g.groups);
    let row_panels = g.m.div_ceil(TILE_M as u64);
    let per_split = row_panels.div_ceil(splits);
    let (r0, r1) = (
        (split * per_split * TILE_M as u64).min(g.m),
        ((split + 1) * per_split * TILE_M as u64).min(g.m),
    );
    if r0 >= r1 {
        return;
    }
    let p0 = cb * g.panels_per_task;
    let p1 = (p0 + g.panels_per_task).min(g.col_panels());
    let res = |a: Addr| bases.resolve(a, scratch);
    let weights = g.weights.at(group * g.group_weight_stride);
    // Column panels per call: what this GEMM's kernel takes, at most what the packing lays out.
    let per_call = ((k.gemm_cols(g.act) / TILE_N) as u64).min(g.call_panels.max(1));
    // An empty product still runs one (empty) block, for its epilogue.
    let starts: Vec<u64> = if g.k == 0 {
        vec![0]
    } else {
        (0..g.k).step_by(g.kblock as usize).collect()
    };
    for k0 in starts {
        let kc = g.kblock.min(g.k - k0);
        let mut mode = if k0 == 0 && !g.accumulate { 0 } else { 1 };
        // A Winograd product's output is the raw sums (its epilogue comes after the output transform).
        let raw = matches!(g.form, Form::Conv { winograd: true, .. });
        if k0 + kc == g.k && !raw {
            mode |= 2;
        }
        match g.form {
            Form::Conv {
                input,
                in_image_stride,
                in_group_stride,
                plane,
                taps,
                table,
                runs,
                ref panels,
                direct,
                winograd,
            } => {
                let x = input.at(image * in_image_stride + group * in_group_stride);
                // Rows of B in this k block: input channels ci0..ci1 (k blocks hold whole channels).
                let (ci0, ci1) = (k0 / taps, (k0 + kc) / taps);
                let a_panels = row_panels as usize;
                // A from row `r` (a multiple of TILE_M) on.
                let a_at = |r: u64| {
                    weights.at(crate::codegen::panel_offset(
                        a_panels,
                        TILE_M,
                        g.k as usize,
                        g.kblock as usize,
                        k0 as usize,
                        (r / TILE_M as u64) as usize,
                    ) as u64)
                };
                // Panel p is read in place when direct and whole.
                // (A Winograd product's rows of B are whole panels long.)
                let in_place =
                    |p: u64| direct && (winograd || g.n - p * TILE_N as u64 >= TILE_N as u64);
                // Packed panels sit side by side in scratch, `call_panels` of them per row: panel j of a
                // call in columns 8j.., so the panels of a call are contiguous as in place.
                let ld = g.call_panels.max(1) * TILE_N as u64;
                // Panel p's input, offsets and reads.
                let panel = |p: u64| {
                    let (pattern, base) = panels[p as usize];
                    let pattern = pattern as u64;
                    [
                        res(x) + 4 * base as i64,
                        res(table.at(pattern * taps * TILE_N as u64)),
                        res(runs.at(pattern * taps * TAP_READ as u64)),
                    ]
                };
                // Packs panels p..p + n into the call's slots 0..n: one call of a kernel that takes
                // them all, else one per panel.
                let together = k.pack_panels() as u64;
                let pack = |p: u64, n: u64| {
                    let each = if n > 1 && together >= n { n } else { 1 };
                    for j in (0..n).step_by(each as usize) {
                        let [xp, tab, run] = panel(p + j);
                        let slot = Addr {
                            region: Region::Scratch,
                            offset: j * TILE_N as u64,
                        };
                        let mut args = [0i64; 10 + 3 * (PACK_PANELS - 1)];
                        args[..9].copy_from_slice(&[
                            xp,
                            res(slot),
                            taps as i64,
                            tab,
                            ci0 as i64,
                            ci1 as i64,
                            plane as i64,
                            run,
                            ld as i64,
                        ]);
                        args[9] = each as i64;
                        for i in 1..each as usize {
                            args[7 + 3 * i..10 + 3 * i].copy_from_slice(&panel(p + j + i as u64));
                        }
                        k.call(KernelId::PackPatches, &args[..10 + 3 * (each as usize - 1)]);
                    }
                };
                // Bit 6 (the AVX2 kernel prefetches A) where A comes from L3 or memory rather than L2:
                // a Winograd product's (its 16 or 36 matrices of weights cycle through each task), and,
                // with B packed, a task of one call (A read once) or with [`A_STREAMS`] bytes of A or
                // more. With B read in place from the input (1x1 convolutions), prefetching A slowed
                // ResNet-50's 28x28 layers by 12% even with 256 KiB of A per task.
                let single = p1 - p0 <= per_call;
                let big_a = (r1 - r0) * kc * 4 >= A_STREAMS;
                let far = |here: bool| {
                    if winograd || (!here && (single || big_a)) {
                        64
                    } else {
                        0
                    }
                };
                let mut p = p0;
                while p < p1 {
                    let col0 = p * TILE_N as u64;
                    // The panels of one call are all read the same way.
                    let here = in_place(p);
                    let mut step = 1;
                    while step < per_call && p + step < p1 && in_place(p + step) == here {
                        step += 1;
                    }
                    let (b, bs) = if here {
                        (res(x.at(ci0 * plane + col0)), 4 * plane as i64)
                    } else {
                        pack(p, step);
                        let slot = Addr {
                            region: Region::Scratch,
                            offset: 0,
                        };
                        (res(slot), 4 * ld as i64)
                    };
                    let cols = (step * TILE_N as u64).min(g.n - col0);
                    // In place, the next call reads the same rows of the input further on (bit 3).
                    let ahead = if here { 8 } else { 0 };
                    let at = (
                        image,
                        group,
                        r0,
                        r1,
                        col0,
                        cols,
                        kc,
                        mode | ahead | far(here),
                    );
                    call_gemm(g, k, &res, &a_at, (b, bs, (TILE_N * 4) as i64, 0), at);
                    p += step;
                }
            }
            Form::Dense { input, ld, b_width } => {
                // Pack this share's rows of the input for the k block, then run every column panel.
                let x = input;
                let panels = (r1 - r0).div_ceil(TILE_M as u64);
                for i in 0..panels {
                    let row = r0 + i * TILE_M as u64;
                    let slot = Addr {
                        region: Region::Scratch,
                        offset: i * kc * TILE_M as u64,
                    };
                    k.call(
                        KernelId::PackRows,
                        &[
                            res(x.at(row * ld)),
                            res(slot),
                            (g.m - row).min(TILE_M as u64) as i64,
                            k0 as i64,
                            (k0 + kc) as i64,
                            ld as i64,
                        ],
                    );
                }
                let width = b_width as usize;
                let b_off = |p: u64| {
                    let off = crate::codegen::b_panel_offset(
                        g.n as usize,
                        g.k as usize,
                        g.kblock as usize,
                        k0 as usize,
                        p as usize,
                        width,
                    ) as u64;
                    res(weights.at(off))
                };
                // The packed rows r0..r1 (a dense product has one segment, so calls start at r0).
                let a_at = |r: u64| Addr {
                    region: Region::Scratch,
                    offset: (r - r0) * kc,
                };
                // One panel of rows reads the packed weights once, from memory: calls with `mode`
                // bit 4 (when the kernel takes them) read several groups of columns at once. They
                // start at a group's first panel (a task's block need not: AVX2 blocks are even).
                let stream = r1 - r0 <= STREAM_ROWS;
                let groups = stream && r1 - r0 <= STREAM_PANEL_ROWS as u64;
                let group_panels = (GEMM_WIDEST_N / TILE_N) as u64;
                let stream_call = (k.stream_cols(g.act) / TILE_N) as u64;
                let mut p = p0;
                while p < p1 {
                    let col0 = p * TILE_N as u64;
                    let b = b_off(p);
                    let in_groups = groups && p.is_multiple_of(group_panels);
                    let step = if in_groups { stream_call } else { per_call }.min(p1 - p);
                    let b_next = if step > 1 { b_off(p + 1) - b } else { 0 };
                    let cols = (step * TILE_N as u64).min(g.n - col0);
                    // Bit 2: prefetch B; bit 4: more columns than a plain call, in groups `b_group`
                    // apart.
                    let mode = if stream { mode | 4 } else { mode };
                    let (mode, b_group) = match (in_groups && step > per_call, step > group_panels)
                    {
                        (true, true) => (mode | 16, b_off(p + group_panels) - b),
                        (true, false) => (mode | 16, 0),
                        _ => (mode, 0),
                    };
                    let at = (image, 0, r0, r1, col0, cols, kc, mode);
                    let b_stride = (width * 4) as i64;
                    call_gemm(g, k, &res, &a_at, (b, b_stride, b_next, b_group), at);
                    p += step;
                }
            }
        }
    }
}

/// Task `t` of a Winograd convolution: one block of tiles of one image, through the input transform
/// into the thread's scratch, the 16 or 36 products (one group each) and the output transform.
pub(super) fn winograd_task(wg: &Winograd, k: &Table, bases: &Bases, scratch: i64, t: u64) {
    let tiles = wg.tiles();
    let blocks = tiles.div_ceil(wg.block);
    let (image, b) = (t / blocks, t % blocks);
    let (t0, t1) = (b * wg.block, ((b + 1) * wg.block).min(tiles));
    let g = if t1 - t0 == wg.block {
        &wg.full
    } else {
        &wg.last
    };
    let res = |a: Addr| bases.resolve(a, scratch);
    let ld = wg.block_ld();
    let (v, m) = (
        scratch + 4 * wg.v_at() as i64,
        scratch + 4 * wg.m_at() as i64,
    );
    let (c, f) = (wg.channels, wg.filters);
    let geometry = [wg.h, wg.w, wg.tile_cols(), t1, ld].map(|x| x as i64);
    let x = res(wg.x.at(image * wg.x_image_stride));
    let mut args = vec![x, v, c as i64, wg.in_hw.0 as i64, wg.in_hw.1 as i64];
    args.extend(&geometry[2..]);
    args.extend([wg.v_stride() as i64, t0 as i64]);
    if wg.kind.takes_pad() {
        args.push(wg.pad as i64);
    }
    let [kin, kout] = wg.kind.kernels(wg.act);
    k.call(kin, &args);
    for group in 0..wg.values() {
        gemm_task(g, k, bases, scratch, group);
    }
    let y = res(wg.y.at(image * wg.y_image_stride));
    let mut args = vec![m, y, f as i64];
    args.extend(geometry);
    args.extend([
        wg.m_stride() as i64,
        res(wg.shift),
        wg.accumulate as i64,
        wg.slope.to_bits() as i64,
        t0 as i64,
    ]);
    k.call(kout, &args);
}

/// Bytes of A (a task's rows, one k block) from which a convolution's calls with B packed prefetch A
/// (`mode` bit 6): a quarter of a Zen 4 core's 1 MiB L2. ResNet-50 on two threads, in-process A/B on
/// Zen 4 (the AVX2 kernel's `6 x 16` tile, per-layer minimums of 40 runs): prefetching A took its 7x7
/// layers (256 KiB to 1 MiB of A per task) 0.71-0.72 -> 0.66-0.68 ms, the stride-2 3x3 into 7x7 1.64
/// -> 1.47, while the 14x14 1x1 layers with 128 KiB per task were even or slower with it.
const A_STREAMS: u64 = 256 << 10;

/// Where macro-kernel calls work: image, group, rows `r0..r1`, `cols` columns from `col0`, depth, mode.
type Tile = (u64, u64, u64, u64, u64, u64, u64, i64);

/// The macro-kernel on rows `r0..r1`, one call per output segment they meet; `a_at(r)` is packed A from
/// row `r` on; `b_group` is read (as the 15th argument) with `mode` bit 4.
fn call_gemm(
    g: &Gemm,
    k: &Table,
    res: &dyn Fn(Addr) -> i64,
    a_at: &dyn Fn(u64) -> Addr,
    (b, bs, b_next, b_group): (i64, i64, i64, i64),
    (image, group, r0, r1, col0, cols, kc, mode): Tile,
) {
    for s in &g.outs {
        let (lo, hi) = (r0.max(s.first), r1.min(s.first + s.rows));
        if lo >= hi {
            continue;
        }
        let out = s.out.at(image * s.image_stride
            + group * g.out_group_stride()
            + (lo - s.first) * g.ldc
            + col0);
        // Row factors are indexed by output channel, column shifts by column (a convolution's are zeros,
        // so its epilogue skips them: `mode` bit 5).
        let (rs, cs, mode) = match g.form {
            Form::Conv { .. } => (group * g.m + lo, 0, mode | 32),
            Form::Dense { .. } => (lo, col0, mode),
        };
        k.call(
            KernelId::Gemm(g.act),
            &[
                res(a_at(lo)),
                b,
                bs,
                res(out),
                4 * g.ldc as i64,
                (hi - lo) as i64,
                cols as i64,
                kc as i64,
                mode,
                res(g.row_scale.at(rs)),
                res(g.row_shift.at(rs)),
                res(g.col_shift.at(cs)),
                g.slope.to_bits() as i64,
                b_next,
                b_group,
            ],
        );
    }
}

/// A recurrent layer: the input projection of every step as one product, then per step the recurrent
/// product and the cell kernel, with the state in program-owned memory.
pub(super) fn recurrent(r: &Recurrent, k: &Table, bases: &Bases, scratch: i64) {
    let res = |a: Addr| bases.resolve(a, scratch);
    for t in 0..r.project.tasks() {
        gemm_task(&r.project, k, bases, scratch, t);
    }
    let (n, h) = (r.batch, r.hidden);
    for state in [r.state_h, r.state_c] {
        k.call(KernelId::Fill, &[res(state), (n * h) as i64, 0]);
    }
    let width = r.project.n;
    for step in 0..r.steps {
        for t in 0..r.recur.tasks() {
            gemm_task(&r.recur, k, bases, scratch, t);
        }
        let gx = res(r.gates.at(step * width));
        let gx_stride = (r.steps * width) as i64;
        let (gh, hs, cs) = (res(r.recur_out), res(r.state_h), res(r.state_c));
        let (ni, hi) = (n as i64, h as i64);
        match r.cell {
            KernelId::LstmCell => k.call(r.cell, &[gx, gh, cs, hs, ni, hi, gx_stride, hi]),
            KernelId::GruCell => k.call(r.cell, &[gx, gh, hs, hs, ni, hi, gx_stride, hi, hi]),
            _ => k.call(r.cell, &[gx, gh, hs, ni, hi, gx_stride, hi]),
        }
        if r.return_sequences || step + 1 == r.steps {
            let dst = if r.return_sequences {
                r.out.at(step * h)
            } else {
                r.out
            };
            k.call(
                KernelId::Copy,
                &[hs, res(dst), ni, hi, hi, r.out_image_stride as i64],
            );
        }
    }
}
