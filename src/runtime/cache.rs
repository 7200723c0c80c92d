//! A model compiled per batch size on demand: programs are specialized to their batch, so running with a
//! new batch size compiles a new program, and later runs at a known size reuse it.

use std::collections::BTreeMap;

use crate::codegen::GemmImpl;
use crate::interp::{check_inputs, RunError};
use crate::ir::Graph;
use crate::tensor::{Params, Tensor};

use super::{CompileError, Program};

/// Why a run on compiled code failed: the inputs, or compiling for their batch size.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Input(#[from] RunError),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// A graph and its weights, with one program per batch size seen so far.
pub struct Compiled<'a> {
    graph: &'a Graph,
    weights: &'a dyn Params,
    threads: usize,
    gemm: GemmImpl,
    winograd: bool,
    programs: BTreeMap<u64, Program>,
}

impl<'a> Compiled<'a> {
    pub fn new(graph: &'a Graph, weights: &'a dyn Params, threads: usize) -> Compiled<'a> {
        Compiled {
            graph,
            weights,
            threads,
            gemm: GemmImpl::detect(),
            winograd: true,
            programs: BTreeMap::new(),
        }
    }

    /// Compiles programs with the GEMM implementation `gemm` instead of the detected one.
    pub fn with_gemm(mut self, gemm: GemmImpl) -> Compiled<'a> {
        self.gemm = gemm;
        self
    }

    /// Whether 3x3 stride-1 convolutions may run as Winograd F(2x2, 3x3) or F(4x4, 3x3) (the default;
    /// they do on CPUs with AVX2 and FMA).
    pub fn with_winograd(mut self, on: bool) -> Compiled<'a> {
        self.winograd = on;
        self
    }

    /// The program for `batch`, compiled if it is new.
    pub fn program(&mut self, batch: u64) -> Result<&mut Program, CompileError> {
        if !self.programs.contains_key(&batch) {
            let mut plan = crate::plan::build(self.graph, batch);
            plan.winograd = self.winograd;
            let p =
                Program::compile_with(self.graph, &plan, self.weights, self.threads, self.gemm)?;
            self.programs.insert(batch, p);
        }
        Ok(self.programs.get_mut(&batch).expect("just inserted"))
    }

    /// Runs on `inputs` (checked against the graph) with the program for their batch size.
    pub fn run(&mut self, inputs: &[(String, Tensor)]) -> Result<Vec<(String, Tensor)>, Failure> {
        let batch = check_inputs(self.graph, inputs)? as u64;
        Ok(self.program(batch)?.run(inputs)?)
    }

    /// Batch sizes compiled so far.
    pub fn batches(&self) -> Vec<u64> {
        self.programs.keys().copied().collect()
    }
}
