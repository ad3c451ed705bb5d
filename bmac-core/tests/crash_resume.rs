//! Crash tests: real processes applying real plans, SIGKILLed at random moments, resumed.
//!
//! The parent re-executes this test binary as the child (only the ignored [`crash_child`]
//! entry selected, `BMAC_CRASH_CHILD` set). The child loads state from a `LocalStore`, plans,
//! and runs the executor against a cloud that appends every side effect to a file (see
//! `crash_support::cloud`). Between runs the parent does what a user would: reads the lock a
//! killed run left behind, checks that the next run is refused while it stands, and breaks it
//! by naming its id. At the end it checks what the issue asks: every step applied with the
//! right fingerprint, no resource created twice, and a journal that replays to the same state.
//!
//! The random moments come from a seed printed at the start; `BMAC_CRASH_SEED=<n>` replays
//! the same plan and kill delays (process timing still varies, so the same seed explores
//! nearby interleavings rather than the identical one).
//!
//! Unix only: the child is killed with SIGKILL and its end read from its exit signal.
#![cfg(unix)]

mod crash_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use bmac_core::state::StateError;
use bmac_core::step::Fingerprint;
use bmac_core::{OutputValue, Planner, State, StepId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crash_support::child::{cloud_file, run_if_child, state_dir, EXIT_LOCKED};
use crash_support::cloud::Hang;
use crash_support::inspect::{
    cloud_ledger, files_containing, look, replay_by_hand, tear_journal, unlock, Look,
};
use crash_support::process::{ChildRun, Ended};
use crash_support::scenario::{expected_fingerprints, secret_of, Scenario, SECRET_PREFIX};

/// Steps in the random plan. Enough that 20 kills of at most 150 ms each mostly land
/// while work remains, at parallelism 8 and 1–20 ms per apply.
const STEPS: usize = 600;
/// SIGKILLs before the run that is allowed to finish.
const KILLS: usize = 20;
/// How long any child may take to reach a milestone or finish.
const PATIENCE: Duration = Duration::from_secs(60);

/// The child's entry point; runs only when a crash test started this binary as its child.
#[test]
#[ignore = "the child process of the crash tests; they start it with BMAC_CRASH_CHILD set"]
fn crash_child() {
    if !run_if_child() {
        println!("crash_child applies a plan only when a crash test starts it; nothing to do");
    }
}

fn seed() -> u64 {
    match std::env::var("BMAC_CRASH_SEED") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|e| panic!("BMAC_CRASH_SEED=`{text}` is not a u64: {e}")),
        Err(_) => rand::random(),
    }
}

/// What the kills did, for the assertions that the test really tested something.
#[derive(Debug, Default)]
struct Tally {
    /// Kills that landed after the executor started, before the plan was done.
    mid_run: usize,
    /// Kills after which some step was in doubt while its resource already existed: only
    /// observing (and adopting) it avoids a second create.
    left_effect_unjournaled: usize,
    /// Steps in that situation, summed over kills.
    unjournaled_effects: usize,
    /// Runs that started with in-doubt steps to resolve.
    resumed_in_doubt: usize,
    /// Locks left behind, refused, and broken by id.
    locks_broken: usize,
    /// Torn journal tails the parent wrote, each recovered by the next load.
    torn_injected: usize,
    /// Torn tails a kill left by itself (a write cut mid-line; rare, since one `write(2)`
    /// carries a whole group of records).
    torn_natural: usize,
    /// Child runs whose load reported (and dropped) a torn tail.
    torn_seen_by_child: usize,
}

impl Tally {
    fn count_torn_seen(&mut self, run: &Ended) {
        if run.field("running", "warnings").is_some_and(|n| n != "0") {
            self.torn_seen_by_child += 1;
        }
    }
}

fn applied_count(state: &State) -> usize {
    state.steps.values().filter(|s| s.applied.is_some()).count()
}

