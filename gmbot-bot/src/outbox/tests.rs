//! Unit tests of the outbox's scheduling: round-robin across groups, order per member,
//! priorities inside a group, bulk deletes, the bound.

use super::*;

const CAP: usize = 4;

fn mute(user: i64, row: i64) -> ModJob {
    ModJob {
        user: UserId(user),
        row: RestrictionId(row),
        kind: ModKind::Mute {
            until: None,
            pending: true,
        },
        attempt: 0,
    }
}

fn deletion(message: i64) -> Deletion {
    Deletion {
        message: MessageId(message),
        attempt: 0,
    }
}

fn state_with(groups: &[(GroupId, usize)]) -> State {
    let mut s = State::default();
    for &(g, n) in groups {
        for i in 0..n {
            let q = s.groups.entry(g).or_default();
            let user = g.get().abs() * 100_000 + i as i64;
            q.mods.push_back(mute(user, user));
            s.jobs += 1;
            s.ring_push(g, CAP);
        }
    }
    s
}

fn finish(s: &mut State, group: GroupId, user: Option<UserId>) {
    s.in_flight -= 1;
    let q = s.groups.get_mut(&group).expect("group");
    q.in_flight -= 1;
    if let Some(u) = user {
        q.busy.remove(&u);
    }
    s.ring_push(group, CAP);
}

#[test]
fn a_backlog_delays_another_groups_first_action_by_one_round_at_most() {
    let (a, b, c) = (GroupId(-1), GroupId(-2), GroupId(-3));
    let mut s = state_with(&[(a, 2_000)]);
    // A has been going for a while when B and C get their first action.
    for _ in 0..3 {
        let (g, t) = s.next_task(CAP).expect("task");
        assert_eq!(g, a);
        finish(&mut s, g, t.user());
    }
    for g in [b, c] {
        let q = s.groups.entry(g).or_default();
        q.mods.push_back(mute(g.get().abs(), 1));
        s.jobs += 1;
        s.ring_push(g, CAP);
    }
    let mut order = Vec::new();
    for _ in 0..4 {
        let (g, t) = s.next_task(CAP).expect("task");
        order.push(g);
        finish(&mut s, g, t.user());
    }
    assert_eq!(
        order,
        vec![a, b, c, a],
        "one round: A, then B and C, then A again"
    );
    assert_eq!(s.jobs, 2_000 - 3 - 2);
}

#[test]
fn a_group_has_at_most_cap_tasks_in_flight() {
    let a = GroupId(-1);
    let b = GroupId(-2);
    let mut s = state_with(&[(a, 100), (b, 1)]);
    let mut taken = Vec::new();
    while let Some((g, _)) = s.next_task(CAP) {
        taken.push(g);
    }
    assert_eq!(taken.iter().filter(|&&g| g == a).count(), CAP);
    assert_eq!(taken.iter().filter(|&&g| g == b).count(), 1);
}

#[test]
fn one_member_never_has_two_tasks_at_once_and_a_lift_cancels_the_queued_mute() {
    let a = GroupId(-1);
    let mut s = State::default();
    let u = UserId(7);
    {
        let q = s.groups.entry(a).or_default();
        q.mods.push_back(mute(7, 1));
        q.mods.push_back(mute(8, 2));
        s.jobs += 2;
    }
    s.ring_push(a, CAP);
    let (_, first) = s.next_task(CAP).expect("mute of 7");
    assert_eq!(first.user(), Some(u));
    // 7 joins while their mute is in flight: the lift waits; 8's mute may go.
    {
        let q = s.groups.get_mut(&a).expect("group");
        q.lifts.push_back(LiftJob {
            user: u,
            reason: LiftReason::Joined,
            lane: Lane::Interactive,
            done: None,
        });
        s.jobs += 1;
    }
    s.ring_push(a, CAP);
    let (_, second) = s.next_task(CAP).expect("mute of 8");
    assert_eq!(second.user(), Some(UserId(8)));
    assert!(s.next_task(CAP).is_none(), "the lift waits for 7's mute");
    finish(&mut s, a, Some(u));
    let (_, third) = s.next_task(CAP).expect("the lift");
    assert!(matches!(third, Task::Lift(ref j) if j.user == u));
}

#[test]
fn lifts_go_first_then_the_gate_then_deletions_in_batches_of_100_then_mutes_then_the_warning() {
    use crate::flows::gate::{GateJob, GateKind};
    let a = GroupId(-1);
    let mut s = State::default();
    {
        let q = s.groups.entry(a).or_default();
        for i in 0..250 {
            q.deletes.push_back(deletion(i));
        }
        q.mods.push_back(mute(1, 1));
        q.gates
            .push_back(GateJob::new(UserId(3), GateKind::Approve { query: None }));
        q.lifts.push_back(LiftJob {
            user: UserId(2),
            reason: LiftReason::Joined,
            lane: Lane::Interactive,
            done: None,
        });
        s.jobs += 253;
    }
    s.ring_push(a, 10);
    let mut kinds = Vec::new();
    while let Some((_, t)) = s.next_task(10) {
        kinds.push(match t {
            Task::Lift(_) => "lift".to_owned(),
            Task::Gate(_) => "gate".to_owned(),
            Task::Delete(ids) => format!("delete{}", ids.len()),
            Task::Mod(_) => "mute".to_owned(),
            Task::Warn(_) => "warn".to_owned(),
        });
    }
    assert_eq!(
        kinds,
        vec!["lift", "gate", "delete100", "delete100", "delete50", "mute"]
    );
    assert_eq!(s.jobs, 0);
}

#[test]
fn the_bound_sheds_deletions_and_mutes_but_never_lifts() {
    let outbox = Outbox::new(OutboxConfig {
        workers: 1,
        per_group_in_flight: 1,
        max_jobs: 3,
        ..OutboxConfig::default()
    });
    let g = GroupId(-1);
    let accepted = (0..5)
        .filter(|&i| outbox.admit(g, |q| q.deletes.push_back(deletion(i))))
        .count();
    assert_eq!(accepted, 3);
    assert!(
        !outbox.admit(g, |q| q.mods.push_back(mute(1, 1))),
        "mutes too"
    );
    let _rx = outbox.lift(g, UserId(9), LiftReason::Joined, Lane::Interactive);
    assert_eq!(outbox.depth().queued, 4, "the lift is taken over the bound");
    let _rx = outbox.lift(g, UserId(1), LiftReason::Joined, Lane::Interactive);
    assert_eq!(outbox.depth().queued, 5);
}

#[test]
fn retries_wait_twice_as_long_each_time_up_to_a_minute() {
    let config = OutboxConfig {
        retry_first: Duration::from_secs(2),
        ..OutboxConfig::default()
    };
    let waits: Vec<u64> = (1..=8).map(|a| config.retry_delay(a).as_secs()).collect();
    assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(config.retry_delay(u32::MAX), RETRY_MAX, "no overflow");
}
