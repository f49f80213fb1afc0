"""The soak's invariants (support/soak_checks.py) catch what they are meant to: each check on a
small recorded history that breaks it, and on one that does not."""

from __future__ import annotations

from support.soak_checks import (
    Read,
    Run,
    concurrent_runs,
    killed_before_announcing,
    logged_moves,
    lost_messages,
    move_problems,
    parse_runs,
    rss_growth,
    tag_regressions,
    work_after_channel_loss,
)

ALL = frozenset({"x86_64", "aarch64", "ppc64le", "s390x"})
OLD, NEW = "Fedora-41-20241101.0", "Fedora-41-20241102.0"


def log(*lines: tuple[float, str]) -> str:
    return "".join(f"{at:.6f} INFO some.logger: {text}\n" for at, text in lines)


def consuming(message_id: str) -> str:
    return (
        f"Consuming message from topic org.x.pungi.compose.status.change (message id {message_id})"
    )


def consumed(message_id: str) -> str:
    return (
        "Successfully consumed message from topic org.x.pungi.compose.status.change "
        f"(message id {message_id})"
    )


def test_an_index_that_loses_an_arch_or_moves_back_is_reported():
    fine = [Read(1, "fedora", "41", OLD, ALL), Read(2, "fedora", "41", NEW, ALL)]
    assert tag_regressions(fine) == []
    lost = [*fine, Read(3, "fedora", "41", NEW, ALL - {"s390x"})]
    assert tag_regressions(lost) == [
        "fedora:41 lost ['s390x'] (Fedora-41-20241102.0 -> Fedora-41-20241102.0) at 3.000"
    ]
    back = [*fine, Read(3, "fedora", "41", OLD, ALL)]
    assert tag_regressions(back) == [
        "fedora:41 moved back Fedora-41-20241102.0 -> Fedora-41-20241101.0 at 3.000"
    ]
    # Another tag's reads are not compared with this one's.
    assert tag_regressions([*fine, Read(3, "fedora", "42", OLD, ALL - {"s390x"})]) == []


def test_runs_come_from_the_timed_log_and_end_at_the_answer_the_kill_or_a_lost_channel():
    text = log(
        (1.0, consuming("m1")),
        (1.1, f"compose {OLD}: publishing FINISHED from http://x"),
        (2.0, consumed("m1")),
        (3.0, consuming("m2")),
        (3.1, f"compose {NEW}: publishing FINISHED from http://x"),
        (4.0, "connection_lost: ConnectionLost()"),
        (5.0, consuming("m3")),
    )
    runs = parse_runs("r1.1", text, ended_at=9.0)
    assert [(r.message_id, r.compose, r.start, r.end) for r in runs] == [
        ("m1", OLD, 1.0, 2.0),
        ("m2", NEW, 3.0, 4.0),
        ("m3", None, 5.0, 9.0),
    ]


def test_two_runs_at_once_are_reported():
    one = parse_runs(
        "r1.1", log((1, consuming("m1")), (1.1, f"compose {OLD}: publishing x")), ended_at=5
    )
    other = parse_runs(
        "r2.1",
        log((4, consuming("m1")), (4.1, f"compose {OLD}: publishing x"), (6, consumed("m1"))),
        ended_at=9,
    )
    later = parse_runs(
        "r2.1", log((5, consuming("m1")), (5.1, f"compose {OLD}: publishing x")), ended_at=9
    )
    assert concurrent_runs(one + later, same_compose=True) == []
    (problem,) = concurrent_runs(one + other, same_compose=True)
    assert problem.startswith(f"r1.1 ran {OLD} 1.000-5.000 while r2.1 ran {OLD} 4.000-6.000")
    different = parse_runs(
        "r2.1", log((4, consuming("m2")), (4.1, f"compose {NEW}: publishing x")), ended_at=9
    )
    assert concurrent_runs(one + different, same_compose=True) == []
    assert len(concurrent_runs(one + different, same_compose=False)) == 1


def test_a_run_that_goes_on_after_its_channel_is_lost_is_reported():
    before = [
        (1.0, consuming("m1")),
        (1.1, f"compose {OLD}: publishing FINISHED from http://x"),
        (1.5, f"compose {OLD}: [3/9] gate: published r/fedora:41, verdict publish"),
        (2.0, "Disconnect requested, but AMQP connection already gone"),
    ]
    stopped = log(*before, (2.5, f"compose {OLD}: stopped"), (3.0, consuming("m1")))
    assert work_after_channel_loss("r1.1", stopped) == []
    redelivered = log(
        *before, (3.0, consuming("m1")), (3.5, f"compose {OLD}: sent fedora_image_uploader.x")
    )
    assert work_after_channel_loss("r1.1", redelivered) == []
    went_on = log(*before, (2.5, f"compose {OLD}: acknowledged: done"))
    (problem,) = work_after_channel_loss("r1.1", went_on)
    assert problem.startswith("r1.1 went on after losing its channel: 2.500000")
    # The run cut off announces the moves it made: no decision about the message.
    announcing = log(*before, (2.5, f"compose {OLD}: sent fedora_image_uploader.x"))
    assert work_after_channel_loss("r1.1", announcing) == []
    # A tag write completing after the loss (in flight) is no decision of the run's.
    in_flight = log(*before, (2.1, f"compose {OLD}: [4/9] gate: published r/fedora:latest, v"))
    assert work_after_channel_loss("r1.1", in_flight) == []


