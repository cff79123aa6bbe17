//! Single-process behaviour must not depend on the strategy: random sequences of operations
//! run on all nine presets at once (each in its own directory, one shared manual clock) and
//! are checked after every step against a small reference model: the same selection result,
//! the same entry ids (in order), labels, priorities and statuses in each snapshot and on disk.
//!
//! Cases: `POOLCORE_SM_CASES` (default 128) sequences of up to `POOLCORE_SM_STEPS` (default 30)
//! steps; every case runs all nine presets.

mod common;

use std::collections::HashMap;

use common::*;
use pool_core::pool::Selection;
use pool_core::store::{Entry, Status, Store};
use pool_core::PRESETS;
use proptest::prelude::*;
use proptest::test_runner::Config as PtConfig;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const COOLDOWN: u64 = 3_600_000;

#[derive(Clone, Debug, PartialEq)]
struct REntry {
    label: String,
    priority: i64,
    status: Option<Status>,
    status_at: Option<u64>,
    reset_at: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Selected(Option<String>),
    Removed(bool),
    Unit,
    UnknownEntry,
}

#[derive(Clone, Debug)]
struct Model {
    selection: Selection,
    now: u64,
    entries: Vec<REntry>,
    next_label: u32,
    last: Option<Outcome>,
}

#[derive(Clone, Debug)]
enum Op {
    Add,
    Remove(String),
    Mark {
        label: String,
        reset_in: Option<u64>,
    },
    Select,
    Reset,
    Advance(u64),
    Load,
}

fn label_strategy(m: &Model) -> BoxedStrategy<String> {
    let mut labels: Vec<String> = m.entries.iter().map(|e| e.label.clone()).collect();
    labels.push("ghost".into()); // never added: exercises the not-found paths
    proptest::sample::select(labels).boxed()
}

impl Model {
    fn select(&mut self) -> Option<String> {
        let now = self.now;
        let mut usable = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.status == Some(Status::Dead) {
                continue;
            }
            if e.status == Some(Status::Exhausted) {
                let until = e.reset_at.or(e.status_at.map(|t| t + COOLDOWN));
                if let Some(until) = until {
                    if until > now {
                        continue;
                    }
                    e.status = None;
                    e.status_at = None;
                    e.reset_at = None;
                }
            }
            usable.push(i);
        }
        let idx = usable
            .iter()
            .copied()
            .min_by_key(|&i| self.entries[i].priority)?;
        let label = self.entries[idx].label.clone();
        if self.selection == Selection::RoundRobin {
            let e = self.entries.remove(idx);
            self.entries.sort_by_key(|e| e.priority);
            self.entries.push(e);
            for (i, e) in self.entries.iter_mut().enumerate() {
                e.priority = i as i64;
            }
        }
        Some(label)
    }
}

impl ReferenceStateMachine for Model {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        prop_oneof![Just(Selection::FillFirst), Just(Selection::RoundRobin)]
            .prop_map(|selection| Model {
                selection,
                now: T0,
                entries: Vec::new(),
                next_label: 0,
                last: None,
            })
            .boxed()
    }

    fn transitions(m: &Model) -> BoxedStrategy<Op> {
        prop_oneof![
            3 => Just(Op::Add),
            1 => label_strategy(m).prop_map(Op::Remove),
            3 => (label_strategy(m), proptest::option::of(prop_oneof![Just(1_000u64), Just(10 * COOLDOWN)]))
                .prop_map(|(label, reset_in)| Op::Mark { label, reset_in }),
            4 => Just(Op::Select),
            1 => Just(Op::Reset),
            2 => prop_oneof![Just(500u64), Just(COOLDOWN + 1)].prop_map(Op::Advance),
            1 => Just(Op::Load),
        ]
        .boxed()
    }

    fn apply(mut m: Model, op: &Op) -> Model {
        m.last = Some(match op {
            Op::Add => {
                let label = format!("k{}", m.next_label);
                m.next_label += 1;
                let priority = m.entries.iter().map(|e| e.priority + 1).max().unwrap_or(0);
                m.entries.push(REntry {
                    label,
                    priority,
                    status: None,
                    status_at: None,
                    reset_at: None,
                });
                Outcome::Unit
            }
            Op::Remove(label) => {
                let before = m.entries.len();
                m.entries.retain(|e| &e.label != label);
                Outcome::Removed(m.entries.len() != before)
            }
            Op::Mark { label, reset_in } => {
                let now = m.now;
                match m.entries.iter_mut().find(|e| &e.label == label) {
                    None => Outcome::UnknownEntry,
                    Some(e) => {
                        e.status = Some(Status::Exhausted);
                        e.status_at = Some(now);
                        e.reset_at = reset_in.map(|d| now + d);
                        Outcome::Selected(m.select())
                    }
                }
            }
            Op::Select => Outcome::Selected(m.select()),
            Op::Reset => {
                for e in &mut m.entries {
                    e.status = None;
                    e.status_at = None;
                    e.reset_at = None;
                }
                Outcome::Unit
            }
            Op::Advance(ms) => {
                m.now += ms;
                Outcome::Unit
            }
            Op::Load => Outcome::Unit,
        });
        m
    }
}

