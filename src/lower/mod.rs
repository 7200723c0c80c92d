//! The lowering room: a parsed [`Program`] in, a typed graph IR out, with every user error found on the
//! way. Blocks are inlined, `seq`s and loops unrolled, and shapes inferred as each node is added.

mod args;
mod calls;
mod eval;
mod layers;
mod names;
mod params;
mod spec;
mod train;
pub mod value;

use std::collections::HashMap;

use crate::diag::{did_you_mean, Code, Diagnostic, Span};
use crate::ir::{DType, Dim, Graph, Op, TensorType};
use crate::syntax::ast::{BlockDef, DimAst, Item, ModelDef, TrainDef};
use crate::syntax::Program;
use eval::{Elab, Env};
use names::Hint;
use value::Value;

pub use layers::LAYERS;

/// Lowers the root module's model. With `require_model` false, a file without a model (a block library)
/// is checked without error and gives no graph.
pub fn lower(program: &Program, require_model: bool) -> (Option<Graph>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let blocks = block_tables(program, &mut diags);
    let Some(root) = program.modules.first() else {
        return (None, diags);
    };
    let models: Vec<&ModelDef> = root
        .ast
        .items
        .iter()
        .filter_map(|i| {
            if let Item::Model(m) = i {
                Some(m)
            } else {
                None
            }
        })
        .collect();
    let trains: Vec<&TrainDef> = root
        .ast
        .items
        .iter()
        .filter_map(|i| {
            if let Item::Train(t) = i {
                Some(t)
            } else {
                None
            }
        })
        .collect();
    for extra in models.iter().skip(1) {
        diags.push(
            Diagnostic::error(
                Code::NoModel,
                extra.name.span,
                format!("a file holds one model; `{}` is a second", extra.name.name),
            )
            .with_label("second model")
            .with_secondary(models[0].name.span, "first model")
            .with_help("put each model in its own file and share blocks with `import`"),
        );
    }
    for extra in trains.iter().skip(1) {
        diags.push(
            Diagnostic::error(
                Code::BadTrainSetting,
                extra.span,
                "a file holds one `train` section",
            )
            .with_label("second train section"),
        );
    }
    let Some(model) = models.first() else {
        if require_model {
            let span = Span::new(root.file, 0, 0);
            diags.push(
                Diagnostic::error(Code::NoModel, span, "this file defines no model")
                    .with_label("expected `model name(inputs) -> outputs { ... }`")
                    .with_note("a file of blocks can be imported by a model file; `nnc check` accepts it alone"),
            );
        }
        return (None, diags);
    };
    let settings = train::param_settings(trains.first().copied(), &mut diags);
    let mut elab = Elab::new(blocks, settings);
    let ok = lower_model(&mut elab, model);
    let mut graph = std::mem::take(&mut elab.graph);
    diags.append(&mut elab.diags);
    if ok {
        diags.extend(elab.params.unused_rules());
        warn_unused(&graph, &mut diags);
        if let Some(t) = trains.first() {
            graph.train = train::config(t, &graph, &mut diags);
        }
    }
    let failed = diags.iter().any(Diagnostic::is_error);
    (if failed { None } else { Some(graph) }, diags)
}

