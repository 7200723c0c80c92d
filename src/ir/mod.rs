//! The graph IR: typed ops in a petgraph graph, shape inference, and the canonical dump.

pub mod dump;
mod graph;
pub mod op;
pub mod shape;
pub mod train;
pub mod types;
pub mod window;

pub use graph::{Graph, Node, NodeId};
pub use op::{Act, Cell, Op, Param, ParamRole};
pub use types::{DType, Dim, TensorType};
