"""The operator's path through the admin, in headless Chromium driven by Selenium.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`.ci/browser` installs them);
skipped otherwise. Screenshots of each step go to test-output/admin-browser/.
"""

import datetime as dt
import os
import re
import shutil
import tempfile

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import modify_settings
from django.utils import timezone

from sisy import dispatch
from sisy.models import Task, TaskRun
from tests.conftest import Worker

webdriver = pytest.importorskip('selenium.webdriver')
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = '/usr/bin/chromium'
CHROMEDRIVER = '/usr/bin/chromedriver'
SHOTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     'test-output', 'admin-browser')
CHROMIUM_FLAGS = ('--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                  '--disable-background-networking', '--disable-component-update',
                  '--disable-sync', '--no-first-run', '--window-size=1280,1000')

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason='needs Debian chromium and chromium-driver: run .ci/browser')


# staticfiles serves the admin's CSS and JavaScript, as on a real site.
@modify_settings(INSTALLED_APPS={'append': 'django.contrib.staticfiles'})
class AdminInBrowserTest(StaticLiveServerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.profile = tempfile.mkdtemp(prefix='sisy-chromium-')
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS + ('--user-data-dir=%s' % cls.profile,):
            options.add_argument(flag)
        try:
            cls.browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except Exception:
            shutil.rmtree(cls.profile, ignore_errors=True)
            super().tearDownClass()
            raise
        cls.browser.implicitly_wait(5)
        os.makedirs(SHOTS, exist_ok=True)

    @classmethod
    def tearDownClass(cls):
        cls.browser.quit()
        shutil.rmtree(cls.profile, ignore_errors=True)
        super().tearDownClass()

    # -- helpers -------------------------------------------------------------------

    def open(self, path):
        self.browser.get(self.live_server_url + path)

    def shot(self, name):
        self.browser.save_screenshot(os.path.join(SHOTS, name + '.png'))

    def find(self, selector):
        return self.browser.find_element(By.CSS_SELECTOR, selector)

    def page_text(self):
        return self.find('body').text

    def submit(self, selector):
        """Click a submit button and wait for the next page to load."""
        old_page = self.find('html')
        self.find(selector).click()
        WebDriverWait(self.browser, 10).until(expected_conditions.staleness_of(old_page))

    def fill(self, name, value):
        field = self.find('[name="%s"]' % name)
        field.clear()
        field.send_keys(value)

    def wait_for(self, condition, timeout=10, what='the page'):
        """Wait until `condition()` is true, up to `timeout` seconds (no fixed sleep)."""
        return WebDriverWait(self.browser, timeout).until(
            lambda browser: condition(), 'waited %s s for %s' % (timeout, what))

    def preview(self):
        """What the form's schedule preview shows: (meaning, [next runs], [notes])."""
        return tuple(self.browser.execute_script(
            "function texts(selector) {"
            "  return Array.prototype.map.call(document.querySelectorAll(selector),"
            "                                  function (item) { return item.textContent; });"
            "}"
            "return [document.querySelector('.sisy-preview-meaning').textContent,"
            "        texts('.sisy-preview-runs ol li'),"
            "        texts('.sisy-preview-runs ul.sisy-dst-notes li')];"))

    def preview_shows(self, meaning, runs=None, timeout=10):
        """Wait until the preview shows `meaning` (and `runs` next runs, if given)."""
        def shown():
            words, times, _ = self.preview()
            return meaning in words and (runs is None or len(times) == runs)
        self.wait_for(shown, timeout, 'the preview to show %r' % meaning)
        return self.preview()

    def log_in(self, username, password):
        self.open('/admin/login/?next=/admin/')
        self.fill('username', username)
        self.fill('password', password)
        self.submit('input[type="submit"]')

    # -- the test ------------------------------------------------------------------

    def test_operator_creates_previews_runs_and_inspects_a_task(self):
        operator = User.objects.create_user('operator', password='secret-1', is_staff=True)
        operator.user_permissions.add(*Permission.objects.filter(codename__in=[
            'add_task', 'change_task', 'view_task', 'view_taskrun']))
        User.objects.create_user('visitor', password='secret-2')

        self.log_in('operator', 'secret-1')
        assert 'sisy scheduled tasks' in self.page_text().lower()  # CSS upper-cases it
        self.shot('01-logged-in')

        # The add form previews the schedule as it is typed: its meaning and next runs.
        self.open('/admin/sisy/task/add/')
        for region in ('.sisy-preview-meaning', '.sisy-preview-runs'):
            assert self.find(region).get_attribute('aria-live') == 'polite'
        meaning, runs, _ = self.preview()
        assert meaning == 'every minute' and len(runs) == 5  # the default schedule
        self.fill('label', 'browser-task')
        self.fill('function', 'tests.testapp.tasks.record')
        self.fill('schedule', '30 1 * * *')
        meaning, runs, notes = self.preview_shows('at 01:30 every day', runs=5)
        assert all(re.match(r'\w{3} \d{4}-\d\d-\d\d 0[12]:[03]0:00 (GMT|BST)$', when)
                   for when in runs), runs  # 02:00 only where 01:30 falls in a DST gap
        assert all('does not exist' in note or 'happens twice' in note for note in notes)
        self.shot('02-preview-as-typed')

        # Starting just before the next spring-forward change, the preview says what it does.
        today = timezone.localdate()
        year = today.year + (today >= dt.date(today.year, 3, 25))
        change = max(dt.date(year, 3, day) for day in range(25, 32)
                     if dt.date(year, 3, day).weekday() == 6)  # London: last Sunday of March
        self.fill('start_running_0', (change - dt.timedelta(days=2)).isoformat())
        self.fill('start_running_1', '00:00:00')
        self.wait_for(lambda: self.preview()[2], what='a daylight-saving note')
        _, runs, notes = self.preview()
        assert notes == ['01:30 does not exist on %d March; runs at 02:00' % change.day]
        assert runs[2] == '%s 02:00:00 BST' % change.strftime('Sun %Y-%m-%d')
        self.shot('02b-preview-with-dst-note')
        self.fill('start_running_0', '')
        self.fill('start_running_1', '')

        # An invalid schedule: the preview says what the form would say.
        self.fill('schedule', '61 * * * *')
        meaning, runs, _ = self.preview_shows("minute field '61' is not valid")
        assert meaning.startswith("invalid: Schedule '61 * * * *': minute field '61'")
        assert runs == [] and self.find('.sisy-preview-runs').text == \
            'None: the schedule is not valid.'
        self.shot('03-preview-of-an-invalid-schedule')

        # Sent anyway, it is refused with the field's error.
        self.submit('input[name="_continue"]')
        error = self.find('.field-schedule .errorlist').text
        assert "minute field '61' is not valid; it takes 0-59" in error
        assert not Task.objects.exists()
        self.shot('04-bad-schedule-refused')

        # Corrected, it is saved and the page previews the next five runs.
        self.fill('schedule', '*/5 * * * *')
        self.preview_shows('every 5 minutes', runs=5)
        self.submit('input[name="_continue"]')
        task = Task.objects.get(label='browser-task')
        assert 'was added successfully' in self.page_text()
        assert 'every 5 minutes' in self.find('.field-meaning').text
        upcoming = self.browser.find_elements(By.CSS_SELECTOR, 'ol.sisy-upcoming li')
        assert len(upcoming) == 5
        assert all(item.text.split()[2].split(':')[1] in ('00', '05', '10', '15', '20', '25',
                                                           '30', '35', '40', '45', '50', '55')
                   for item in upcoming)
        self.shot('05-next-five-runs')

        # Editing the schedule of the saved task previews it too; back as it was, as it was.
        saved = self.preview()
        self.fill('schedule', '0 6 * * mon-fri')
        _, runs, _ = self.preview_shows('at 06:00 on Monday to Friday', runs=5)
        assert all(' 06:00:00 ' in when and when[:3] not in ('Sat', 'Sun') for when in runs)
        self.shot('06-preview-while-editing')
        self.fill('schedule', '*/5 * * * *')
        self.wait_for(lambda: self.preview() == saved, what='the saved preview again')

        # The task list's banner shows the scheduler's health: no tick yet in this test.
        self.open('/admin/sisy/task/')
        banner = self.find('.sisy-health li.error').text
        assert banner == ('Scheduler: no tick processed yet: is sisy_heartbeat running, and a '
                          'worker on the channel sisy.heartbeat?'), banner
        self.shot('07-health-banner-no-tick')

        # Run it now from the task list.
        self.find('input[name="_selected_action"][value="%d"]' % task.pk).click()
        Select(self.find('select[name="action"]')).select_by_value('run_now')
        self.submit('button[name="index"]')
        assert ('Handed to a worker now (a worker must be running): browser-task.'
                in self.find('.messagelist').text)
        self.shot('08-run-now')

        # Run now claimed the slot itself: a tick now claims nothing more. No worker
        # runs in this test, so do the worker's part here, from the tick's doorbell.
        worker = Worker()
        assert dispatch.process_tick(timezone.now()) == []
        assert TaskRun.objects.get(task=task).status == 'pending'
        assert worker.deliver() >= 1
        assert TaskRun.objects.get(task=task).status == 'ok'

        # The run and its outcome show in the list and in the task's history; the
        # banner now has the tick.
        self.open('/admin/sisy/task/')
        assert 'ok' in self.find('#result_list td.field-outcome').text
        assert re.match(r'Scheduler: last tick \d+ s ago; 0 waiting$',
                        self.find('.sisy-health li.success').text)
        self.shot('09-task-list-with-outcome-and-tick')
        self.open('/admin/sisy/task/%d/change/' % task.pk)
        self.submit('.field-run_history a')
        row = self.find('#result_list tbody tr').text
        assert 'browser-task' in row and 'ok' in row
        self.shot('10-run-history')

        # Someone who is not staff is refused.
        self.open('/admin/logout/')
        self.log_in('visitor', 'secret-2')
        assert 'Please enter the correct username and password for a staff account' \
            in self.page_text()
        self.shot('11-non-staff-login-refused')
        self.open('/admin/sisy/task/')
        assert '/admin/login/' in self.browser.current_url
        assert 'browser-task' not in self.page_text()
        self.shot('12-non-staff-sent-to-login')
