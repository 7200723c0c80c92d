//! Static memory planning. Decides where every value lives, then packs the arena:
//! 1. inputs, parameters and outputs get their own buffers; a reshape or flatten of a contiguous tensor is a
//!    view of it; a concat's inputs are placed as strided slices of the concat's buffer (outer concats
//!    first, so nested concats nest their slices), unless an input is shared with another concat, appears
//!    twice, or is not computed by a step;
//! 2. an elementwise op (activation, scale, inference dropout, batch norm, add, mul) writes over its first input when
//!    that input is an arena temporary read by nothing later, and a fused product with a residual writes over
//!    the residual under the same conditions (if the residual is none of its other inputs);
//! 3. every other value gets a fresh arena block; blocks whose lifetimes (first write to last read, in step
//!    order) do not overlap may share memory. Offsets are assigned largest block first, at the lowest
//!    64-byte-aligned offset free during the block's lifetime.
//!
//! Members of a group of sibling products (`merge-siblings`) are scheduled together and their outputs live
//! from the group's first step, where a backend computes them all.
//!
//! It does not reorder steps to lower the peak, and it does not place values into their consumer's padded
//! input (a backend may add that).

use std::collections::HashMap;

use super::{is_computed, Buffer, KernelPlan, Step, Storage, View};
use crate::ir::{Act, Graph, NodeId, Op};

const ALIGN: u64 = 64;
const ELEMENT_BYTES: u64 = 4;

