//! The shared golden vectors in proto/testdata/, read the same way the C++ tests read them.

use malcolm_proto::heartbeat::{load_factor_from_rho, rho_of_tasks, Heartbeat, HEARTBEAT_LEN};
use malcolm_proto::{bucket_of, testdata_dir, SlackHistogram};

fn rows(file: &str) -> Vec<csv::StringRecord> {
    let path = testdata_dir().join(file);
    let mut r = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows: Vec<_> = r.records().map(|x| x.unwrap()).collect();
    assert!(rows.len() >= 9, "{file} has too few vectors");
    rows
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn slack_to_bucket_vectors() {
    for row in rows("sth_buckets.csv") {
        let slack: i64 = row[0].parse().unwrap();
        let want: usize = row[1].parse().unwrap();
        assert_eq!(bucket_of(slack), want, "slack {slack}");
    }
}

#[test]
fn heartbeat_vectors_encode_and_decode() {
    for row in rows("heartbeat_vectors.csv") {
        let p = |i: usize| row[i].to_string();
        let rho: f64 = p(2).parse().unwrap();
        let hb = Heartbeat::from_values(
            p(0).parse().unwrap(),
            p(1).parse().unwrap(),
            load_factor_from_rho(rho) as u64,
            p(3).parse().unwrap(),
            p(4).parse().unwrap(),
            p(5).parse().unwrap(),
            p(6).parse().unwrap(),
        );
        let bytes = hb.encode();
        assert_eq!(bytes.len(), HEARTBEAT_LEN);
        assert_eq!(hex(&bytes), row[7], "row {row:?}");
        assert_eq!(Heartbeat::decode(&bytes).unwrap(), hb);
    }
}

#[test]
fn sth_percentile_vectors() {
    for row in rows("sth_percentiles.csv") {
        let slacks: Vec<i64> = row[0]
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let mut h = SlackHistogram::new();
        for &s in &slacks {
            h.add(s, 1);
        }
        assert_eq!(h.total_tasks as usize, slacks.len());
        assert_eq!(h.total_tasks.to_string(), &row[1]);
        assert_eq!(h.min_slack_or_zero().to_string(), &row[2]);
        if !row[3].is_empty() {
            assert_eq!(
                h.percentile_us(10).to_string(),
                &row[3],
                "p10 of {slacks:?}"
            );
            assert_eq!(
                h.percentile_us(50).to_string(),
                &row[4],
                "p50 of {slacks:?}"
            );
        }
        assert_eq!(h.panic() as u8 as i32, row[5].parse::<i32>().unwrap());
        let hb = Heartbeat::from_sth(0, &h, 0.0, false, 0);
        assert_eq!(hb.slack_p10_us.to_string(), &row[6]);
        assert_eq!(hb.slack_p50_us.to_string(), &row[7]);
        assert_eq!(hb.panic(), h.panic());
    }
}

#[test]
fn heartbeat_load_is_tasks_in_system_per_core() {
    for row in rows("heartbeat_load.csv") {
        let tasks: u64 = row[0].parse().unwrap();
        let cores: u32 = row[1].parse().unwrap();
        let want: u16 = row[2].parse().unwrap();
        assert_eq!(
            load_factor_from_rho(rho_of_tasks(tasks, cores)),
            want,
            "{tasks} tasks on {cores} cores"
        );
    }
}
