//! The boundary into generated code: with `avx2.rs`, `avx512.rs`, `twins.rs`, `patches.rs` and the
//! Winograd twins `winograd_avx2.rs` and `winograd_avx512.rs`, `winograd4.rs`, `winograd5.rs` and
//! `conv_rows.rs` (the Rust kernels it enters), the only `unsafe` of the project.
//!
//! [`Kernels`] owns compiled kernels and enters them. Its contract (which Rust cannot check): every pointer
//! argument addresses memory that stays valid and is not touched by Rust code during the call, large enough
//! for what the kernel's documented arguments say it reads and writes. The runtime upholds it by computing
//! every address from a plan whose views were checked against their buffers when the program was built,
//! and by holding its memory exclusively while it runs.

use std::collections::BTreeMap;

use cranelift_module::{FuncId, Module};

use super::avx2::{self, KernelFn};
use super::avx512;
use super::jit::{CodegenError, Jit};
use super::{conv_rows, patches, twins, winograd4, winograd5, winograd_avx2, winograd_avx512};
use super::{ActKind, GemmImpl, KernelId, GEMM_STREAM_N, GEMM_WIDEST_N, GEMM_WIDE_N, TILE_N};

/// A set of compiled kernels.
pub struct Kernels {
    /// Owns the executable memory the function pointers point into.
    _jit: Jit,
    table: Table,
    /// Cranelift IR instructions generated, for the compile report.
    pub instructions: usize,
    /// The GEMM implementation chosen.
    pub gemm: GemmImpl,
}

impl Kernels {
    /// Generates and compiles `ids` (duplicates are compiled once), with the GEMM this CPU runs fastest.
    pub fn compile(ids: &[KernelId]) -> Result<Kernels, CodegenError> {
        Kernels::compile_with(ids, GemmImpl::detect())
    }

    /// [`Kernels::compile`] with GEMM kernels from `gemm`: with [`GemmImpl::Avx2`] or
    /// [`GemmImpl::Avx512`], the `Gemm` kernels it implements are the Rust functions of `avx2.rs` or
    /// `avx512.rs` and the others are generated.
    ///
    /// # Errors
    /// `GemmUnavailable` if this CPU cannot run `gemm`.
    pub fn compile_with(ids: &[KernelId], gemm: GemmImpl) -> Result<Kernels, CodegenError> {
        if !gemm.available() {
            return Err(CodegenError::GemmUnavailable(gemm.name()));
        }
        let mut jit = Jit::new()?;
        let mut ids = ids.to_vec();
        ids.sort();
        ids.dedup();
        let config = jit.module.target_config();
        let mut defined: Vec<(KernelId, FuncId)> = Vec::new();
        let mut fns = BTreeMap::new();
        let mut instructions = 0;
        let mut wide = BTreeMap::new();
        let mut stream = BTreeMap::new();
        for id in ids {
            // The `entry` functions return a function only when the CPU has the instructions it uses.
            if let KernelId::Gemm(act) = id {
                let rust = match gemm {
                    GemmImpl::Avx2 => avx2::entry(act).map(|f| (f, GEMM_WIDE_N)),
                    GemmImpl::Avx512 => avx512::entry(act).map(|f| (f, GEMM_WIDEST_N)),
                    GemmImpl::Cranelift => None,
                };
                if let Some((f, cols)) = rust {
                    fns.insert(id, f);
                    wide.insert(id, cols);
                    stream.insert(
                        id,
                        match gemm {
                            GemmImpl::Avx512 => GEMM_STREAM_N,
                            _ => avx2::STREAM_N,
                        },
                    );
                    continue;
                }
            }
            // The Rust GEMM sets pack patches and pool in Rust too.
            if id == KernelId::PackPatches && gemm != GemmImpl::Cranelift {
                if let Some((f, panels)) = patches::entry(gemm == GemmImpl::Avx512) {
                    fns.insert(id, f);
                    wide.insert(id, panels);
                    continue;
                }
            }
            // F(4x4, 3x3)'s transforms exist in AVX-512 and AVX2 only, used with every GEMM
            // implementation.
            if let KernelId::Winograd4In | KernelId::Winograd4Out(_) = id {
                let input = id == KernelId::Winograd4In;
                let act = match id {
                    KernelId::Winograd4Out(act) => act,
                    _ => ActKind::Identity,
                };
                // The AVX2 twins with the AVX2 GEMM or on CPUs without AVX-512 (the same bits).
                let f = match gemm {
                    GemmImpl::Avx2 => None,
                    _ => winograd4::entry(input, act),
                }
                .or_else(|| winograd4::entry_avx2(input, act))
                .ok_or(CodegenError::Winograd4Unavailable)?;
                fns.insert(id, f);
                continue;
            }
            // So does the few-channel convolution's kernel.
            if let KernelId::ConvRows(act) = id {
                let f = conv_rows::entry(act).ok_or(CodegenError::Winograd4Unavailable)?;
                fns.insert(id, f);
                continue;
            }
            // F(2x2, 5x5)'s transforms exist in AVX2 only, used with every GEMM implementation.
            if let KernelId::Winograd5In | KernelId::Winograd5Out(_) = id {
                let f = match id {
                    KernelId::Winograd5Out(act) => winograd5::entry(false, act),
                    _ => winograd5::entry(true, ActKind::Identity),
                }
                .ok_or(CodegenError::Winograd4Unavailable)?;
                fns.insert(id, f);
                continue;
            }
            let helper = match id {
                _ if gemm == GemmImpl::Cranelift => None,
                KernelId::MaxPool => twins::pool_entry(true, gemm == GemmImpl::Avx512),
                KernelId::AvgPool => twins::pool_entry(false, gemm == GemmImpl::Avx512),
                KernelId::MaxPool3 => twins::pool_3x3_entry(true, gemm == GemmImpl::Avx512),
                KernelId::AvgPool3 => twins::pool_3x3_entry(false, gemm == GemmImpl::Avx512),
                KernelId::PackRows => patches::rows_entry(),
                KernelId::WinogradIn if gemm == GemmImpl::Avx512 => {
                    winograd_avx512::entry(true, ActKind::Identity)
                }
                KernelId::WinogradOut(act) if gemm == GemmImpl::Avx512 => {
                    winograd_avx512::entry(false, act)
                }
                KernelId::WinogradIn => winograd_avx2::entry(true, ActKind::Identity),
                KernelId::WinogradOut(act) => winograd_avx2::entry(false, act),
                _ => None,
            };
            if let Some(f) = helper {
                fns.insert(id, f);
                continue;
            }
            let func = super::build(id, config);
            instructions += func.dfg.num_insts();
            defined.push((id, jit.define(&format!("{id:?}"), func)?));
        }
        jit.finalize()?;
        for (id, fid) in defined {
            let code = jit.module.get_finalized_function(fid);
            // SAFETY: `code` is the entry of a function built with `builder::signature`: one i64-sized
            // argument in the platform's default calling convention, matching `KernelFn`. It stays mapped
            // as long as `_jit` lives, which is as long as the pointer can be called.
            let f = unsafe { std::mem::transmute::<*const u8, KernelFn>(code) };
            fns.insert(id, f);
        }
        Ok(Kernels {
            _jit: jit,
            table: Table { fns, wide, stream },
            instructions,
            gemm,
        })
    }