/// For each module, the blocks it can call: its own and those it imports.
fn block_tables<'p>(
    program: &'p Program,
    diags: &mut Vec<Diagnostic>,
) -> Vec<HashMap<String, (usize, &'p BlockDef)>> {
    let own: Vec<HashMap<String, (usize, &BlockDef)>> = program
        .modules
        .iter()
        .enumerate()
        .map(|(m, module)| {
            let mut table: HashMap<String, (usize, &BlockDef)> = HashMap::new();
            for item in &module.ast.items {
                let Item::Block(b) = item else { continue };
                if layers::lookup(&b.name.name).is_some() {
                    diags.push(
                        Diagnostic::error(
                            Code::DuplicateDefinition,
                            b.name.span,
                            format!("block `{}` has the name of a built-in layer", b.name.name),
                        )
                        .with_label("shadows the built-in layer")
                        .with_help("rename the block"),
                    );
                } else if let Some((_, prev)) = table.get(&b.name.name) {
                    diags.push(
                        Diagnostic::error(
                            Code::DuplicateDefinition,
                            b.name.span,
                            format!("block `{}` is defined twice", b.name.name),
                        )
                        .with_label("defined again here")
                        .with_secondary(prev.name.span, "first defined here"),
                    );
                } else {
                    table.insert(b.name.name.clone(), (m, b));
                }
            }
            table
        })
        .collect();
    let mut visible = own.clone();
    for (m, module) in program.modules.iter().enumerate() {
        let imports = module.ast.items.iter().filter_map(|i| {
            if let Item::Import(imp) = i {
                Some(imp)
            } else {
                None
            }
        });
        for (imp, target) in imports.zip(&module.imports) {
            let Some(target) = *target else { continue };
            let chosen: Vec<(String, Span)> = match &imp.names {
                None => {
                    let mut all: Vec<(String, Span)> = own[target]
                        .keys()
                        .map(|k| (k.clone(), imp.path_span))
                        .collect();
                    all.sort_by(|a, b| a.0.cmp(&b.0));
                    all
                }
                Some(names) => names.iter().map(|n| (n.name.clone(), n.span)).collect(),
            };
            for (name, span) in chosen {
                let Some(&def) = own[target].get(&name) else {
                    diags.push(
                        Diagnostic::error(
                            Code::UnknownImport,
                            span,
                            format!("`{}` has no block `{name}`", imp.path),
                        )
                        .with_label("not defined there")
                        .with_help_opt(did_you_mean(&name, own[target].keys().map(String::as_str))),
                    );
                    continue;
                };
                match visible[m].get(&name) {
                    Some((prev_m, _)) if *prev_m != def.0 => diags.push(
                        Diagnostic::error(
                            Code::DuplicateDefinition,
                            span,
                            format!(
                                "imported block `{name}` clashes with another block of that name"
                            ),
                        )
                        .with_label("imported here")
                        .with_secondary(visible[m][&name].1.name.span, "the other definition"),
                    ),
                    _ => {
                        visible[m].insert(name, def);
                    }
                }
            }
        }
    }
    visible
}

/// Lowers the model's inputs, body and outputs. Returns false if it failed before the graph was complete.
fn lower_model(elab: &mut Elab, model: &ModelDef) -> bool {
    elab.graph.name = model.name.name.clone();
    elab.names.push(String::new());
    let mut env = Env {
        vars: HashMap::new(),
        module: 0,
    };
    for (index, input) in model.inputs.iter().enumerate() {
        let Some(ty) = declared_type(elab, input) else {
            // Bind the name anyway so that its uses do not report it as unknown.
            env.vars.insert(input.name.name.clone(), Value::Poison);
            continue;
        };
        if env.vars.contains_key(&input.name.name) {
            elab.report(
                Diagnostic::error(
                    Code::DuplicateDefinition,
                    input.name.span,
                    format!("input `{}` is declared twice", input.name.name),
                )
                .with_label("second declaration"),
            );
            continue;
        }
        let id = elab.graph.add_typed(
            Op::Input { index },
            ty,
            &[],
            input.span,
            input.name.name.clone(),
        );
        elab.graph.inputs.push((input.name.name.clone(), id));
        env.vars.insert(input.name.name.clone(), Value::Tensor(id));
    }
    let returned = eval_model_body(elab, &mut env, model);
    let Some(values) = returned else { return false };
    if values.iter().any(|v| v.value.is_poison()) {
        return false;
    }
    if values.len() != model.outputs.len() {
        let span = values.first().map_or(model.body.span, |v| v.span);
        elab.report(
            Diagnostic::error(
                Code::BadReturn,
                span,
                format!(
                    "model `{}` declares {} output(s) but returns {}",
                    model.name.name,
                    model.outputs.len(),
                    values.len()
                ),
            )
            .with_label("returned here"),
        );
        return false;
    }
    let mut ok = true;
    for (out, v) in model.outputs.iter().zip(values) {
        let Some(declared) = declared_type(elab, out) else {
            ok = false;
            continue;
        };
        match v.value {
            Value::Tensor(id) => {
                let inferred = elab.graph.node(id).ty.clone();
                if inferred != declared {
                    elab.report(
                        Diagnostic::error(Code::OutputMismatch, v.span, format!("output `{}` is declared `{declared}` but this value is `{inferred}`", out.name.name))
                            .with_label(format!("this is `{inferred}`"))
                            .with_secondary(out.span, "declared here"),
                    );
                    ok = false;
                }
                elab.graph.outputs.push((out.name.name.clone(), id));
            }
            other => {
                let d = elab.type_error(
                    v.span,
                    &format!("output `{}`", out.name.name),
                    "a tensor",
                    &other,
                );
                elab.report(d);
                ok = false;
            }
        }
    }
    ok
}