/// After a child ended: a stale lock must name it, block the next run, and break by its id.
fn break_lock_like_a_user(
    look: &Look,
    ended: &Ended,
    scenario: Scenario,
    dir: &Path,
    tally: &mut Tally,
) -> bool {
    let Some(lock) = &look.lock else {
        // Killed before taking the lock (or after releasing it), or finished by itself.
        return false;
    };
    assert!(ended.killed(), "only a killed run leaves its lock: {lock}");
    assert_eq!(lock.pid, ended.pid, "the lock names the killed child");
    // Staleness is judged from /proc; elsewhere a lock always reads as held.
    let judged = Path::new("/proc/self").exists();
    assert_eq!(
        lock.looks_stale(),
        judged,
        "the holder is gone: the lock looks stale"
    );

    let refused = ChildRun::spawn(dir, scenario, None).wait(PATIENCE);
    tally.count_torn_seen(&refused);
    assert_eq!(
        refused.status.code(),
        Some(EXIT_LOCKED),
        "a run over a stale lock is refused\n{}",
        refused.describe()
    );
    let pid = ended.pid.to_string();
    assert_eq!(
        refused.field("locked", "pid"),
        Some(pid.as_str()),
        "the error names the holder pid"
    );
    let stale = judged.to_string();
    assert_eq!(refused.field("locked", "stale"), Some(stale.as_str()));
    assert_eq!(refused.field("locked", "id"), Some(lock.id.as_str()));
    let after = look_at(dir);
    assert_eq!(
        after.loaded.state, look.loaded.state,
        "a refused run writes nothing"
    );

    let wrong = unlock(&state_dir(dir), "0000000000000000");
    match wrong.map_err(|e| *e) {
        Err(StateError::LockMismatch { current, .. }) => {
            assert_eq!(
                current.as_ref(),
                Some(lock),
                "a wrong id names the lock held"
            )
        }
        other => panic!("a wrong id must not break the lock: {other:?}"),
    }
    unlock(&state_dir(dir), &lock.id).unwrap_or_else(|e| panic!("unlock {}: {e:?}", lock.id));
    assert!(look_at(dir).lock.is_none(), "unlock removed the lock");
    true
}

fn look_at(dir: &Path) -> Look {
    look(&state_dir(dir))
}

/// Load and a fold of snapshot + records agree, and loading twice gives the same state.
fn assert_replays_to_same_state(dir: &Path, when: &str) -> State {
    let first = look_at(dir).loaded.state;
    let second = look_at(dir).loaded.state;
    assert_eq!(first, second, "{when}: loading twice gives the same state");
    let by_hand = replay_by_hand(&state_dir(dir), &first.lineage);
    assert_eq!(
        by_hand, first,
        "{when}: snapshot + records fold to the loaded state"
    );
    first
}

