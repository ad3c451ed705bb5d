//! Records and helpers shared by the state store tests.
#![allow(dead_code)]

use std::path::Path;

use bmac_core::state::{Operation, Record, RecordKind, State};
use bmac_core::step::Fingerprint;
use bmac_core::{Kind, Outputs, Step, StepId};
use serde_json::json;

pub fn id(name: &str) -> StepId {
    StepId::new(name).unwrap()
}

pub fn intent(name: &str) -> Record {
    Record {
        id: id(name),
        kind: RecordKind::Intent {
            op: Operation::Apply,
            fingerprint: Some(Fingerprint([1; 32])),
        },
    }
}

pub fn applied(name: &str, n: u64) -> Record {
    Record {
        id: id(name),
        kind: RecordKind::Applied {
            step: std::sync::Arc::new(
                Step::new(id(name), Kind::new("node_pool"), &json!({"size": n})).unwrap(),
            ),
            fingerprint: Fingerprint([n as u8; 32]),
            outputs: Outputs::new().with("endpoint", format!("https://{name}.example/{n}")),
        },
    }
}

pub fn failed(name: &str) -> Record {
    Record {
        id: id(name),
        kind: RecordKind::Failed {
            error: format!("{name}: quota exceeded\nsecond line"),
        },
    }
}

pub fn destroyed(name: &str) -> Record {
    Record {
        id: id(name),
        kind: RecordKind::Destroyed,
    }
}

/// A mixed history: every step gets an intent and a result, some fail, one is destroyed.
pub fn history(steps: usize) -> Vec<Record> {
    let mut out = Vec::new();
    for i in 0..steps {
        let name = format!("step-{i}");
        out.push(intent(&name));
        match i % 4 {
            0 | 1 => out.push(applied(&name, i as u64)),
            2 => out.push(failed(&name)),
            _ => {
                out.push(applied(&name, i as u64));
                out.push(destroyed(&name));
            }
        }
    }
    out
}

/// The state the records fold into, with the lineage the store reported.
pub fn fold(records: &[Record], lineage: &str) -> State {
    let mut state = State {
        lineage: lineage.to_owned(),
        ..State::default()
    };
    for r in records {
        state.apply(r);
    }
    state
}

pub fn journal(dir: &Path) -> std::path::PathBuf {
    dir.join("journal.log")
}

/// The journal's lines, newline included.
pub fn lines(dir: &Path) -> Vec<Vec<u8>> {
    std::fs::read(journal(dir))
        .unwrap()
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

pub fn write_lines(dir: &Path, lines: &[Vec<u8>]) {
    std::fs::write(journal(dir), lines.concat()).unwrap();
}