fn eval_model_body(
    elab: &mut Elab,
    env: &mut Env,
    model: &ModelDef,
) -> Option<Vec<value::Spanned>> {
    match elab.body(env, &model.body, Hint::None) {
        eval::Flow::Returned(values) => Some(values),
        eval::Flow::Fell(_) => {
            elab.report(
                Diagnostic::error(
                    Code::BadReturn,
                    model.name.span,
                    format!("model `{}` does not return its outputs", model.name.name),
                )
                .with_label("no `return` in this model")
                .with_help("end the model with `return <output>`"),
            );
            None
        }
    }
}

/// The declared type of an input or output; reports bad dimensions.
fn declared_type(elab: &mut Elab, t: &crate::syntax::ast::TypedName) -> Option<TensorType> {
    let dtype = DType::from_name(&t.dtype).expect("the grammar only admits known dtypes");
    let mut dims = Vec::new();
    let mut ok = true;
    for (i, d) in t.dims.iter().enumerate() {
        match d {
            DimAst::Named(_) if i == 0 => dims.push(Dim::Batch),
            DimAst::Named(n) => {
                elab.report(
                    Diagnostic::error(
                        Code::BadDim,
                        n.span,
                        format!(
                            "symbolic dimension `{}` must be the first (batch) dimension",
                            n.name
                        ),
                    )
                    .with_label("only the batch dimension is symbolic")
                    .with_help("give this dimension a fixed size"),
                );
                ok = false;
            }
            DimAst::Fixed(_, span) if i == 0 => {
                elab.report(
                    Diagnostic::error(
                        Code::BadDim,
                        *span,
                        "the first dimension is the batch and must be symbolic",
                    )
                    .with_label("fixed batch size")
                    .with_help(
                        "write it as a name, e.g. `N`, and choose the batch size with `--batch`",
                    ),
                );
                ok = false;
            }
            DimAst::Fixed(v, span) if *v <= 0 || *v as u64 > crate::ir::types::MAX_ELEMENTS => {
                elab.report(
                    Diagnostic::error(
                        Code::BadDim,
                        *span,
                        format!("dimension {v} is not a positive size"),
                    )
                    .with_label("must be between 1 and 2^48"),
                );
                ok = false;
            }
            DimAst::Fixed(v, _) => dims.push(Dim::Fixed(*v as u64)),
        }
    }
    if t.dims.len() < 2 && ok {
        elab.report(
            Diagnostic::error(
                Code::BadDim,
                t.span,
                "a tensor type needs the batch dimension and at least one more",
            )
            .with_label("e.g. `f32[N, 10]`"),
        );
        ok = false;
    }
    let ty = TensorType::new(dtype, dims);
    if ok && ty.elements(1) > crate::ir::types::MAX_ELEMENTS {
        elab.report(
            Diagnostic::error(
                Code::TooLarge,
                t.span,
                "this tensor type has more than 2^48 elements per example",
            )
            .with_label("too large"),
        );
        ok = false;
    }
    ok.then_some(ty)
}

/// W0001 for every layer whose value nothing uses (it is removed by dead-code elimination).
fn warn_unused(g: &Graph, diags: &mut Vec<Diagnostic>) {
    let outputs: Vec<_> = g.outputs.iter().map(|(_, id)| *id).collect();
    for id in g.node_ids() {
        let node = g.node(id);
        if node.op.is_param() || outputs.contains(&id) || !g.users(id).is_empty() {
            continue;
        }
        let what = if matches!(node.op, Op::Input { .. }) {
            "input"
        } else {
            "layer"
        };
        diags.push(
            Diagnostic::error(
                Code::Unused,
                node.span,
                format!("{what} `{}` is never used", node.path),
            )
            .with_label("its value does not reach an output")
            .with_note("it is removed, and not counted in the summary"),
        );
    }
}