struct One {
    name: &'static str,
    _dir: tempfile::TempDir,
    p: Proc,
    /// label -> id, as this pool assigned them.
    ids: HashMap<String, String>,
}

struct Sut {
    clock: ManualClock,
    pools: Vec<One>,
}

struct PoolMachine;

fn view(entries: &[Entry], ids: &HashMap<String, String>) -> Vec<REntry> {
    entries
        .iter()
        .map(|e| {
            assert_eq!(
                ids.get(&e.label),
                Some(&e.id),
                "label {} has an unexpected id",
                e.label
            );
            REntry {
                label: e.label.clone(),
                priority: e.priority,
                status: e.last_status,
                status_at: e.last_status_at,
                reset_at: e.last_error_reset_at,
            }
        })
        .collect()
}

impl StateMachineTest for PoolMachine {
    type SystemUnderTest = Sut;
    type Reference = Model;

    fn init_test(m: &Model) -> Sut {
        let clock = ManualClock::new(m.now);
        let issuer = FakeIssuer::new();
        let pools = PRESETS
            .iter()
            .map(|preset| {
                let dir = tempdir();
                // Start from a valid empty store (the data-file locks cannot create one).
                let store = dir.path().join("auth.json");
                std::fs::write(&store, Store::default().to_bytes()).unwrap();
                let cfg = selection_config(dir.path(), preset.name, m.selection, 1);
                let p = proc_with(cfg, &issuer, &clock);
                p.pool.load_pool().unwrap();
                One {
                    name: preset.name,
                    _dir: dir,
                    p,
                    ids: HashMap::new(),
                }
            })
            .collect();
        Sut { clock, pools }
    }

    fn apply(mut sut: Sut, m: &Model, op: Op) -> Sut {
        if let Op::Advance(ms) = op {
            sut.clock.advance(ms);
        }
        for one in &mut sut.pools {
            let pool = &one.p.pool;
            let id_of = |label: &str| {
                one.ids
                    .get(label)
                    .cloned()
                    .unwrap_or_else(|| "zzzzzz".into())
            };
            let label_of = |ids: &HashMap<String, String>, id: &str| {
                ids.iter()
                    .find(|(_, v)| v.as_str() == id)
                    .map(|(k, _)| k.clone())
            };
            let got = match &op {
                Op::Add => {
                    let label = format!("k{}", m.next_label - 1);
                    let id = pool.add_entry(api_key(&label)).unwrap();
                    one.ids.insert(label, id);
                    Outcome::Unit
                }
                Op::Remove(label) => Outcome::Removed(pool.remove(&id_of(label)).unwrap()),
                Op::Mark { label, reset_in } => {
                    let reset = reset_in.map(|d| m.now + d);
                    match pool.mark_exhausted_and_rotate(&id_of(label), 429, "rate_limited", reset)
                    {
                        Ok(sel) => {
                            Outcome::Selected(sel.map(|s| label_of(&one.ids, &s.id).unwrap()))
                        }
                        Err(pool_core::PoolError::UnknownEntry(_)) => Outcome::UnknownEntry,
                        Err(e) => panic!("{}: {e}", one.name),
                    }
                }
                Op::Select => Outcome::Selected(
                    pool.select()
                        .unwrap()
                        .map(|s| label_of(&one.ids, &s.id).unwrap()),
                ),
                Op::Reset => {
                    pool.reset_statuses().unwrap();
                    Outcome::Unit
                }
                Op::Advance(_) => Outcome::Unit,
                Op::Load => {
                    pool.load_pool().unwrap();
                    Outcome::Unit
                }
            };
            assert_eq!(
                Some(&got),
                m.last.as_ref(),
                "{}: result of {op:?}",
                one.name
            );
        }
        sut
    }

    fn check_invariants(sut: &Sut, m: &Model) {
        let mut first_ids: Option<Vec<String>> = None;
        for one in &sut.pools {
            let mem = mem_entries(&one.p.pool);
            assert_eq!(view(&mem, &one.ids), m.entries, "{}: snapshot", one.name);
            let cfg = one.p.pool.config();
            let disk = read_store(&cfg.store_path).entries(&cfg.provider).to_vec();
            assert_eq!(view(&disk, &one.ids), m.entries, "{}: on disk", one.name);
            // Same seed, same operations: the same ids in every preset.
            let these = ids(&mem);
            match &first_ids {
                None => first_ids = Some(these),
                Some(f) => assert_eq!(
                    f, &these,
                    "{}: ids differ from {}",
                    one.name, PRESETS[0].name
                ),
            }
        }
    }
}

fn env_or(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

prop_state_machine! {
    #![proptest_config(PtConfig {
        cases: env_or("POOLCORE_SM_CASES", 128),
        max_shrink_iters: 2048,
        failure_persistence: None,
        .. PtConfig::default()
    })]

    #[test]
    fn every_preset_agrees_with_the_model(sequential 1..(env_or("POOLCORE_SM_STEPS", 30) as usize) => PoolMachine);
}
