//! Counting: parameters (trainable and not), MACs and memory, per layer and in total, at a batch size.
//! An analysis: it reads the graph and changes nothing.

use serde::Serialize;

use crate::ir::{Graph, NodeId, Op};

/// One row of a summary: a layer (any node that is not a parameter).
#[derive(Clone, Debug, Serialize)]
pub struct LayerStats {
    pub id: String,
    pub path: String,
    pub op: &'static str,
    /// Output shape at the counted batch size.
    pub shape: Vec<u64>,
    pub dtype: &'static str,
    pub params: u64,
    pub trainable: u64,
    pub non_trainable: u64,
    pub macs: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub batch: u64,
    pub layers: Vec<LayerStats>,
    pub trainable: u64,
    pub non_trainable: u64,
    pub macs: u64,
    /// Bytes of every value a layer produces (inputs included), without reuse.
    pub activation_bytes: u64,
    /// Bytes of all parameters, and of the trainable ones.
    pub weight_bytes: u64,
    pub trainable_bytes: u64,
}

pub fn count(g: &Graph, batch: u64) -> Stats {
    let order: Vec<NodeId> = g.topo_order().unwrap_or_else(|| g.node_ids());
    let mut stats = Stats {
        batch,
        layers: Vec::new(),
        trainable: 0,
        non_trainable: 0,
        macs: 0,
        activation_bytes: 0,
        weight_bytes: 0,
        trainable_bytes: 0,
    };
    for id in order {
        let node = g.node(id);
        if let Op::Param(p) = &node.op {
            let n = node.ty.elements(batch);
            if p.trainable {
                stats.trainable = stats.trainable.saturating_add(n);
                stats.trainable_bytes = stats.trainable_bytes.saturating_add(node.ty.bytes(batch));
            } else {
                stats.non_trainable = stats.non_trainable.saturating_add(n);
            }
            stats.weight_bytes = stats.weight_bytes.saturating_add(node.ty.bytes(batch));
            continue;
        }
        let (data, params) = g.split_inputs(id);
        let data_tys: Vec<_> = data.iter().map(|&i| &g.node(i).ty).collect();
        let macs = node.op.macs(&data_tys, &node.ty, batch);
        let (mut trainable, mut non_trainable) = (0, 0);
        for p in params {
            let pn = g.node(p);
            let n = pn.ty.elements(batch);
            match &pn.op {
                Op::Param(info) if info.trainable => trainable = u64::saturating_add(trainable, n),
                _ => non_trainable = u64::saturating_add(non_trainable, n),
            }
        }
        stats.macs = stats.macs.saturating_add(macs);
        stats.activation_bytes = stats.activation_bytes.saturating_add(node.ty.bytes(batch));
        stats.layers.push(LayerStats {
            id: id.to_string(),
            path: node.path.clone(),
            op: node.op.name(),
            shape: node.ty.shape_at(batch),
            dtype: node.ty.dtype.name(),
            params: trainable.saturating_add(non_trainable),
            trainable,
            non_trainable,
            macs,
        });
    }
    stats
}
