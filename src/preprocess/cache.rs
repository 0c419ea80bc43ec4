//! A bytes-bounded least-recently-used cache of decoded frames, shared between threads.
//!
//! A frame is decoded once and kept with its presentation attributes, so re-rendering it with
//! another window or size costs only the LUT and the encoder. Entries larger than the whole
//! budget are not kept.

use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::decode::Pixels;
use super::lut::Presentation;

/// One decoded frame and what is needed to present it.
#[derive(Debug)]
pub struct CachedFrame {
    pub pixels: Pixels,
    pub presentation: Presentation,
}

impl CachedFrame {
    /// Approximate memory held (samples plus LUTs).
    pub fn cost(&self) -> u64 {
        let p = &self.presentation;
        let luts: usize = p.voi_luts.iter().map(|l| l.data.len() * 2).sum::<usize>()
            + p.palette.as_ref().map(|ls| ls.iter().map(|l| l.data.len() * 2).sum()).unwrap_or(0);
        (self.pixels.samples.byte_len() + luts + 256) as u64
    }
}

/// Key: (instance key, frame index from 0); the caller chooses the instance key.
type Key = (String, u32);

struct Inner {
    map: LruCache<Key, Arc<CachedFrame>>,
    used: u64,
}

/// The cache. `capacity` is in bytes; 0 keeps nothing.
pub struct FrameCache {
    capacity: u64,
    inner: Mutex<Inner>,
}

impl FrameCache {
    pub fn new(capacity: u64) -> FrameCache {
        FrameCache { capacity, inner: Mutex::new(Inner { map: LruCache::unbounded(), used: 0 }) }
    }

    pub fn get(&self, key: &str, frame: u32) -> Option<Arc<CachedFrame>> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.map.get(&(key.to_string(), frame)).cloned()
    }

    /// Inserts (or replaces) an entry, then evicts least recently used entries until the total
    /// fits the capacity.
    pub fn insert(&self, key: &str, frame: u32, value: Arc<CachedFrame>) {
        let cost = value.cost();
        if cost > self.capacity {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = g.map.put((key.to_string(), frame), value) {
            g.used -= old.cost();
        }
        g.used += cost;
        while g.used > self.capacity {
            match g.map.pop_lru() {
                Some((_, v)) => g.used -= v.cost(),
                None => break,
            }
        }
    }

    /// (entries, bytes used).
    pub fn usage(&self) -> (usize, u64) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (g.map.len(), g.used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::decode::{Photometric, Samples};
    use crate::preprocess::lut::{ModalityLut, VoiFunction};

    fn frame(n: usize) -> Arc<CachedFrame> {
        Arc::new(CachedFrame {
            pixels: Pixels {
                rows: 1,
                columns: n as u32,
                frames: 1,
                first_frame: 0,
                samples_per_pixel: 1,
                bits_allocated: 8,
                bits_stored: 8,
                signed: false,
                photometric: Photometric::Monochrome2,
                stored_photometric: "MONOCHROME2".into(),
                transfer_syntax: String::new(),
                samples: Samples::U8(vec![0; n]),
            },
            presentation: Presentation {
                modality: ModalityLut::Rescale { slope: 1.0, intercept: 0.0 },
                windows: vec![],
                function: VoiFunction::Linear,
                voi_luts: vec![],
                palette: None,
            },
        })
    }

    #[test]
    fn evicts_least_recently_used_within_the_byte_bound() {
        let c = FrameCache::new(3000);
        c.insert("a", 0, frame(1000)); // cost 1256
        c.insert("b", 0, frame(1000));
        assert!(c.get("a", 0).is_some()); // a is now the most recent
        c.insert("c", 0, frame(1000)); // 3768 > 3000: evicts b
        assert!(c.get("b", 0).is_none());
        assert!(c.get("a", 0).is_some());
        assert!(c.get("c", 0).is_some());
        let (n, used) = c.usage();
        assert_eq!((n, used), (2, 2512));
        // Too large for the whole budget: not kept, nothing evicted.
        c.insert("big", 0, frame(10_000));
        assert!(c.get("big", 0).is_none());
        assert_eq!(c.usage().0, 2);
        // Replacing an entry does not double count it.
        c.insert("a", 0, frame(1000));
        assert_eq!(c.usage(), (2, 2512));
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let c = FrameCache::new(0);
        c.insert("a", 0, frame(1));
        assert!(c.get("a", 0).is_none());
    }
}
