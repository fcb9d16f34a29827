//! Caption text of any bytes: the mention reader and the item extractor must not panic, must return boxes in
//! [0, 1], and must stay linear (libFuzzer's -timeout catches super-linear inputs).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pancap::score::{reader, Content};

fuzz_target!(|data: &[u8]| {
    let (size, text) = match data.split_first_chunk::<4>() {
        Some((s, rest)) => {
            let w = u32::from(u16::from_le_bytes([s[0], s[1]])).max(1);
            let h = u32::from(u16::from_le_bytes([s[2], s[3]])).max(1);
            (Some((w, h)), String::from_utf8_lossy(rest))
        }
        None => (None, String::from_utf8_lossy(data)),
    };
    for m in reader::extract(&text, size) {
        assert!(m.bbox.iter().all(|v| (0.0..=1.0).contains(v)), "{:?}", m.bbox);
    }
    let c = Content::from_text(&text, size);
    for a in &c.attributes {
        assert!(a.entity < c.entities.len());
    }
    for r in &c.relations {
        assert!(r.subject < c.entities.len() && r.object < c.entities.len());
    }
});
