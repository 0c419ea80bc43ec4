//! The convolution microkernels: one tile of `R` output positions of one row × `V` blocks of
//! 16 output channels, accumulated over every tap and input channel in registers, then
//! `+ bias (+ residual)`, optional ReLU, stored once.
//!
//! Three implementations of the same arithmetic: AVX-512F (one zmm per 16 channels),
//! AVX2 + FMA (two ymm), and portable Rust (what LLVM vectorises for the target, used on
//! other CPUs and as the reference in tests). The ISA is detected once at run time;
//! `LUCENT_CPU_KERNEL=portable|avx2|avx512` forces one (tests walk all that the CPU has).

use std::sync::OnceLock;

/// Output channels per block: one AVX-512 register.
pub const BLOCK: usize = 16;

/// Which kernel family runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512f",
        }
    }

    /// The ISAs this CPU can run, best first.
    pub fn available() -> Vec<Isa> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
        }
        v.push(Isa::Portable);
        v
    }

    /// The best available ISA, or the one `LUCENT_CPU_KERNEL` names (if the CPU has it).
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let avail = Isa::available();
            let forced = std::env::var("LUCENT_CPU_KERNEL").ok();
            forced.and_then(|f| avail.iter().copied().find(|i| i.name().starts_with(f.as_str()))).unwrap_or(avail[0])
        })
    }

    /// Largest tile (positions, channel blocks) whose accumulators fit the register file.
    pub fn max_tile(self) -> (usize, usize) {
        match self {
            // 32 zmm: 8×3 accumulators + 3 weights + 1 broadcast.
            Isa::Avx512 => (8, 3),
            // 16 ymm: 6×2 accumulators (one block = 2 ymm) + 2 weights + 1 broadcast.
            Isa::Avx2 => (6, 1),
            // 16 xmm/NEON q registers: 2×16 lanes of accumulators (8) + the 16 weights (4).
            Isa::Portable => (2, 1),
        }
    }
}

/// One tile's operands. Pointers are into buffers the caller owns.
pub struct Tile {
    /// Input at the first tap of the tile's first position, channel 0.
    pub input: *const f32,
    /// Offsets (in floats) of each tap from `input`.
    pub taps: *const usize,
    pub ntaps: usize,
    /// Floats between the inputs of consecutive output positions (stride × channel stride).
    pub px_stride: usize,
    /// Input channels (contiguous at each position).
    pub cin: usize,
    /// Packed weights `[tap][ci][V × 16]`.
    pub weights: *const f32,
    /// `[V × 16]`.
    pub bias: *const f32,
    /// Residual to add before the ReLU, laid out like `out`; null for none.
    pub residual: *const f32,
    /// Output at the tile's first position, first channel of the block group.
    pub out: *mut f32,
    /// Floats between consecutive output positions.
    pub out_px: usize,
    pub relu: bool,
}

