//! Unit tests of the trace format: damaged records, damaged headers, the recording cap.

use super::*;
use malcolm_proto::bridge::{Direction, TraceHeader};

fn write(records: &[&[u8]]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.trace");
    let mut w = TraceWriter::create(
        &p,
        &TraceHeader {
            policy: "p".into(),
            ..Default::default()
        },
        0,
    )
    .unwrap();
    for (i, r) in records.iter().enumerate() {
        assert!(w
            .write_raw(i as u64, 0, Direction::EnvToAgent, r, 0)
            .unwrap());
    }
    w.finish().unwrap();
    std::fs::read(&p).unwrap()
}

fn read(bytes: Vec<u8>) -> (Vec<Vec<u8>>, Vec<String>) {
    let r = TraceReader::from_reader(Box::new(std::io::Cursor::new(bytes))).unwrap();
    let (mut ok, mut bad) = (Vec::new(), Vec::new());
    for rec in r {
        match rec {
            Ok(rec) => ok.push(rec.envelope),
            Err(e) => bad.push(e.to_string()),
        }
    }
    (ok, bad)
}

#[test]
fn a_flipped_bit_loses_one_record_and_the_rest_reads() {
    let recs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
    let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
    let clean = write(&refs);
    assert_eq!(read(clean.clone()).0, recs);
    // Frame starts: the header's, then one per record.
    let frames: Vec<usize> = clean
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == FRAME_MARKER)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(frames.len(), 6);
    // A bit inside the third record's payload.
    let mut flipped = clean.clone();
    flipped[frames[3] + FRAME_HEAD + 40] ^= 0x10;
    let (ok, bad) = read(flipped);
    assert_eq!(
        ok,
        vec![
            recs[0].clone(),
            recs[1].clone(),
            recs[3].clone(),
            recs[4].clone()
        ]
    );
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].contains("checksum mismatch"), "{bad:?}");
    // Garbage inserted between records: skipped up to the next marker.
    let cut = frames[2];
    let mut spliced = clean[..cut].to_vec();
    spliced.extend_from_slice(&[0xAB; 77]);
    spliced.extend_from_slice(&clean[cut..]);
    let (ok, bad) = read(spliced);
    assert_eq!(ok, recs);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].contains("77 bytes skipped"), "{bad:?}");
    // A torn last record: the others stay, the end says truncated.
    let (ok, bad) = read(clean[..clean.len() - 10].to_vec());
    assert_eq!(ok.len(), 4);
    assert_eq!(bad.len(), 1);
    assert!(bad[0].contains("truncated"), "{bad:?}");
}

#[test]
fn a_damaged_header_says_so() {
    let mut bytes = write(&[b"x"]);
    bytes[8 + FRAME_HEAD] ^= 1;
    let e = TraceReader::from_reader(Box::new(std::io::Cursor::new(bytes)))
        .err()
        .unwrap();
    assert!(matches!(e, TraceError::BadHeader { .. }), "{e}");
}

#[test]
fn the_size_limit_stops_recording() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cap.trace");
    let mut w = TraceWriter::create(&p, &TraceHeader::default(), 1_000).unwrap();
    let mut written = 0;
    for i in 0..20 {
        written += w
            .write_raw(i, 0, Direction::EnvToAgent, &[7; 100], 0)
            .unwrap() as u64;
    }
    let stats = w.finish().unwrap();
    assert_eq!((stats.records, stats.dropped), (written, 20 - written));
    assert!(stats.bytes <= 1_000 && written >= 7, "{stats:?}");
    assert_eq!(std::fs::metadata(&p).unwrap().len(), stats.bytes);
}