pub fn plan_memory(g: &Graph, batch: u64) -> KernelPlan {
    let order = with_groups_together(g, g.topo_order().expect("a verified graph is acyclic"));
    let dims_of = |id: NodeId| g.node(id).ty.shape_at(batch);
    let output_names: HashMap<NodeId, String> =
        g.outputs.iter().map(|(n, id)| (*id, n.clone())).collect();
    let mut buffers: Vec<Buffer> = Vec::new();
    let new_buffer = |buffers: &mut Vec<Buffer>, storage: Storage, dims: &[u64]| {
        buffers.push(Buffer {
            storage,
            bytes: dims.iter().product::<u64>() * ELEMENT_BYTES,
            live: None,
        });
        buffers.len() - 1
    };
    let mut views: HashMap<NodeId, View> = HashMap::new();

    // Leaves.
    for &id in &order {
        let node = g.node(id);
        let storage = match &node.op {
            Op::Input { index } => Storage::Input {
                name: g.inputs[*index].0.clone(),
            },
            Op::Param(_) => Storage::Weight {
                name: node.path.clone(),
            },
            _ => continue,
        };
        let b = new_buffer(&mut buffers, storage, &dims_of(id));
        views.insert(id, View::dense(b, 0, dims_of(id)));
    }

    // Concat placement, outer concats first.
    let mut placed_in_concat: HashMap<NodeId, NodeId> = HashMap::new();
    for &id in order.iter().rev() {
        let Op::Concat { axis } = g.node(id).op else {
            continue;
        };
        let base = match views.get(&id) {
            Some(v) => v.clone(),
            None => {
                let storage = match output_names.get(&id) {
                    Some(name) => Storage::Output { name: name.clone() },
                    None => Storage::Arena { offset: 0 },
                };
                let b = new_buffer(&mut buffers, storage, &dims_of(id));
                let v = View::dense(b, 0, dims_of(id));
                views.insert(id, v.clone());
                v
            }
        };
        let inputs = g.inputs(id);
        let mut start = 0;
        for (i, &input) in inputs.iter().enumerate() {
            let width = dims_of(input)[axis];
            let eligible = is_computed(&g.node(input).op)
                && !output_names.contains_key(&input)
                && !placed_in_concat.contains_key(&input)
                && !views.contains_key(&input)
                && inputs.iter().filter(|&&j| j == input).count() == 1;
            if eligible {
                let mut dims = base.dims.clone();
                dims[axis] = width;
                let offset = base.offset + start * base.strides[axis];
                views.insert(
                    input,
                    View {
                        buffer: base.buffer,
                        offset,
                        dims,
                        strides: base.strides.clone(),
                    },
                );
                placed_in_concat.insert(input, id);
            }
            let _ = i;
            start += width;
        }
    }

    // Last step reading each value (reads through a reshape view count for the viewed value).
    let steps_order: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&id| is_computed(&g.node(id).op) || needs_copy(g, id, &views))
        .collect();
    let step_index: HashMap<NodeId, usize> = steps_order
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let mut root: HashMap<NodeId, NodeId> = HashMap::new();
    for &id in &order {
        let r = match g.node(id).op {
            Op::Flatten | Op::Reshape { .. } if !step_index.contains_key(&id) => {
                *root.get(&g.inputs(id)[0]).unwrap_or(&g.inputs(id)[0])
            }
            _ => id,
        };
        root.insert(id, r);
    }
    let mut last_use: HashMap<NodeId, usize> = HashMap::new();
    for &id in &steps_order {
        for input in g.inputs(id) {
            let e = last_use.entry(root[&input]).or_insert(0);
            *e = (*e).max(step_index[&id]);
        }
    }

    // Every other value, in step order.
    let mut steps = Vec::new();
    for &id in &order {
        let node = g.node(id);
        if matches!(node.op, Op::Input { .. } | Op::Param(_)) {
            continue;
        }
        let input_views: Vec<View> = g.inputs(id).iter().map(|i| views[i].clone()).collect();
        if !step_index.contains_key(&id) {
            // A reshape of a contiguous tensor: a view.
            let src = &input_views[0];
            views.insert(id, View::dense(src.buffer, src.offset, dims_of(id)));
            continue;
        }
        let mut in_place = false;
        let output = match views.get(&id) {
            Some(v) => v.clone(),
            None => {
                let inputs = g.inputs(id);
                let slot = in_place_slot(&node.op);
                let reusable = slot.map(|s| inputs[s]).filter(|&x| {
                    let v = &views[&x];
                    // The overwritten value is no other input of the op (a residual `conv(x) + x`
                    // must not overwrite the `x` the convolution reads).
                    let alone = slot == Some(0)
                        || inputs.iter().filter(|&&i| root[&i] == root[&x]).count() == 1;
                    alone
                        && !output_names.contains_key(&id)
                        && matches!(buffers[v.buffer].storage, Storage::Arena { .. })
                        && !placed_in_concat.contains_key(&root[&x])
                        && v.is_contiguous()
                        && v.dims == dims_of(id)
                        && last_use.get(&root[&x]) == Some(&step_index[&id])
                });
                match reusable {
                    Some(x) => {
                        in_place = true;
                        views[&x].clone()
                    }
                    None => {
                        let storage = match output_names.get(&id) {
                            Some(name) => Storage::Output { name: name.clone() },
                            None => Storage::Arena { offset: 0 },
                        };
                        let b = new_buffer(&mut buffers, storage, &dims_of(id));
                        View::dense(b, 0, dims_of(id))
                    }
                }
            }
        };
        views.insert(id, output.clone());
        steps.push(Step {
            node: id,
            path: node.path.clone(),
            op: node.op.clone(),
            inputs: input_views,
            output,
            in_place,
        });
    }

    // Lifetimes of arena buffers, then offsets.
    for (i, s) in steps.iter().enumerate() {
        for b in std::iter::once(s.output.buffer).chain(s.inputs.iter().map(|v| v.buffer)) {
            if matches!(buffers[b].storage, Storage::Arena { .. }) {
                let live = buffers[b].live.get_or_insert((i, i));
                live.0 = live.0.min(i);
                live.1 = live.1.max(i);
            }
        }
    }
    // A group's members are computed at its first step: their outputs live from there.
    for (i, s) in steps.iter().enumerate() {
        let Some(group) = group_of(&s.op) else {
            continue;
        };
        let first = (0..i)
            .rev()
            .take_while(|&j| group_of(&steps[j].op) == Some(group))
            .last()
            .unwrap_or(i);
        if let Some(live) = &mut buffers[s.output.buffer].live {
            live.0 = live.0.min(first);
        }
    }
    let arena_bytes = assign_offsets(&mut buffers);
    let naive_bytes = order
        .iter()
        .filter(|&&id| is_computed(&g.node(id).op) && !output_names.contains_key(&id))
        .map(|&id| (dims_of(id).iter().product::<u64>() * ELEMENT_BYTES).div_ceil(ALIGN) * ALIGN)
        .sum();
    let weight_bytes = buffers
        .iter()
        .filter(|b| matches!(b.storage, Storage::Weight { .. }))
        .map(|b| b.bytes)
        .sum();
    let largest_activation = order
        .iter()
        .filter(|&&id| !g.node(id).op.is_param())
        .map(|&id| dims_of(id).iter().product::<u64>() * ELEMENT_BYTES)
        .max()
        .unwrap_or(0);
    KernelPlan {
        winograd: true,
        conv_rows: true,
        batch,
        inputs: g
            .inputs
            .iter()
            .map(|(n, id)| (n.clone(), views[id].clone()))
            .collect(),
        outputs: g
            .outputs
            .iter()
            .map(|(n, id)| (n.clone(), views[id].clone()))
            .collect(),
        buffers,
        steps,
        arena_bytes,
        naive_bytes,
        weight_bytes,
        largest_activation,
    }
}