/// Runs one tile of `r` positions (1..=max) and `v` channel blocks with `isa`.
///
/// # Safety
/// Every pointer must be valid for the reads and writes the tile's geometry implies, and
/// `isa` must be one [`Isa::available`] reported.
pub unsafe fn run(isa: Isa, r: usize, v: usize, t: &Tile) {
    macro_rules! dispatch {
        ($f:ident, $v:literal, [$($r:literal),*]) => {
            match r { $($r => $f::<$r, $v>(t),)* _ => unreachable!("tile width {r}") }
        };
    }
    match (isa, v) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 1) => dispatch!(tile_avx512, 1, [1, 2, 3, 4, 5, 6, 7, 8]),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 2) => dispatch!(tile_avx512, 2, [1, 2, 3, 4, 5, 6, 7, 8]),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, 3) => dispatch!(tile_avx512, 3, [1, 2, 3, 4, 5, 6, 7, 8]),
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx2, 1) => dispatch!(tile_avx2, 1, [1, 2, 3, 4, 5, 6]),
        (Isa::Portable, 1) => dispatch!(tile_portable, 1, [1, 2]),
        _ => unreachable!("no kernel for {isa:?} with {v} channel blocks"),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const R: usize, const V: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    let stride_w = V * BLOCK;
    for tap in 0..t.ntaps {
        let ip = t.input.add(*t.taps.add(tap));
        let wp = t.weights.add(tap * t.cin * stride_w);
        for ci in 0..t.cin {
            let mut w = [_mm512_setzero_ps(); V];
            for v in 0..V {
                w[v] = _mm512_loadu_ps(wp.add(ci * stride_w + v * BLOCK));
            }
            for r in 0..R {
                let x = _mm512_set1_ps(*ip.add(r * t.px_stride + ci));
                for v in 0..V {
                    acc[r][v] = _mm512_fmadd_ps(x, w[v], acc[r][v]);
                }
            }
        }
    }
    let zero = _mm512_setzero_ps();
    for v in 0..V {
        let b = _mm512_loadu_ps(t.bias.add(v * BLOCK));
        for r in 0..R {
            let mut y = _mm512_add_ps(acc[r][v], b);
            let off = r * t.out_px + v * BLOCK;
            if !t.residual.is_null() {
                y = _mm512_add_ps(y, _mm512_loadu_ps(t.residual.add(off)));
            }
            if t.relu {
                y = _mm512_max_ps(y, zero);
            }
            _mm512_storeu_ps(t.out.add(off), y);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const R: usize, const V: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    // Each 16-channel block is two 8-lane registers: index 2v and 2v+1. The arrays are
    // sized for V = 1, the only width this ISA's register file allows.
    debug_assert_eq!(V, 1);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    for tap in 0..t.ntaps {
        let ip = t.input.add(*t.taps.add(tap));
        let wp = t.weights.add(tap * t.cin * BLOCK);
        for ci in 0..t.cin {
            let w0 = _mm256_loadu_ps(wp.add(ci * BLOCK));
            let w1 = _mm256_loadu_ps(wp.add(ci * BLOCK + 8));
            for r in 0..R {
                let x = _mm256_set1_ps(*ip.add(r * t.px_stride + ci));
                acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
            }
        }
    }
    let zero = _mm256_setzero_ps();
    for h in 0..2 {
        let b = _mm256_loadu_ps(t.bias.add(h * 8));
        for r in 0..R {
            let mut y = _mm256_add_ps(acc[r][h], b);
            let off = r * t.out_px + h * 8;
            if !t.residual.is_null() {
                y = _mm256_add_ps(y, _mm256_loadu_ps(t.residual.add(off)));
            }
            if t.relu {
                y = _mm256_max_ps(y, zero);
            }
            _mm256_storeu_ps(t.out.add(off), y);
        }
    }
}

unsafe fn tile_portable<const R: usize, const V: usize>(t: &Tile) {
    let mut acc = [[[0f32; BLOCK]; V]; R];
    let stride_w = V * BLOCK;
    for tap in 0..t.ntaps {
        let ip = t.input.add(*t.taps.add(tap));
        let wp = t.weights.add(tap * t.cin * stride_w);
        for ci in 0..t.cin {
            let w = std::slice::from_raw_parts(wp.add(ci * stride_w), stride_w);
            for r in 0..R {
                let x = *ip.add(r * t.px_stride + ci);
                for v in 0..V {
                    for l in 0..BLOCK {
                        acc[r][v][l] += x * w[v * BLOCK + l];
                    }
                }
            }
        }
    }
    let bias = std::slice::from_raw_parts(t.bias, stride_w);
    for r in 0..R {
        for v in 0..V {
            let off = r * t.out_px + v * BLOCK;
            for l in 0..BLOCK {
                let mut y = acc[r][v][l] + bias[v * BLOCK + l];
                if !t.residual.is_null() {
                    y += *t.residual.add(off + l);
                }
                if t.relu {
                    y = y.max(0.0);
                }
                *t.out.add(off + l) = y;
            }
        }
    }
}
