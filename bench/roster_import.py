"""Roster import of a 400-student course into PostgreSQL, first and second time.

    .venv/bin/python bench/roster_import.py [--students 400] [--runs 3]

Each run uses a fresh throwaway database (migrated, on the test server of
tests/support/databases.py; HELDOUT_BENCH_POSTGRES names another) with one course and its
instructor, and a generated Canvas gradebook export (BOM, CRLF, the "Points Possible" line, the
Test Student). Timed: reading the file (parse) and applying it in one transaction, commit
included, as `POST /courses/{course}/roster` and `grade admin roster import` do. The second
import of the same file must change nothing. Reference in the same run: the same people inserted
with plain SQL (one executemany for the users, one for the enrollments) in one transaction. The
1-minute load average is printed before and after. Target: first import < 5 s.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG_ADMIN_URL = os.environ.get("HELDOUT_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TARGET_S = 5.0


def canvas_export(students: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework 1 (3101)",
                     "Project, part 2 (3102)", "Current Score", "Final Score"])
    writer.writerow(["    Points Possible", "", "", "", "", "10.00", "20.00", "(read only)", "(read only)"])
    for i in range(students):
        writer.writerow([f"Last{i:04d}, First{i}", str(50000 + i), f"S{i:07d}", f"stu{i:04d}@uni.edu",
                         f"Section {i % 4 + 1}", "7.50", "N/A", "75.00", "75.00"])
    writer.writerow(["Student, Test", "99999", "", "d41d8cd98f00b204e9800998ecf8427e", "Section 1", "", "", "", ""])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


def _course(db):
    from grader_api.models import Role, User
    from grader_api.services.courses import create_course, enroll, member_of

    with db.transaction() as s:
        course = create_course(s, "ml101", "Machine Learning", "America/Chicago")
        prof = User(name="prof", role=Role.INSTRUCTOR)
        s.add(prof)
        s.flush()
        enroll(s, course, prof, Role.INSTRUCTOR)
        return course, member_of(s, prof, course.id)


def timed_import(db, course, actor, data: bytes):
    from grader_api.services.roster_import import import_roster, parse_roster_file

    start = time.perf_counter()
    parsed = parse_roster_file(data, "grades.csv")
    with db.transaction() as s:
        result = import_roster(s, s.merge(course), parsed, actor=actor)
    return time.perf_counter() - start, result


def timed_reference(db, course_id: int, data: bytes) -> float:
    """The same people with plain SQL: parse, one executemany per table, one commit."""
    from grader_api.roster import parse_roster

    start = time.perf_counter()
    rows = parse_roster(data).rows
    with db.engine.begin() as conn:
        cur = conn.connection.cursor()
        cur.executemany("INSERT INTO users (name, role, full_name, email, created_at) VALUES (%s, %s, %s, %s, now())",
                        [(f"ref-{r.login}", r.role, r.full_name, r.email) for r in rows])
        cur.execute("SELECT name, id FROM users WHERE name LIKE 'ref-%%'")
        ids = dict(cur.fetchall())
        cur.executemany(
            "INSERT INTO enrollments (course_id, user_id, role, status, display_name, display_key, section, lms_id, "
            "sis_user_id, sis_login_id, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'active', %s, %s, %s, %s, %s, %s, now(), now())",
            [(course_id, ids[f"ref-{r.login}"], r.role, f"ref-{i}", f"ref-{i}", r.section, r.lms_id, r.sis_user_id,
              r.sis_login_id) for i, r in enumerate(rows)])
    return time.perf_counter() - start


def one_run(students: int) -> tuple[float, float, float]:
    from grader_api.db import get_database, migrate
    from grader_api.services.courses import create_course
    from tests.support.databases import throwaway_database

    data = canvas_export(students)
    with throwaway_database(PG_ADMIN_URL, prefix="heldout_bench") as url:
        migrate(url)
        db = get_database(url)
        course, actor = _course(db)
        first_s, first = timed_import(db, course, actor, data)
        assert (first.added, first.refused, len(first.skipped)) == (students, (), 2), first
        second_s, second = timed_import(db, course, actor, data)
        assert (second.added, second.updated, second.unchanged, second.dropped) == (0, 0, students, 0), second
        with db.transaction() as s:
            reference_course = create_course(s, "ref", "Reference")
        reference_s = timed_reference(db, reference_course.id, data)
    return first_s, second_s, reference_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=400)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    print(f"roster import: {args.students} students (Canvas export, {len(canvas_export(args.students)):,} bytes), "
          f"PostgreSQL, {args.runs} run(s), each in a fresh database; {os.cpu_count()} CPUs")
    print("| run | first import | second import (no change) | reference: plain executemany | first / reference |")
    print("|---|---|---|---|---|")
    results = []
    for run in range(1, args.runs + 1):
        first, second, reference = one_run(args.students)
        results.append((first, second, reference))
        print(f"| {run} | {first * 1000:.0f} ms | {second * 1000:.0f} ms | {reference * 1000:.0f} ms "
              f"| {first / reference:.1f}x |")
    first_med = statistics.median(r[0] for r in results)
    second_med = statistics.median(r[1] for r in results)
    ref_med = statistics.median(r[2] for r in results)
    print(f"| median | {first_med * 1000:.0f} ms | {second_med * 1000:.0f} ms | {ref_med * 1000:.0f} ms "
          f"| {first_med / ref_med:.1f}x |")
    print(f"1-minute load average: {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    verdict = "met" if max(r[0] for r in results) < TARGET_S else "NOT met"
    print(f"target: first import < {TARGET_S:.0f} s: {verdict} (slowest first import "
          f"{max(r[0] for r in results) * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