/// The group of products computed as one (`merge-siblings`) a step's op belongs to.
pub fn group_of(op: &Op) -> Option<NodeId> {
    match op {
        Op::Fused(f) => f.group,
        _ => None,
    }
}

/// `order` with the members of each group moved to where its first member is, in order. Legal: members
/// read only their shared input (computed before any of them) and parameters.
fn with_groups_together(g: &Graph, order: Vec<NodeId>) -> Vec<NodeId> {
    let mut members: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    for &id in &order {
        if let Some(group) = group_of(&g.node(id).op) {
            members.entry(group).or_default().push(id);
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for id in order {
        match group_of(&g.node(id).op) {
            None => out.push(id),
            Some(group) => {
                if let Some(all) = members.remove(&group) {
                    out.extend(all);
                }
            }
        }
    }
    out
}

/// A reshape whose input is not contiguous (a concat slice) must copy.
fn needs_copy(g: &Graph, id: NodeId, views: &HashMap<NodeId, View>) -> bool {
    matches!(g.node(id).op, Op::Flatten | Op::Reshape { .. })
        && views
            .get(&g.inputs(id)[0])
            .is_some_and(|v| !v.is_contiguous())
}

/// The input whose memory the op may write its output over, if any: the first input of an elementwise
/// op; the residual (input 1) of a fused product, which reads each residual value once, in the tile
/// that writes the same position.
fn in_place_slot(op: &Op) -> Option<usize> {
    match op {
        Op::Fused(f) if f.residual => Some(1),
        _ if elementwise(op) => Some(0),
        _ => None,
    }
}

/// Ops that read each element once, at the position they write: safe to compute in place.
fn elementwise(op: &Op) -> bool {
    match op {
        Op::Activation(
            Act::Relu | Act::Sigmoid | Act::Tanh | Act::Identity | Act::LeakyRelu { .. },
        ) => true,
        // Batch norm (inference: a per-channel affine map) reads each element where it writes it.
        Op::Scale { .. } | Op::Add | Op::Mul | Op::Dropout { .. } | Op::BatchNorm { .. } => true,
        // A chain's kernel reads every input of an element before it writes the element.
        Op::Chain(_) => true,
        // Softmax and LRN read neighbours of the element they write.
        Op::Input { .. }
        | Op::Param(_)
        | Op::Dense { .. }
        | Op::Conv2d { .. }
        | Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AdaptiveAvgPool2d { .. }
        | Op::GlobalAvgPool { .. }
        | Op::Flatten
        | Op::Reshape { .. }
        | Op::Lrn { .. }
        | Op::ZeroPad2d { .. }
        | Op::Softmax { .. }
        | Op::Concat { .. }
        | Op::Embedding { .. }
        | Op::Rnn { .. }
        | Op::Constant { .. }
        | Op::Loss { .. }
        | Op::Penalty { .. }
        | Op::Grad { .. }
        | Op::Fused(_) => false,
    }
}

/// Packs arena buffers: largest first, each at the lowest aligned offset that no buffer with an
/// overlapping lifetime occupies. Returns the arena size.
fn assign_offsets(buffers: &mut [Buffer]) -> u64 {
    let mut arena: Vec<usize> = (0..buffers.len())
        .filter(|&i| buffers[i].live.is_some())
        .collect();
    arena.sort_by(|&a, &b| buffers[b].bytes.cmp(&buffers[a].bytes).then(a.cmp(&b)));
    let mut placed: Vec<(u64, u64, (usize, usize))> = Vec::new();
    let mut size = 0;
    for i in arena {
        let live = buffers[i].live.expect("arena buffers have lifetimes");
        let bytes = buffers[i].bytes.div_ceil(ALIGN) * ALIGN;
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|(_, _, l)| l.0 <= live.1 && live.0 <= l.1)
            .map(|(o, b, _)| (*o, *o + *b))
            .collect();
        busy.sort();
        let mut offset = 0;
        for (start, end) in busy {
            if offset + bytes <= start {
                break;
            }
            offset = offset.max(end);
        }
        buffers[i].storage = Storage::Arena { offset };
        placed.push((offset, bytes, live));
        size = size.max(offset + bytes);
    }
    size
}