    pub fn ids(&self) -> impl Iterator<Item = KernelId> + '_ {
        self.table.fns.keys().copied()
    }

    /// Runs kernel `id` (see [`Table::call`]).
    #[cfg(test)]
    pub(crate) fn call(&self, id: KernelId, args: &[i64]) {
        self.table.call(id, args)
    }

    /// The entry points, shareable across threads (valid while `self` lives).
    pub fn table(&self) -> &Table {
        &self.table
    }
}

/// Entry points of compiled kernels.
pub struct Table {
    fns: BTreeMap<KernelId, KernelFn>,
    /// The `Gemm` kernels that take more than [`TILE_N`] columns per call (the Rust ones), and how many;
    /// `PackPatches` when it takes more than one panel per call, and how many.
    wide: BTreeMap<KernelId, usize>,
    /// The `Gemm` kernels that take calls with `mode` bit 4 (the AVX-512 ones), and their columns.
    stream: BTreeMap<KernelId, usize>,
}

impl Table {
    /// The most columns one call of `KernelId::Gemm(act)` takes: [`GEMM_WIDEST_N`] for the AVX-512
    /// kernel, [`GEMM_WIDE_N`] for the AVX2 one, [`TILE_N`] for the Cranelift one.
    pub fn gemm_cols(&self, act: ActKind) -> usize {
        self.wide
            .get(&KernelId::Gemm(act))
            .copied()
            .unwrap_or(TILE_N)
    }

    /// The most columns one call of `KernelId::Gemm(act)` with `mode` bit 4 (rows streaming B, at most
    /// [`super::STREAM_PANEL_ROWS`]) takes: [`GEMM_STREAM_N`] for the AVX-512 kernel, three groups
    /// (`avx2::STREAM_N`) for the AVX2 one; the Cranelift kernel takes no such calls, and this is its
    /// [`Table::gemm_cols`].
    pub fn stream_cols(&self, act: ActKind) -> usize {
        self.stream
            .get(&KernelId::Gemm(act))
            .copied()
            .unwrap_or_else(|| self.gemm_cols(act))
    }

    /// The most panels one call of `KernelId::PackPatches` takes: [`patches::WIDE_PANELS`] for the
    /// AVX-512 set's, 1 for the others.
    pub fn pack_panels(&self) -> usize {
        self.wide.get(&KernelId::PackPatches).copied().unwrap_or(1)
    }

    /// Runs kernel `id` on `args`, laid out as its [`KernelId`] documents. The caller guarantees the
    /// module's contract (see the module documentation) for every address in `args`.
    ///
    /// # Panics
    /// If `id` was not compiled into this set (a caller's bug).
    pub(crate) fn call(&self, id: KernelId, args: &[i64]) {
        let f = self.fns[&id];
        // SAFETY: `f` reads its arguments from `args` (alive for the call); the memory they address is
        // valid, exclusively the kernel's, and large enough, by the module's contract.
        unsafe { f(args.as_ptr()) }
    }
}
