"""The job model (pure) and the job store (SQLite + files) without a gateway."""

from __future__ import annotations

import time

from vlmswap.documents.jobs import Job, JobSpec, JobState, PageRecord, PageState, final_state
from vlmswap.documents.layout import Block, Page
from vlmswap.gateway.jobs_store import JobStore


def spec(pages: tuple[int, ...] = (1, 2, 3, 4)) -> JobSpec:
    return JobSpec(source="scan.pdf", model="rapidocr", mode="layout", pages=pages, dpi=120.0)


def result(number: int) -> Page:
    return Page(
        number=number,
        width=100,
        height=200,
        input_width=112,
        input_height=224,
        blocks=[Block(0, "Text", [1.0, 2.0, 30.0, 12.0], f"text of page {number}")],
        model="rapidocr",
    )


def test_eta_comes_from_the_pages_done_and_the_concurrency():
    job = Job("j", spec(), JobState.RUNNING, 0.0, pages=[PageRecord(n) for n in (1, 2, 3, 4)])
    assert job.eta_s() is None  # nothing to go by yet
    job.pages[0].state, job.pages[0].seconds = PageState.DONE, 2.0
    job.pages[1].state, job.pages[1].seconds = PageState.DONE, 4.0
    assert job.eta_s() == 6.0 and job.eta_s(concurrency=2) == 3.0  # 2 left at 3 s each
    job.pages[2].state = PageState.FAILED
    assert job.eta_s() == 3.0
    job.state = JobState.CANCELLED
    assert job.eta_s() == 0.0


def test_a_job_with_no_page_read_ends_failed_else_done():
    job = Job(
        "j",
        spec((1, 2)),
        JobState.RUNNING,
        0.0,
        pages=[PageRecord(1, PageState.FAILED), PageRecord(2, PageState.FAILED)],
    )
    assert final_state(job) == JobState.FAILED
    job.pages[1].state = PageState.DONE
    assert final_state(job) == JobState.DONE


def test_jobs_and_pages_survive_reopening_the_store(tmp_path):
    store = JobStore(tmp_path)
    job = store.create(spec(), b"%PDF-bytes")
    assert store.input_path(job.id).read_bytes() == b"%PDF-bytes"
    store.mark_running(job.id)
    store.page_started(job.id, 1)
    store.page_done(job.id, result(1), 1.5)
    store.page_started(job.id, 2)  # in flight when the gateway died
    store.close()

    again = JobStore(tmp_path)
    assert again.unfinished() == [job.id]
    again.reset_running(job.id)  # what a restart does first
    got = again.get(job.id)
    assert got is not None and got.state == JobState.RUNNING and got.spec == spec()
    assert [(p.number, p.state, p.tries) for p in got.pages] == [
        (1, PageState.DONE, 1),
        (2, PageState.PENDING, 0),
        (3, PageState.PENDING, 0),
        (4, PageState.PENDING, 0),
    ]
    assert got.pending() == [2, 3, 4]
    assert again.read_page(job.id, 1) == result(1)
    assert again.read_page(job.id, 2) is None


def test_tries_count_errors_not_cut_tries(tmp_path):
    store = JobStore(tmp_path)
    job = store.create(spec((1,)), b"x")
    store.page_started(job.id, 1)
    store.page_error(job.id, 1, "try 1: model answered 500", final=False)
    store.page_started(job.id, 1)
    store.page_dropped(job.id, 1)  # cancelled mid-try: does not count
    store.page_started(job.id, 1)
    store.page_error(job.id, 1, "try 2: model answered 500", final=True)
    page = store.get(job.id).pages[0]
    assert (page.state, page.tries, page.error) == (PageState.FAILED, 2, "try 2: model answered 500")


def test_a_finished_job_is_not_finished_again(tmp_path):
    store = JobStore(tmp_path)
    job = store.create(spec((1,)), b"x")
    assert store.finish_if_active(job.id, JobState.CANCELLED)
    assert not store.finish_if_active(job.id, JobState.DONE)  # a runner ending late changes nothing
    assert not store.mark_running(job.id)
    assert store.get(job.id).state == JobState.CANCELLED and store.active_count() == 0


def test_retention_removes_old_finished_jobs_and_their_files(tmp_path):
    store = JobStore(tmp_path)
    old, live = store.create(spec((1,)), b"x"), store.create(spec((1,)), b"y")
    store.finish_if_active(old.id, JobState.DONE)
    assert store.expired(time.time() - 3600) == []  # finished just now: kept
    assert store.expired(time.time() + 1) == [old.id]  # the running one never expires
    store.delete(old.id)
    assert store.get(old.id) is None and not store.job_dir(old.id).exists()
    assert [j.id for j in store.recent()] == [live.id]
