"""The demo page's button hands off a @task job to a real worker, and the page and its JSON
view follow the job to its end, on both stacks (daphne, a web worker, two Sisy workers)."""

import json
import re

import pytest

from tests.integration.cluster import wait_until

pytestmark = pytest.mark.integration

ORDER = ['READY', 'RUNNING', 'SUCCESSFUL', 'FAILED']
STANDING_TASKS = 4  # seeded by the demo's migration 0002


def hand_off(browser, **fields):
    """Press the page's button; return the job id its message names."""
    status, page = browser.post_form('/', '/hand-off/', fields)
    assert status == 200, page
    found = re.search(r'Enqueued job (\d+) \(tally\.enqueue\(([^)]*)\)\)', page)
    assert found, 'no job in the page after the button:\n%s' % page
    return found.group(1), found.group(2)


def follow(browser, job_id):
    """Poll the job's JSON view, as the page's script does, until it has finished.

    Return the finished job and the statuses seen on the way.
    """
    seen = []

    def finished():
        job = browser.get_json('/jobs/%s/' % job_id)
        if not seen or seen[-1] != job['status']:
            seen.append(job['status'])
        return job if job['finished'] else None

    job = wait_until(finished, 30, interval=0.05, message='job %s to finish' % job_id)
    assert seen == sorted(seen, key=ORDER.index), 'statuses out of order: %s' % seen
    return job, seen


def test_the_demo_button_hands_off_a_job_and_the_page_shows_its_result(cluster):
    cluster.start_site()
    workers = {process.pid for process in cluster.named('sisy-worker')}
    browser = cluster.browser()

    job_id, arguments = hand_off(browser)
    assert arguments == '1, fail=False'
    job, seen = follow(browser, job_id)
    assert job['status'] == 'SUCCESSFUL', (job, seen)
    value = json.loads(job['return_value'])
    assert value['pid'] in workers, 'ran in pid %s, not on a Sisy worker' % value['pid']
    assert value['tasks'] == STANDING_TASKS and value['runs'] >= 1
    assert job['errors'] == [] and job['attempts'] == 1
    assert job['started_after_ms'] < 1000, 'started %s ms after enqueue' % job['started_after_ms']

    # On reload the page shows the job (kept in the session) as finished, with its value.
    status, page = browser.get('/')
    assert status == 200
    row = re.search(r'<tr data-finished="yes">.*?>%s</a>.*?</tr>' % job_id, page, re.S)
    assert row, 'job %s not shown finished on the page:\n%s' % (job_id, page)
    assert 'SUCCESSFUL' in row.group(0)
    assert job['return_value'].replace('"', '&quot;') in row.group(0)
    assert browser.get('/jobs/999999/')[0] == 404
    cluster.check_health()  # before the failing job logs its traceback

    job_id, arguments = hand_off(browser, fail='1')
    assert arguments == '1, fail=True'
    job, seen = follow(browser, job_id)
    assert job['status'] == 'FAILED', (job, seen)
    assert job['errors'] == ['demoapp.tasks.DemoFailure'] and job['return_value'] == ''
    status, page = browser.get('/')
    assert re.search(r'>%s</a>.*?FAILED.*?demoapp\.tasks\.DemoFailure' % job_id, page, re.S)
    for worker in cluster.named('sisy-worker'):
        assert worker.alive(), worker.log()
