//! The reference interpreter: executes a graph op by op on ndarray in f64, with PyTorch's semantics
//! (docs/semantics.md). Plain and obviously correct rather than fast: it is the oracle the JIT is tested
//! against, and it runs models end to end before the JIT exists.

mod conv;
mod elementwise;
mod grad;
mod loss;
mod norm;
mod pool;
mod rnn;

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};

use crate::ir::{Dim, Graph, NodeId, Op};
use crate::tensor::{Tensor, Weights};

/// Whether batch norm uses batch statistics (and updates its running statistics) and dropout drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Eval,
    Train,
}

/// Problems with what the user gave to run: inputs that do not fit the model, indices out of range.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RunError {
    #[error("the model has no input `{0}`")]
    UnknownInput(String),
    #[error("input `{0}` is not given")]
    MissingInput(String),
    #[error("input `{name}` has shape {found:?}, the model expects {expected}")]
    InputShape {
        name: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error("input `{name}` holds {found} values, the model expects {expected}")]
    InputKind {
        name: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("inputs disagree on the batch size: {0:?}")]
    BatchMismatch(Vec<usize>),
    #[error("`{layer}`: index {index} is out of range for a vocabulary of {vocab}")]
    IndexOutOfRange {
        layer: String,
        index: i64,
        vocab: u64,
    },
    #[error("parameter `{name}` has shape {found:?}, the model expects {expected:?}")]
    WeightShape {
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("parameter `{0}` has no value")]
    MissingWeight(String),
    #[error("`{layer}`: batch norm in training mode needs more than one value per channel (batch and spatial size 1)")]
    SingleValueBatchNorm { layer: String },
    #[error("target class {class} is out of range for the model's classes")]
    ClassOutOfRange { class: i64 },
}

/// What a run produces: the model's outputs in order, and in train mode the updated batch-norm running
/// statistics (by parameter name).
#[derive(Debug)]
pub struct Outcome {
    pub outputs: Vec<(String, Tensor)>,
    pub updated: Weights,
}

/// Options of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    pub mode: Mode,
    /// Seeds dropout masks (per layer, from the seed and the layer's path).
    pub seed: u64,
}

/// Runs `g` on `inputs` (by model input name) with `weights`.
pub fn run(
    g: &Graph,
    weights: &Weights,
    inputs: &[(String, Tensor)],
    options: RunOptions,
) -> Result<Outcome, RunError> {
    let batch = check_inputs(g, inputs)?;
    let order = g.topo_order().expect("a verified graph is acyclic");
    // Values are dropped after their last use.
    // One use per input edge: `x * x` reads `x` twice.
    let mut uses: HashMap<NodeId, usize> = order.iter().map(|&id| (id, 0)).collect();
    for &id in &order {
        for input in g.inputs(id) {
            *uses.get_mut(&input).expect("inputs are graph nodes") += 1;
        }
    }
    let outputs: Vec<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
    let mut values: HashMap<NodeId, Tensor> = HashMap::new();
    let mut cx = Context {
        g,
        options,
        batch,
        updated: Weights::new(),
    };
    for id in order {
        let node = g.node(id);
        let value = match &node.op {
            Op::Input { index } => {
                let name = &g.inputs[*index].0;
                inputs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t.clone())
                    .expect("inputs were checked")
            }
            Op::Param(_) => {
                let w = weights
                    .get(&node.path)
                    .ok_or_else(|| RunError::MissingWeight(node.path.clone()))?;
                let want: Vec<usize> = node.ty.fixed_dims().iter().map(|&d| d as usize).collect();
                if w.shape() != want.as_slice() {
                    return Err(RunError::WeightShape {
                        name: node.path.clone(),
                        found: w.shape().to_vec(),
                        expected: want,
                    });
                }
                Tensor::F(w.clone())
            }
            op => {
                let args: Vec<&Tensor> = g
                    .inputs(id)
                    .iter()
                    .map(|i| values.get(i).expect("inputs computed first"))
                    .collect();
                cx.eval(id, op, &args)?
            }
        };
        for input in g.inputs(id) {
            let left = uses.get_mut(&input).expect("every node has a use count");
            *left -= 1;
            if *left == 0 && !outputs.contains(&input) {
                values.remove(&input);
            }
        }
        values.insert(id, value);
    }
    let outputs = g
        .outputs
        .iter()
        .map(|(name, id)| (name.clone(), values[id].clone()))
        .collect();
    Ok(Outcome {
        outputs,
        updated: cx.updated,
    })
}

/// Computes one node from the values of its inputs, as `run` would: for executors of kernel plans that hold
/// values in their own memory. Running statistics a training-mode batch norm would update are dropped.
pub fn eval_node(
    g: &Graph,
    id: NodeId,
    args: &[&Tensor],
    options: RunOptions,
    batch: usize,
) -> Result<Tensor, RunError> {
    let mut cx = Context {
        g,
        options,
        batch,
        updated: Weights::new(),
    };
    cx.eval(id, &g.node(id).op, args)
}