def test_every_move_announced_exactly_once():
    moves = [("fedora", "41", OLD), ("fedora", "41", NEW)]
    assert move_problems(moves, moves) == []
    assert move_problems([*moves, moves[0]], moves) == [f"fedora:41 -> {OLD} announced 2 times"]
    assert move_problems(moves[:1], moves) == [f"fedora:41 -> {NEW} moved but never announced"]
    assert move_problems([*moves, ("fedora", "42", NEW)], moves) == [
        f"fedora:42 -> {NEW} announced but the tag never served it"
    ]

    # A move by a process killed -9 before it announced it may go unannounced; never twice.
    assert move_problems(moves[:1], moves, killed=[moves[1]]) == []
    assert move_problems([*moves, moves[1]], moves, killed=[moves[1]]) == [
        f"fedora:41 -> {NEW} announced 2 times"
    ]
    assert move_problems(moves[1:], moves, killed=[moves[1]]) == [
        f"fedora:41 -> {OLD} moved but never announced"
    ]


def test_moves_a_killed_process_may_not_have_announced():
    text = log(
        (1.0, f"compose {OLD}: [3/9] gate: published 127.0.0.1:5000/soak/fedora:41, verdict p"),
        (1.1, f"compose {OLD}: [4/9] gate: published 127.0.0.1:5000/soak/fedora:latest, verdict"),
    )
    assert logged_moves(text) == {("fedora", "41", OLD), ("fedora", "latest", OLD)}
    moves = [("fedora", "41", OLD), ("fedora", "latest", OLD), ("fedora", "41", NEW)]
    killed = Run("a", "m1", OLD, 1.0, 2.0)
    # OLD's message never ran again after the kill; a survivor logged moving fedora:latest.
    survivors = {("fedora", "latest", OLD)}
    assert killed_before_announcing(moves, [killed], [killed], survivors) == {("fedora", "41", OLD)}
    # Its message ran again (the redelivery announces what serves the compose): nothing is
    # excused. Another message of the same compose (Pungi sending it twice) excuses nothing.
    again = Run("b", "m1", OLD, 2.5, 4.0)
    assert killed_before_announcing(moves, [killed], [killed, again], survivors) == set()
    duplicate = Run("b", "m2", OLD, 2.5, 4.0)
    assert killed_before_announcing(moves, [killed], [killed, duplicate], set()) == {
        ("fedora", "41", OLD),
        ("fedora", "latest", OLD),
    }


def test_a_message_neither_acknowledged_nor_dead_lettered_is_lost():
    published = {"good": 2, "bad": 1}
    assert lost_messages(published, {"good": 2}, {"bad": ["rejected"]}, expected_dead={"bad"}) == []
    assert lost_messages(published, {"good": 1}, {"bad": ["rejected"]}, expected_dead={"bad"}) == [
        "message good: published 2 times, acknowledged 1, dead-lettered 0"
    ]
    assert lost_messages(published, {"good": 2}, {"bad": [""]}, expected_dead={"bad"}) == [
        "message bad: dead-lettered without a reason"
    ]
    assert lost_messages(published, {"good": 2}, {}, expected_dead={"bad"}) == [
        "message bad: published 1 times, acknowledged 0, dead-lettered 0",
        "message bad: bad, but not in the dead-letter queue",
    ]
    assert lost_messages(
        published,
        {"good": 1},
        {"good": ["delivery_limit"], "bad": ["rejected"]},
        expected_dead={"bad"},
    ) == ["message good: dead-lettered ['delivery_limit']"]


def test_rss_that_keeps_growing_is_reported():
    flat = [100 * 2**20 + (i % 3) * 2**20 for i in range(30)]
    growing = [100 * 2**20 + i * 8 * 2**20 for i in range(30)]
    assert rss_growth({"r1.1": flat, "r2.1": growing[:5]}, factor=1.5, slack=32 * 2**20) == []
    (problem,) = rss_growth({"r1.1": flat, "r2.1": growing}, factor=1.5, slack=32 * 2**20)
    assert problem.startswith("r2.1: RSS grew from ")


def test_a_run_that_lost_its_channel_overlaps_only_with_what_it_wrote_after_the_handover():
    lost = log(
        (1.0, consuming("m1")),
        (1.1, f"compose {OLD}: publishing FINISHED from http://x"),
        (1.5, f"compose {OLD}: [3/9] gate: published r/fedora:41, verdict publish"),
        (2.01, "Disconnect requested, but AMQP connection already gone"),
    )
    (old,) = parse_runs("r1.1", lost, ended_at=9)
    assert old.lost and old.end == 2.01 and old.writes == (1.5,)
    handed_over = parse_runs(
        "r2.1", log((2.0, consuming("m1")), (2.1, f"compose {OLD}: publishing x")), ended_at=9
    )
    assert concurrent_runs([old, *handed_over], same_compose=True) == []
    early = parse_runs(
        "r2.1", log((1.4, consuming("m1")), (1.45, f"compose {OLD}: publishing x")), ended_at=9
    )
    assert len(concurrent_runs([old, *early], same_compose=True)) == 1
    # Writes after the loss line belong to the lost run (until its message comes back here).
    went_on = lost + log(
        (2.1, f"compose {OLD}: [4/9] gate: published r/fedora:latest, verdict publish"),
        (3.5, f"compose {OLD}: [5/9] tag r/fedora:41-s390x, verdict publish"),
        (4.0, consuming("m1")),
        (4.1, f"compose {OLD}: publishing FINISHED from http://x"),
        (4.5, f"compose {OLD}: [5/9] tag r/fedora:41-s390x, verdict publish"),
    )
    old_run, again = parse_runs("r1.1", went_on, ended_at=9)
    assert old_run.writes == (1.5, 2.1, 3.5) and again.writes == (4.5,)
    later = parse_runs(
        "r2.1", log((3.0, consuming("m1")), (3.1, f"compose {OLD}: publishing x")), ended_at=9
    )
    assert concurrent_runs([old, *later], same_compose=True) == []
    assert len(concurrent_runs([old_run, *later], same_compose=True)) == 1
