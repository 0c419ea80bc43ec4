//! RLE Lossless (PS3.5 Annex G), decoded here rather than by dicom-pixeldata, whose RLE decoder
//! rejects Bits Allocated 32 (pydicom's SC_rgb_rle_32bit.dcm, rtdose_rle.dcm).
//!
//! Each frame is a header of 16 little-endian u32 (segment count, 15 offsets) and PackBits
//! segments, one per byte of each sample, most significant byte first. Output: little-endian
//! samples, interleaved.

use dicom_core::value::PixelFragmentSequence;

use super::PixelError;

/// The bytes of frame `frame` (from 0): fragments grouped by the Basic Offset Table, or one
/// fragment per frame, or all fragments for a single frame.
pub fn frame_bytes(seq: &PixelFragmentSequence<Vec<u8>>, frame: u32, frames: u32) -> Result<Vec<u8>, PixelError> {
    let frags = seq.fragments();
    let bot = seq.offset_table();
    if frames == 1 {
        return Ok(frags.concat());
    }
    if bot.len() == frames as usize {
        // Offsets count from the first fragment's item header (8 bytes per item).
        let mut starts = Vec::with_capacity(frags.len());
        let mut pos = 0u64;
        for f in frags {
            starts.push(pos);
            pos += f.len() as u64 + 8;
        }
        let lo = bot[frame as usize] as u64;
        let hi = bot.get(frame as usize + 1).map(|&v| v as u64).unwrap_or(u64::MAX);
        let parts: Vec<&Vec<u8>> =
            frags.iter().zip(&starts).filter(|(_, &s)| s >= lo && s < hi).map(|(f, _)| f).collect();
        if parts.is_empty() {
            return Err(PixelError::Corrupt(format!("the offset table points past the fragments for frame {frame}")));
        }
        return Ok(parts.into_iter().flatten().copied().collect());
    }
    if frags.len() == frames as usize {
        return Ok(frags[frame as usize].clone());
    }
    Err(PixelError::Corrupt(format!("{} fragments for {frames} frames and no usable offset table", frags.len())))
}

/// Decodes one RLE frame of `pixels` pixels with `spp` samples of `bps` bytes.
pub fn decode_frame(data: &[u8], pixels: usize, spp: usize, bps: usize, out: &mut Vec<u8>) -> Result<(), PixelError> {
    if data.len() < 64 {
        return Err(PixelError::Truncated { needed: 64, got: data.len() as u64 });
    }
    let word = |i: usize| u32::from_le_bytes([data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]]) as usize;
    let nseg = word(0);
    if nseg != spp * bps {
        return Err(PixelError::Corrupt(format!("RLE header has {nseg} segments, {} expected", spp * bps)));
    }
    let offsets: Vec<usize> = (1..=nseg).map(word).collect();
    let base = out.len();
    out.resize(base + pixels * spp * bps, 0);
    let mut seg = Vec::with_capacity(pixels);
    for (k, &start) in offsets.iter().enumerate() {
        let end = offsets.get(k + 1).copied().unwrap_or(data.len());
        if start < 64 || start > end || end > data.len() {
            return Err(PixelError::Corrupt(format!(
                "RLE segment {k} has offsets {start}..{end} in {} bytes",
                data.len()
            )));
        }
        seg.clear();
        packbits(&data[start..end], pixels, &mut seg);
        if seg.len() < pixels {
            return Err(PixelError::Truncated { needed: pixels as u64, got: seg.len() as u64 });
        }
        let (sample, byte) = (k / bps, k % bps);
        // Segment `byte` 0 is the most significant byte; the output is little endian.
        let at = bps - 1 - byte;
        for (p, &v) in seg[..pixels].iter().enumerate() {
            out[base + (p * spp + sample) * bps + at] = v;
        }
    }
    Ok(())
}

/// PackBits: n ≥ 0 copies n+1 literal bytes, -127 ≤ n ≤ -1 repeats the next byte 1-n times,
/// -128 is a no-op. Stops once `want` bytes are produced or the input ends.
fn packbits(src: &[u8], want: usize, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < src.len() && out.len() < want {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let len = n as usize + 1;
            let end = (i + len).min(src.len());
            out.extend_from_slice(&src[i..end]);
            i = end;
        } else if n != -128 {
            let Some(&b) = src.get(i) else { break };
            i += 1;
            out.extend(std::iter::repeat_n(b, 1 + (-(n as i32)) as usize));
        }
    }
    out.truncate(want);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut pos = 64u32;
        let mut body = Vec::new();
        for (i, s) in segments.iter().enumerate() {
            h[4 + 4 * i..8 + 4 * i].copy_from_slice(&pos.to_le_bytes());
            body.extend_from_slice(s);
            pos += s.len() as u32;
        }
        h.extend(body);
        h
    }

    #[test]
    fn decodes_literals_runs_and_byte_order() {
        // 4 pixels of 16 bits: high bytes as a run of 0x01, low bytes as literals.
        let data = frame(&[&[0xFD, 0x01], &[0x03, 0x10, 0x20, 0x30, 0x40]]);
        let mut out = Vec::new();
        decode_frame(&data, 4, 1, 2, &mut out).unwrap();
        assert_eq!(out, vec![0x10, 0x01, 0x20, 0x01, 0x30, 0x01, 0x40, 0x01]);
    }

    #[test]
    fn short_segments_and_bad_headers_are_errors() {
        let data = frame(&[&[0x01, 0x10, 0x20]]);
        assert!(matches!(decode_frame(&data, 4, 1, 1, &mut Vec::new()), Err(PixelError::Truncated { .. })));
        assert!(decode_frame(&data, 2, 3, 1, &mut Vec::new()).is_err());
        let mut bad = data.clone();
        bad[4..8].copy_from_slice(&9999u32.to_le_bytes());
        assert!(decode_frame(&bad, 2, 1, 1, &mut Vec::new()).is_err());
        assert!(decode_frame(&data[..10], 2, 1, 1, &mut Vec::new()).is_err());
    }
}