/// Checks the inputs against the model's declared types and returns the batch size.
pub fn check_inputs(g: &Graph, inputs: &[(String, Tensor)]) -> Result<usize, RunError> {
    for (name, _) in inputs {
        if !g.inputs.iter().any(|(n, _)| n == name) {
            return Err(RunError::UnknownInput(name.clone()));
        }
    }
    let mut batches = Vec::new();
    for (name, id) in &g.inputs {
        let (_, t) = inputs
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| RunError::MissingInput(name.clone()))?;
        let ty = &g.node(*id).ty;
        let shape = t.shape();
        let fits = shape.len() == ty.rank()
            && ty
                .dims
                .iter()
                .zip(shape)
                .all(|(d, &s)| matches!(d, Dim::Batch) || *d == Dim::Fixed(s as u64));
        if !fits || shape.first() == Some(&0) {
            return Err(RunError::InputShape {
                name: name.clone(),
                found: shape.to_vec(),
                expected: ty.to_string(),
            });
        }
        let float = ty.dtype.is_float();
        if float != matches!(t, Tensor::F(_)) {
            let expected = if float { "float" } else { "integer" };
            return Err(RunError::InputKind {
                name: name.clone(),
                found: t.kind(),
                expected,
            });
        }
        batches.push(shape[0]);
    }
    batches.dedup();
    match batches.as_slice() {
        [b] => Ok(*b),
        [] => Ok(1),
        _ => Err(RunError::BatchMismatch(batches)),
    }
}

/// Per-run state the ops can read: the graph, options and batch size; and what they write: updated
/// running statistics.
pub(crate) struct Context<'g> {
    pub g: &'g Graph,
    pub options: RunOptions,
    pub batch: usize,
    pub updated: Weights,
}

fn f(t: &Tensor) -> &ArrayD<f64> {
    match t {
        Tensor::F(a) => a,
        Tensor::I(_) => unreachable!("shape inference only lets float tensors reach float ops"),
    }
}

