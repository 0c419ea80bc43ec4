//! DICOM parsing and pixel decoding on arbitrary bytes: parse as Part 10, decode every frame,
//! render each, resample. Any panic, abort or hang is a bug; errors are the expected outcome.
//! Inputs without the 128-byte preamble and `DICM` get them prepended, so the fuzzer spends its
//! time inside the data set rather than on the magic number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lucent::preprocess::{self, render, RenderOptions};

fuzz_target!(|data: &[u8]| {
    let owned;
    let bytes = if data.len() >= 132 && &data[128..132] == b"DICM" {
        data
    } else {
        let mut v = vec![0u8; 128];
        v.extend_from_slice(b"DICM");
        v.extend_from_slice(data);
        owned = v;
        &owned
    };
    let Ok(obj) = preprocess::parse(bytes) else { return };
    let _ = lucent::dicom::dump::dump(&obj);
    let Ok(px) = preprocess::decode(&obj, None) else { return };
    for i in 0..px.frames.min(4) {
        if let Ok(img) = preprocess::render_decoded(&obj, &px, i, &RenderOptions::default()) {
            let _ = render::resize(&img, 17, 9);
        }
    }
});