#[test]
fn sigkilled_applies_resume_without_creating_anything_twice() {
    let clock = Instant::now();
    let seed = seed();
    println!("crash test seed {seed} (replay with BMAC_CRASH_SEED={seed})");
    let scenario = Scenario::Dag { seed, steps: STEPS };
    let steps = scenario.steps();
    let expected = expected_fingerprints(&steps, seed);
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut tally = Tally::default();
    let mut outputs_seen = String::new();
    // An injected torn tail stays until a run writes to the journal again.
    let mut torn_pending = false;

    for kill in 0..KILLS {
        let delay = Duration::from_millis(rng.gen_range(5..=150));
        // Every fifth kill is timed from the spawn, so some land in start-up, lock, load and
        // plan; the others from the moment the executor starts.
        let from_spawn = kill % 5 == 4;
        let mut child = ChildRun::spawn(dir, scenario, None);
        if !from_spawn {
            child.wait_for("running", PATIENCE);
        }
        thread::sleep(delay);
        let ended = child.kill();
        outputs_seen.push_str(&ended.describe());
        assert!(
            ended.killed() || ended.status.success(),
            "kill {kill}: the child failed by itself\n{}",
            ended.describe()
        );

        let seen = look_at(dir);
        if !torn_pending {
            tally.torn_natural += seen.loaded.warnings.len();
        }
        torn_pending = !seen.loaded.warnings.is_empty();
        let state = &seen.loaded.state;
        let applied = applied_count(state);
        let cloud = cloud_ledger(&cloud_file(dir));
        let unjournaled = state
            .steps
            .iter()
            .filter(|(id, s)| {
                s.in_doubt && s.applied.is_none() && cloud.creates.contains_key(id.as_str())
            })
            .count();
        let mid_run = ended.killed()
            && ended.line("running").is_some()
            && ended.line("done").is_none()
            && applied < STEPS;
        tally.mid_run += usize::from(mid_run);
        tally.unjournaled_effects += unjournaled;
        tally.left_effect_unjournaled += usize::from(unjournaled > 0);
        if ended.field("running", "in_doubt").is_some_and(|n| n != "0") {
            tally.resumed_in_doubt += 1;
        }
        tally.count_torn_seen(&ended);
        assert_replays_to_same_state(dir, &format!("after kill {kill}"));

        let mut torn = false;
        if kill % 4 == 1 && tear_journal(&state_dir(dir)) {
            let after = look_at(dir);
            assert_eq!(
                after.loaded.warnings.len(),
                1,
                "the torn tail is reported: {:?}",
                after.loaded.warnings
            );
            assert_eq!(
                &after.loaded.state, state,
                "the torn tail is dropped, nothing else"
            );
            tally.torn_injected += 1;
            torn = true;
            torn_pending = true;
        }
        let broke = break_lock_like_a_user(&seen, &ended, scenario, dir, &mut tally);
        tally.locks_broken += usize::from(broke);
        println!(
            "kill {kill:2}: +{:3} ms from {:5}, {} applied {applied:3}/{STEPS}, {:2} in doubt ({unjournaled} made but unjournaled){}{}",
            delay.as_millis(),
            if from_spawn { "spawn" } else { "run" },
            if mid_run { "mid-run," } else { "idle,   " },
            state.steps.values().filter(|s| s.in_doubt).count(),
            if broke { ", lock broken" } else { "" },
            if torn { ", journal torn" } else { "" },
        );
    }

    let last = ChildRun::spawn(dir, scenario, None).wait(PATIENCE);
    outputs_seen.push_str(&last.describe());
    assert!(
        last.status.success(),
        "the final run succeeds\n{}",
        last.describe()
    );
    assert_eq!(
        last.field("done", "failed"),
        Some("0"),
        "{}",
        last.describe()
    );
    println!(
        "final run: {}; {tally:?}; {:?} in all",
        last.lines.join(" | "),
        clock.elapsed()
    );

    // Every step applied once, with the fingerprint of its config and resolved inputs.
    let final_look = look_at(dir);
    assert!(final_look.lock.is_none(), "the final run released its lock");
    // A torn tail injected after the last run that wrote stays until a run writes again (a
    // final run with nothing to do writes nothing); then it is the only warning.
    let wrote = last.field("done", "succeeded").is_some_and(|n| n != "0")
        || last.field("done", "adopted").is_some_and(|n| n != "0");
    if torn_pending && !wrote {
        assert!(
            final_look.loaded.warnings.len() == 1
                && final_look.loaded.warnings[0].contains("dropped a torn record"),
            "only the injected torn tail is left: {:?}",
            final_look.loaded.warnings
        );
    } else {
        assert!(
            final_look.loaded.warnings.is_empty(),
            "no torn tail is left: {:?}",
            final_look.loaded.warnings
        );
    }
    let state = assert_replays_to_same_state(dir, "at the end");
    assert_eq!(
        state.steps.len(),
        STEPS,
        "state holds exactly the plan's steps"
    );
    for step in &steps {
        let entry = &state.steps[&step.id];
        let applied = entry
            .applied
            .as_ref()
            .unwrap_or_else(|| panic!("`{}` was never applied", step.id));
        assert_eq!(
            applied.fingerprint, expected[&step.id],
            "`{}` fingerprint",
            step.id
        );
        assert_eq!(&*applied.step, step, "`{}` as applied", step.id);
        assert!(
            !entry.in_doubt && entry.last_error.is_none(),
            "`{}`: {entry:?}",
            step.id
        );
    }

    // The cloud saw exactly one create per step and nothing else.
    let cloud = cloud_ledger(&cloud_file(dir));
    assert!(
        cloud.others.is_empty(),
        "only creates happen: {:#?}",
        cloud.others
    );
    let twice: BTreeMap<_, _> = cloud.creates.iter().filter(|(_, c)| c.len() > 1).collect();
    assert!(twice.is_empty(), "created more than once: {twice:#?}");
    assert_eq!(cloud.creates.len(), STEPS, "every step was created");
    for step in &steps {
        let create = &cloud.creates[step.id.as_str()][0];
        assert_eq!(
            create.fingerprint,
            expected[&step.id].to_string(),
            "`{}`",
            step.id
        );
        assert_eq!(create.config, step.config, "`{}`", step.id);
    }

    // Nothing is left to do.
    let plan = Planner::new(steps.clone(), &state)
        .plan()
        .expect("the final plan");
    assert!(
        !plan.has_changes(),
        "the final plan is all no-op: {}",
        plan.summary()
    );
    assert_eq!(plan.summary().unchanged, STEPS);

    // The test exercised what it claims to.
    assert!(
        tally.mid_run >= KILLS / 2,
        "at least half the kills interrupted work: {tally:?}"
    );
    assert!(
        tally.left_effect_unjournaled >= 1,
        "some kill left a made-but-unjournaled step to adopt: {tally:?}"
    );
    assert!(
        tally.resumed_in_doubt >= 1,
        "some run resumed in-doubt steps: {tally:?}"
    );
    assert!(
        tally.locks_broken >= KILLS / 2,
        "killed runs left locks to break: {tally:?}"
    );
    assert!(
        tally.torn_injected >= 1,
        "a torn journal tail was recovered: {tally:?}"
    );
    assert!(
        tally.torn_seen_by_child >= 1,
        "a child run loaded past a torn tail: {tally:?}"
    );
    assert!(
        state_dir(dir).join("snapshot.json").exists(),
        "the journal was compacted along the way"
    );

    // The secret never reached state files or the children's output in clear.
    let vault = steps
        .iter()
        .find(|s| s.id.as_str().starts_with(SECRET_PREFIX))
        .expect("the plan has a secret step");
    let secret = secret_of(&vault.id, seed);
    assert_secret_kept(&state, &vault.id, &secret, dir);
    assert!(
        !outputs_seen.contains(&secret),
        "a child printed the secret"
    );
}

