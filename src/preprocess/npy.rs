//! NumPy .npy output of stored pixel values: shape (frames, rows, columns, samples), the
//! natural dtype (u8, i8, u16, i16, u32 or i32), C order, little endian.

use std::io::Write;

use npyz::WriterBuilder;

use super::decode::{Pixels, Samples};
use super::PixelError;

/// Writes `pixels` as a .npy array to `out`.
pub fn write_npy<W: Write>(pixels: &Pixels, out: W) -> Result<(), PixelError> {
    let shape = [pixels.frames as u64, pixels.rows as u64, pixels.columns as u64, pixels.samples_per_pixel as u64];
    let err = |e: std::io::Error| PixelError::Io(e.to_string());
    macro_rules! go {
        ($v:expr, $t:ty) => {{
            let mut w =
                npyz::WriteOptions::<$t>::new().default_dtype().shape(&shape).writer(out).begin_nd().map_err(err)?;
            w.extend($v.iter().copied()).map_err(err)?;
            w.finish().map_err(err)
        }};
    }
    match &pixels.samples {
        Samples::U8(v) => go!(v, u8),
        Samples::I8(v) => go!(v, i8),
        Samples::U16(v) => go!(v, u16),
        Samples::I16(v) => go!(v, i16),
        Samples::U32(v) => go!(v, u32),
        Samples::I32(v) => go!(v, i32),
    }
}

/// Writes `pixels` to the file `path` (buffered).
pub fn save_npy(pixels: &Pixels, path: &std::path::Path) -> Result<(), PixelError> {
    let f = std::fs::File::create(path).map_err(|e| PixelError::Io(format!("{}: {e}", path.display())))?;
    let mut w = std::io::BufWriter::new(f);
    write_npy(pixels, &mut w)?;
    w.flush().map_err(|e| PixelError::Io(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::decode::Photometric;

    #[test]
    fn header_and_data_round_trip() {
        let p = Pixels {
            rows: 2,
            columns: 3,
            frames: 1,
            first_frame: 0,
            samples_per_pixel: 1,
            bits_allocated: 16,
            bits_stored: 16,
            signed: true,
            photometric: Photometric::Monochrome2,
            stored_photometric: "MONOCHROME2".into(),
            transfer_syntax: "1.2.840.10008.1.2.1".into(),
            samples: Samples::I16(vec![-1, 2, -3, 4, -5, 600]),
        };
        let mut buf = Vec::new();
        write_npy(&p, &mut buf).unwrap();
        let npy = npyz::NpyFile::new(&buf[..]).unwrap();
        assert_eq!(npy.shape(), &[1, 2, 3, 1]);
        assert_eq!(npy.into_vec::<i16>().unwrap(), vec![-1, 2, -3, 4, -5, 600]);
    }
}
