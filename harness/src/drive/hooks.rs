//! What a forked worker does at pause points (sleep, jitter, rendezvous, per the scenario's
//! rules) and with the pool's events (append them to its log).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pool_core::real::Hooks;
use pool_core::world::{Event, OpKind, Pause};

use super::log::EventLog;
use super::rendezvous::Coordination;
use crate::history::Ev;
use crate::scenario::PauseRule;

/// One pause rule, resolved for this process.
pub struct Rule {
    pub point: Pause,
    pub op: Option<OpKind>,
    pub rule: PauseRule,
    /// Barrier index and party count, for rendezvous rules.
    pub barrier: Option<(usize, u32)>,
}

/// The nemesis's part for this process: where it may kill, and how likely at each arrival.
pub struct KillSpec {
    pub points: Vec<Pause>,
    pub probability: f64,
}

pub struct WorkerHooks<'a> {
    log: &'a EventLog,
    coord: &'a Coordination,
    rules: Vec<Rule>,
    kill: Option<KillSpec>,
    state: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Arrivals that matched each rule, by rule index.
    arrivals: Vec<u32>,
    /// The operation this process began last (workers run their pool on one thread).
    op: Option<OpKind>,
    generations: HashMap<usize, u32>,
    rng: u64,
}

impl<'a> WorkerHooks<'a> {
    pub fn new(
        log: &'a EventLog,
        coord: &'a Coordination,
        rules: Vec<Rule>,
        kill: Option<KillSpec>,
        seed: u64,
    ) -> Self {
        WorkerHooks {
            log,
            coord,
            kill,
            state: Mutex::new(Counters {
                arrivals: vec![0; rules.len()],
                rng: seed | 1,
                ..Counters::default()
            }),
            rules,
        }
    }

    pub fn log(&self) -> &EventLog {
        self.log
    }

    /// The pause points this process acts on (a rule for its role, or a nemesis kill point),
    /// in [`Pause::ALL`] order; at every other point [`Hooks::pause`] does nothing.
    pub fn points(&self) -> Vec<Pause> {
        let kill = self.kill.as_ref().map_or(&[][..], |k| &k.points[..]);
        Pause::ALL
            .iter()
            .copied()
            .filter(|p| self.rules.iter().any(|r| r.point == *p) || kill.contains(p))
            .collect()
    }

    fn next_rand(&self) -> u64 {
        let mut st = self.state.lock().expect("hooks");
        st.rng ^= st.rng << 13;
        st.rng ^= st.rng >> 7;
        st.rng ^= st.rng << 17;
        st.rng
    }

    /// The nemesis: maybe SIGKILL this process here (after logging why).
    fn maybe_die(&self, point: Pause) {
        let Some(k) = &self.kill else { return };
        if !k.points.contains(&point) {
            return;
        }
        let draw = (self.next_rand() >> 11) as f64 / (1u64 << 53) as f64;
        if draw < k.probability {
            self.log.push(Ev::Killed {
                point: point.name().to_string(),
            });
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

impl Hooks for WorkerHooks<'_> {
    fn pause(&self, point: Pause) {
        self.maybe_die(point);
        for (i, r) in self.rules.iter().enumerate() {
            let n = {
                let mut st = self.state.lock().expect("hooks");
                if r.point != point || r.op.is_some_and(|op| st.op != Some(op)) {
                    continue;
                }
                st.arrivals[i] += 1;
                st.arrivals[i]
            };
            let p = &r.rule;
            if n <= p.skip || (p.times > 0 && n > p.skip + p.times) {
                continue;
            }
            match p.action.as_str() {
                "sleep" => std::thread::sleep(Duration::from_millis(p.ms)),
                "jitter" => {
                    let ms = self.next_rand() % (p.ms + 1);
                    std::thread::sleep(Duration::from_millis(ms));
                }
                _ => {
                    let (b, parties) = r.barrier.expect("rendezvous rules carry a barrier");
                    let generation = {
                        let mut st = self.state.lock().expect("hooks");
                        let g = st.generations.entry(b).or_insert(0);
                        *g += 1;
                        *g
                    };
                    self.coord.rendezvous(
                        b,
                        generation,
                        parties,
                        Duration::from_millis(p.timeout_ms),
                    );
                    std::thread::sleep(Duration::from_millis(p.ms));
                }
            }
        }
    }

    fn waiting(&self, path: &std::path::Path, holder: Option<u32>) {
        self.log.push(Ev::LockWait {
            path: path.display().to_string(),
            holder,
        });
    }

    fn record(&self, event: Event) {
        if let Event::OpBegin { kind, .. } = event {
            self.state.lock().expect("hooks").op = Some(kind);
        }
        self.log.push(Ev::Pool { event });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_points_a_process_acts_on_are_its_rules_and_kill_points() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::create(&dir.path().join("p1.jsonl"), 1).unwrap();
        let coord = Coordination::new(0).unwrap();
        let rule: PauseRule =
            toml::from_str("point = \"after_load\"\naction = \"sleep\"\nms = 1\n").unwrap();
        let rules = vec![Rule {
            point: Pause::AfterLoad,
            op: None,
            rule,
            barrier: None,
        }];
        let kill = KillSpec {
            points: vec![Pause::MidWrite],
            probability: 0.0,
        };
        let hooks = WorkerHooks::new(&log, &coord, rules, Some(kill), 1);
        assert_eq!(hooks.points(), vec![Pause::AfterLoad, Pause::MidWrite]);
        let none = WorkerHooks::new(&log, &coord, Vec::new(), None, 1);
        assert!(none.points().is_empty());
    }
}
