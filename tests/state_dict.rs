//! Parameter names and shapes equal the reference implementations' `state_dict()` (torchvision for AlexNet,
//! VGG, ResNet, GoogLeNet and Inception v3; timm for Inception v4 and Inception-ResNet-v2), in the same
//! order, so pretrained weights load by name. Fixtures come from tools/state_dict_keys.py (real PyTorch).

mod common;

use std::path::Path;

use common::model;

#[test]
fn parameters_equal_the_reference_state_dicts() {
    let mut dir: Vec<_> = std::fs::read_dir("tests/fixtures/state_dict")
        .expect("fixtures exist")
        .map(|e| e.expect("entry").path())
        .collect();
    dir.sort();
    assert_eq!(dir.len(), 12, "one fixture per torchvision/timm zoo model");
    for fixture in dir {
        let name = fixture
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let g = model(Path::new(&format!("models/{name}.nn")));
        let ours: Vec<String> = g
            .node_ids()
            .into_iter()
            .filter(|&id| g.node(id).op.is_param())
            .map(|id| {
                let dims = g
                    .node(id)
                    .ty
                    .fixed_dims()
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join("x");
                format!("{} {dims}", g.node(id).path)
            })
            .collect();
        let theirs: Vec<String> = std::fs::read_to_string(&fixture)
            .expect("readable")
            .lines()
            .map(str::to_string)
            .collect();
        let first_difference = ours.iter().zip(&theirs).position(|(a, b)| a != b);
        assert!(
            ours == theirs,
            "{name}: {} parameters vs {} in the reference; first difference at {first_difference:?}: {:?} vs {:?}",
            ours.len(),
            theirs.len(),
            first_difference.map(|i| &ours[i]),
            first_difference.map(|i| &theirs[i]),
        );
    }
}