/// State keeps the secret as a digest only, and no state file holds its bytes.
fn assert_secret_kept(state: &State, vault: &StepId, secret: &str, dir: &Path) {
    let token = state.applied(vault).and_then(|a| a.outputs.get("token"));
    match token {
        Some(OutputValue::Sensitive(kept)) if kept.value().is_none() => {
            assert_eq!(
                kept.digest(),
                Fingerprint::of_value(&serde_json::json!(secret))
            );
        }
        other => panic!("`{vault}.token` in state should be a redacted secret, is {other:?}"),
    }
    let leaks = files_containing(&state_dir(dir), secret);
    assert!(leaks.is_empty(), "the secret is in clear in {leaks:?}");
}

/// Kills a child while `hang` holds it in the secret chain, checks the in-doubt state it left,
/// breaks the lock, resumes, and checks the end state; returns the resumed run.
fn kill_in_secret_chain(hang: Hang) -> Ended {
    let seed = seed();
    println!("secret crash test seed {seed}, hang {}", hang.encode());
    let scenario = Scenario::Secret { seed };
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = tmp.path();
    let mut child = ChildRun::spawn(dir, scenario, Some(&hang));
    assert!(
        child.wait_for("hanging", PATIENCE),
        "the child reaches the hang point"
    );
    let killed = child.kill();
    assert!(killed.killed(), "{}", killed.describe());

    let seen = look_at(dir);
    let id = StepId::new(&hang.step).expect("a valid id");
    let entry = &seen.loaded.state.steps[&id];
    assert!(
        entry.in_doubt && entry.applied.is_none(),
        "`{id}` is in doubt: {entry:?}"
    );
    let made = cloud_ledger(&cloud_file(dir))
        .creates
        .contains_key(id.as_str());
    assert_eq!(
        made, hang.after_effect,
        "the cloud has `{id}` iff the kill came after the effect"
    );
    let mut tally = Tally::default();
    assert!(break_lock_like_a_user(
        &seen, &killed, scenario, dir, &mut tally
    ));

    let last = ChildRun::spawn(dir, scenario, None).wait(PATIENCE);
    assert!(
        last.status.success(),
        "the resumed run succeeds\n{}",
        last.describe()
    );
    let secret = secret_of(&StepId::new("vault0001").expect("valid"), seed);
    assert!(!killed.describe().contains(&secret) && !last.describe().contains(&secret));

    let steps = scenario.steps();
    let expected = expected_fingerprints(&steps, seed);
    let state = assert_replays_to_same_state(dir, "after the resume");
    let cloud = cloud_ledger(&cloud_file(dir));
    assert!(
        cloud.others.is_empty(),
        "only creates happen: {:#?}",
        cloud.others
    );
    for step in &steps {
        assert_eq!(
            cloud.creates.get(step.id.as_str()).map(Vec::len),
            Some(1),
            "`{}` created exactly once",
            step.id
        );
        assert_eq!(
            state.applied(&step.id).map(|a| a.fingerprint),
            Some(expected[&step.id])
        );
    }
    assert_secret_kept(
        &state,
        &StepId::new("vault0001").expect("valid"),
        &secret,
        dir,
    );
    last
}

/// The final run's `done` line reports these counts.
fn assert_done(last: &Ended, counts: &[(&str, &str)]) {
    for (key, value) in counts {
        assert_eq!(
            last.field("done", key),
            Some(*value),
            "{key}: {}",
            last.describe()
        );
    }
}

#[test]
fn a_secret_step_killed_in_doubt_is_adopted_and_its_secret_still_flows() {
    let hang = Hang {
        step: "vault0001".into(),
        after_effect: true,
    };
    let last = kill_in_secret_chain(hang);
    // `network` was recorded before the kill; `vault0001` is adopted from what observe found
    // (its secret re-read there); `consumer` — whose apply checks it received the secret's
    // value — and `tail` are created.
    assert_done(
        &last,
        &[("adopted", "1"), ("succeeded", "2"), ("unchanged", "1")],
    );
}

#[test]
fn a_consumer_killed_before_its_effect_gets_the_secret_reread_on_resume() {
    let hang = Hang {
        step: "consumer".into(),
        after_effect: false,
    };
    let last = kill_in_secret_chain(hang);
    // `vault0001` was applied and journaled (secret redacted) before the kill: on resume it is
    // a no-op whose secret must be observed again for `consumer`, which is created now.
    assert_done(&last, &[("adopted", "0"), ("succeeded", "2")]);
}
