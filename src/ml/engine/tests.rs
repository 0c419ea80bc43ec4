//! The engine is held to burn's own forward pass: logits and Grad-CAM maps, for the shipped
//! classifier and for an odd-shaped network with random BatchNorm statistics, on every ISA
//! this CPU has, at batch 1 (rows split across threads) and in a batch (images split).

use burn::module::{Param, RunningState};
use burn::nn::BatchNorm;
use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};

use super::kernel::Isa;
use super::Engine;
use crate::ml::model::{Architecture, Net};
use crate::ml::registry;

fn burn_outputs(net: &Net, inputs: &[f32], n: usize, h: usize, w: usize) -> (Vec<f32>, Vec<f32>) {
    let x = Tensor::from_data(TensorData::new(inputs.to_vec(), [n, 1, h, w]), &Device::flex());
    let (logits, cam) = net.forward_with_cam(x);
    (logits.into_data().try_to_vec::<f32>().unwrap(), cam.into_data().try_to_vec::<f32>().unwrap())
}

fn random_inputs(n: usize, px: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n * px).map(|_| rng.gen_range(-2.0f32..2.5)).collect()
}

fn assert_matches(net: &Net, h: usize, w: usize, n: usize, seed: u64) {
    let inputs = random_inputs(n, h * w, seed);
    let (logits, cams) = burn_outputs(net, &inputs, n, h, w);
    let spread = logits.iter().cloned().fold(f32::MIN, f32::max) - logits.iter().cloned().fold(f32::MAX, f32::min);
    assert!(n == 1 || spread > 1e-3, "test inputs should give different logits: {logits:?}");
    for isa in Isa::available() {
        let e = Engine::compile_for(net, h, w, isa).unwrap();
        let per_image = e.cam_size().0 * e.cam_size().1;
        assert_eq!(per_image * n, cams.len(), "{isa:?}: CAM size");
        let outs = e.forward(&inputs, true).unwrap();
        assert_eq!(outs.len(), n);
        for (i, o) in outs.iter().enumerate() {
            let want = logits[i];
            assert!(
                (o.logit - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{isa:?} image {i}: {} vs burn {want}",
                o.logit
            );
            let cam = &cams[i * per_image..(i + 1) * per_image];
            let scale = cam.iter().cloned().fold(1.0f32, f32::max);
            for (a, b) in o.cam.iter().zip(cam) {
                assert!((a - b).abs() <= 1e-4 * scale, "{isa:?} image {i}: CAM {a} vs burn {b}");
            }
        }
        // Without CAMs the logits are the same.
        let plain = e.forward(&inputs, false).unwrap();
        assert!(plain.iter().zip(&outs).all(|(a, b)| a.logit == b.logit && a.cam.is_empty()));
    }
}

#[test]
fn matches_burn_for_the_shipped_classifier() {
    let _rng = crate::ml::tests::flex_rng();
    let entry = registry::embedded().unwrap().into_iter().find(|e| e.card.name == "classifier").unwrap();
    let clf = entry.load(&Device::flex()).unwrap();
    let (h, w) = (clf.card.input.height, clf.card.input.width);
    assert_matches(&clf.net(), h, w, 1, 1);
    assert_matches(&clf.net(), h, w, 7, 2);
    // The classifier on the CPU runs the engine, and says so.
    // (Without AVX2 or AVX-512 the portable kernels would be slower than burn flex, which
    // then keeps the job.)
    assert_eq!(!clf.engines.is_empty(), Isa::detect() != Isa::Portable);
    assert_eq!(clf.executor().starts_with("CPU engine"), !clf.engines.is_empty());
}

fn randomise(bn: &mut BatchNorm, rng: &mut rand::rngs::StdRng) {
    let c = bn.gamma.val().dims()[0];
    let d = Device::flex();
    let v = |rng: &mut rand::rngs::StdRng, lo: f32, hi: f32| {
        Tensor::<1>::from_data(TensorData::new((0..c).map(|_| rng.gen_range(lo..hi)).collect::<Vec<f32>>(), [c]), &d)
    };
    bn.gamma = Param::from_tensor(v(rng, 0.5, 1.5));
    bn.beta = Param::from_tensor(v(rng, -0.3, 0.3));
    bn.running_mean = RunningState::new(v(rng, -0.5, 0.5));
    bn.running_var = RunningState::new(v(rng, 0.3, 2.0));
}

/// Channels that are not whole blocks (20 → padded to 32), identity and projected
/// shortcuts, odd sizes through stride 2, and BatchNorm that is far from the identity.
#[test]
fn matches_burn_for_odd_shapes_and_real_batchnorm() {
    let _rng = crate::ml::tests::flex_rng();
    let d = Device::flex();
    d.seed(3);
    let arch = Architecture { kind: "resnet".into(), width: 20, blocks: vec![2, 1, 1], dropout: 0.0, members: 1 };
    let mut net = arch.init(&d);
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    randomise(&mut net.stem_bn, &mut rng);
    for b in &mut net.blocks {
        randomise(&mut b.bn1, &mut rng);
        randomise(&mut b.bn2, &mut rng);
        if let Some(s) = &mut b.shortcut {
            randomise(&mut s.bn, &mut rng);
        }
    }
    let net = burn::module::Module::valid(&net);
    assert!(net.blocks[1].shortcut.is_none(), "the second block of stage 1 has an identity shortcut");
    assert_matches(&net, 13, 11, 1, 5);
    assert_matches(&net, 13, 11, 5, 6);
}

#[test]
fn refuses_inputs_that_are_not_whole_images() {
    let _rng = crate::ml::tests::flex_rng();
    let d = Device::flex();
    let arch = Architecture { kind: "resnet".into(), width: 8, blocks: vec![1], dropout: 0.0, members: 1 };
    let net = arch.init(&d);
    let e = Engine::compile(&net, 6, 6).unwrap();
    assert!(e.forward(&[0.0; 35], false).is_err());
    assert!(e.forward(&[], false).is_err());
    assert_eq!(e.forward(&[0.0; 72], false).unwrap().len(), 2);
}
