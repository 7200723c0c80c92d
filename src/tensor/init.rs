//! Parameter initialization: every initializer the language accepts, with PyTorch's fan-in/fan-out, and
//! PyTorch's default for each layer when a model states none (docs/semantics.md, "Initializers").

use ndarray::ArrayD;

use super::rng::Rng;
use super::Weights;
use crate::ir::train::Init;
use crate::ir::{Graph, Op, ParamRole};

/// Initial values of every parameter of `g`, seeded: each parameter's stream comes from `seed` and its
/// name.
pub fn initialize(g: &Graph, seed: u64) -> Weights {
    initialize_some(g, seed, |_| true)
}

/// The initial values of the parameters of `g` whose names `wanted` accepts, each the same as
/// [`initialize`] gives it.
pub fn initialize_some(g: &Graph, seed: u64, wanted: impl Fn(&str) -> bool) -> Weights {
    let mut w = Weights::new();
    for id in g.node_ids() {
        let node = g.node(id);
        let Op::Param(p) = &node.op else { continue };
        if !wanted(&node.path) {
            continue;
        }
        let dims: Vec<usize> = node.ty.fixed_dims().iter().map(|&d| d as usize).collect();
        let owner = g.users(id).first().copied();
        // A bias is initialized from its layer's weight fan-in; a recurrent layer's from its hidden size.
        let context = owner.map_or(Context::default(), |o| {
            let weight = g
                .inputs(o)
                .into_iter()
                .find(|&i| matches!(&g.node(i).op, Op::Param(q) if q.role == ParamRole::Weight));
            Context {
                weight_fan_in: weight.map(|wi| {
                    fans(
                        &g.node(wi)
                            .ty
                            .fixed_dims()
                            .iter()
                            .map(|&d| d as usize)
                            .collect::<Vec<_>>(),
                    )
                    .0
                }),
                hidden: if let Op::Rnn { hidden, .. } = g.node(o).op {
                    Some(hidden as f64)
                } else {
                    None
                },
            }
        });
        let mut rng = Rng::for_name(seed, &node.path);
        w.insert(
            node.path.clone(),
            values(&p.init, p.role, &context, &dims, &mut rng),
        );
    }
    w
}

/// What a parameter's default initialization needs to know about its layer.
#[derive(Default)]
struct Context {
    weight_fan_in: Option<f64>,
    hidden: Option<f64>,
}

/// `(fan_in, fan_out)` as `torch.nn.init._calculate_fan_in_and_fan_out`: dims 1 and 0 times the receptive
/// field (the product of the remaining dims).
fn fans(dims: &[usize]) -> (f64, f64) {
    match dims {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [out, inp, rest @ ..] => {
            let field: usize = rest.iter().product();
            ((inp * field) as f64, (out * field) as f64)
        }
    }
}

fn values(
    init: &Init,
    role: ParamRole,
    cx: &Context,
    dims: &[usize],
    rng: &mut Rng,
) -> ArrayD<f64> {
    let n: usize = dims.iter().product();
    let (fan_in, fan_out) = fans(dims);
    let mut sample = |f: &mut dyn FnMut(&mut Rng) -> f64| -> ArrayD<f64> {
        let data: Vec<f64> = (0..n).map(|_| f(rng)).collect();
        ArrayD::from_shape_vec(dims.to_vec(), data).expect("shape and length agree")
    };
    let uniform = |bound: f64| move |r: &mut Rng| r.uniform_in(-bound, bound);
    match init {
        Init::Zeros => sample(&mut |_| 0.0),
        Init::Ones => sample(&mut |_| 1.0),
        Init::Constant { value } => sample(&mut |_| *value),
        Init::RandomNormal { mean, std } => sample(&mut |r| mean + std * r.normal()),
        Init::RandomUniform { min, max } => sample(&mut |r| r.uniform_in(*min, *max)),
        Init::GlorotNormal => {
            let std = (2.0 / (fan_in + fan_out)).sqrt();
            sample(&mut |r| std * r.normal())
        }
        Init::GlorotUniform => sample(&mut uniform((6.0 / (fan_in + fan_out)).sqrt())),
        Init::HeNormal => {
            let std = (2.0 / fan_in).sqrt();
            sample(&mut |r| std * r.normal())
        }
        Init::HeUniform => sample(&mut uniform((6.0 / fan_in).sqrt())),
        // PyTorch's defaults per layer.
        Init::Default => match role {
            ParamRole::Gamma | ParamRole::RunningVar => sample(&mut |_| 1.0),
            ParamRole::Beta | ParamRole::RunningMean => sample(&mut |_| 0.0),
            ParamRole::Embedding => sample(&mut |r| r.normal()),
            ParamRole::WeightIh | ParamRole::WeightHh | ParamRole::BiasIh | ParamRole::BiasHh => {
                let hidden = cx.hidden.unwrap_or(fan_out);
                sample(&mut uniform(1.0 / hidden.sqrt()))
            }
            // kaiming_uniform(a=sqrt(5)) reduces to U(-1/sqrt(fan_in), 1/sqrt(fan_in)); the bias uses the
            // weight's fan-in.
            ParamRole::Weight => sample(&mut uniform(1.0 / fan_in.sqrt())),
            ParamRole::Bias => sample(&mut uniform(
                1.0 / cx.weight_fan_in.unwrap_or(fan_in).sqrt(),
            )),
        },
    }
}

/// Random inputs for the inputs of `g` at `batch`: floats uniform in [-1, 1), integer indices uniform in
/// `0..classes` (for tests, benchmarks and `nnc bench`).
pub fn random_inputs(
    g: &Graph,
    batch: u64,
    rng: &mut Rng,
    classes: u64,
) -> Vec<(String, super::Tensor)> {
    g.inputs
        .iter()
        .map(|(name, id)| {
            let ty = &g.node(*id).ty;
            let shape: Vec<usize> = ty.shape_at(batch).iter().map(|&d| d as usize).collect();
            let t = if ty.dtype.is_float() {
                super::Tensor::F(ndarray::ArrayD::from_shape_fn(shape, |_| {
                    rng.uniform_in(-1.0, 1.0)
                }))
            } else {
                super::Tensor::I(ndarray::ArrayD::from_shape_fn(shape, |_| {
                    (rng.next_u64() % classes.max(1)) as i64
                }))
            };
            (name.clone(), t)
        })
        .collect()
}