impl Context<'_> {
    /// One op. Every op is listed: a new op does not compile until the interpreter handles it.
    fn eval(&mut self, id: NodeId, op: &Op, args: &[&Tensor]) -> Result<Tensor, RunError> {
        // Integer tensors (token ids) may be reshaped and concatenated on their way to an embedding.
        let ints: Vec<&ArrayD<i64>> = args
            .iter()
            .filter_map(|a| if let Tensor::I(a) = a { Some(a) } else { None })
            .collect();
        if !ints.is_empty() && ints.len() == args.len() {
            if let Op::Flatten | Op::Reshape { .. } = op {
                return Ok(Tensor::I(elementwise::reshape(
                    ints[0],
                    &self.out_shape(id),
                )));
            }
            if let Op::Concat { axis } = op {
                return Ok(Tensor::I(elementwise::concat(&ints, *axis)));
            }
        }
        let x = || f(args[0]);
        let param = |i: usize| f(args[i]);
        let out = match op {
            Op::Input { .. } | Op::Param(_) => {
                unreachable!("inputs and parameters are read, not computed")
            }
            Op::Dense { bias, .. } => conv::dense(x(), param(1), bias.then(|| param(2))),
            Op::Conv2d {
                stride,
                pad,
                dilation,
                groups,
                bias,
                ..
            } => conv::conv2d(
                x(),
                param(1),
                bias.then(|| param(2)),
                *stride,
                *pad,
                *dilation,
                *groups,
            ),
            Op::MaxPool2d { .. }
            | Op::AvgPool2d { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::GlobalAvgPool { .. } => pool::forward(op, x(), &self.out_shape(id)),
            Op::ZeroPad2d { pad } => pool::zeropad(x(), *pad),
            Op::Flatten | Op::Reshape { .. } => elementwise::reshape(x(), &self.out_shape(id)),
            Op::BatchNorm {
                eps,
                momentum,
                affine,
            } => {
                let p: Vec<&ArrayD<f64>> = (1..args.len()).map(param).collect();
                let (gamma, beta) = if *affine {
                    (Some(p[0]), Some(p[1]))
                } else {
                    (None, None)
                };
                let (mean, var) = (p[p.len() - 2], p[p.len() - 1]);
                match self.options.mode {
                    Mode::Eval => norm::batchnorm_eval(x(), gamma, beta, mean, var, *eps),
                    Mode::Train => {
                        if x().len() == x().shape()[1] {
                            return Err(RunError::SingleValueBatchNorm {
                                layer: self.g.node(id).path.clone(),
                            });
                        }
                        let (y, new_mean, new_var) =
                            norm::batchnorm_train(x(), gamma, beta, mean, var, *eps, *momentum);
                        let ids = self.g.inputs(id);
                        let names = [
                            &self.g.node(ids[ids.len() - 2]).path,
                            &self.g.node(ids[ids.len() - 1]).path,
                        ];
                        self.updated.insert(names[0].clone(), new_mean);
                        self.updated.insert(names[1].clone(), new_var);
                        y
                    }
                }
            }
            Op::Dropout { rate } => match self.options.mode {
                Mode::Eval => x().clone(),
                Mode::Train => norm::dropout(
                    x(),
                    *rate,
                    &norm::dropout_mask_rng(self.options.seed, &self.g.node(id).path),
                ),
            },
            Op::Lrn {
                size,
                alpha,
                beta,
                k,
            } => norm::lrn(x(), *size as usize, *alpha, *beta, *k),
            Op::Activation(act) => elementwise::activation(*act, x()),
            Op::Softmax { axis } => elementwise::softmax(x(), *axis),
            Op::Add => elementwise::sum(&args.iter().map(|a| f(a)).collect::<Vec<_>>()),
            Op::Mul => elementwise::product(&args.iter().map(|a| f(a)).collect::<Vec<_>>()),
            Op::Scale { factor } => x() * *factor,
            Op::Concat { axis } => {
                elementwise::concat(&args.iter().map(|a| f(a)).collect::<Vec<_>>(), *axis)
            }
            Op::Embedding { vocab, dim } => {
                let Tensor::I(idx) = args[0] else {
                    unreachable!("embedding indices are integers")
                };
                conv::embedding(idx, param(1), *vocab, *dim).map_err(|index| {
                    RunError::IndexOutOfRange {
                        layer: self.g.node(id).path.clone(),
                        index,
                        vocab: *vocab,
                    }
                })?
            }
            Op::Rnn {
                cell,
                hidden,
                return_sequences,
                bias,
            } => {
                let b = bias.then(|| (param(3), param(4)));
                rnn::forward(
                    *cell,
                    *hidden as usize,
                    x(),
                    param(1),
                    param(2),
                    b,
                    *return_sequences,
                )
            }
            Op::Constant { value } => ArrayD::from_elem(IxDyn(&[]), *value),
            Op::Loss { loss: l } => {
                let (value, _) = loss::loss(l, x(), args[1])
                    .map_err(|class| RunError::ClassOutOfRange { class })?;
                ArrayD::from_elem(IxDyn(&[]), value)
            }
            Op::Penalty { reg } => ArrayD::from_elem(IxDyn(&[]), loss::penalty(reg, x()).0),
            Op::Fused(fused) => self.fused(id, fused, args)?,
            Op::Chain(c) => chain(c, args),
            Op::Grad { forward, slot } => {
                let k = args.len() - 2;
                let fwd = self.g.inputs(id)[k];
                self.grad(fwd, forward, *slot, &args[..k], args[k], f(args[k + 1]))?
            }
        };
        Ok(Tensor::F(out))
    }

    /// A fused op, part by part, as the unfused layers compute it (batch norm with running statistics).
    fn fused(
        &mut self,
        id: NodeId,
        fused: &crate::ir::op::Fused,
        args: &[&Tensor],
    ) -> Result<ArrayD<f64>, RunError> {
        let core: Vec<&Tensor> = fused.core_slots().into_iter().map(|i| args[i]).collect();
        let Tensor::F(mut y) = self.eval(id, &fused.core, &core)? else {
            unreachable!("a product is a float tensor")
        };
        if let Some(b) = fused.bn {
            let p: Vec<&ArrayD<f64>> = args[fused.first_bn()..].iter().map(|t| f(t)).collect();
            let (gamma, beta) = if b.affine {
                (Some(p[0]), Some(p[1]))
            } else {
                (None, None)
            };
            let (mean, var) = (p[p.len() - 2], p[p.len() - 1]);
            y = norm::batchnorm_eval(&y, gamma, beta, mean, var, b.eps);
        }
        if fused.scale != 1.0 {
            y *= fused.scale;
        }
        if fused.residual {
            y = elementwise::sum(&[&y, f(args[1])]);
        }
        Ok(elementwise::activation(fused.act, &y))
    }

    /// The node's output shape at this run's batch size.
    fn out_shape(&self, id: NodeId) -> Vec<usize> {
        self.g
            .node(id)
            .ty
            .shape_at(self.batch as u64)
            .iter()
            .map(|&d| d as usize)
            .collect()
    }
}

/// A fused elementwise chain: each link as its own layer would compute it, on registers.
fn chain(c: &crate::ir::op::Chain, args: &[&Tensor]) -> ArrayD<f64> {
    use crate::ir::op::Link;
    let mut regs: Vec<ArrayD<f64>> = args.iter().map(|a| f(a).clone()).collect();
    for link in &c.links {
        let v = match *link {
            Link::Act(a, r) => elementwise::activation(a, &regs[r]),
            Link::Add(a, b) => elementwise::sum(&[&regs[a], &regs[b]]),
            Link::Mul(a, b) => elementwise::product(&[&regs[a], &regs[b]]),
            Link::Scale(factor, r) => &regs[r] * factor,
        };
        regs.push(v);
    }
    regs.pop().expect("a chain has links")
}
