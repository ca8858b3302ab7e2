"""The operator's path through the admin, in headless Chromium driven by Selenium.

Needs /usr/bin/chromium and /usr/bin/chromedriver (`.ci/browser` installs them);
skipped otherwise. Screenshots of each step go to test-output/admin-browser/.
"""

import os
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

        # A bad schedule is refused, with the field's error.
        self.open('/admin/sisy/task/add/')
        self.fill('label', 'browser-task')
        self.fill('function', 'tests.testapp.tasks.record')
        self.fill('schedule', '61 * * * *')
        self.submit('input[name="_continue"]')
        error = self.find('.field-schedule .errorlist').text
        assert "minute field '61' is not valid; it takes 0-59" in error
        assert not Task.objects.exists()
        self.shot('02-bad-schedule-refused')

        # Corrected, it is saved and the page previews the next five runs.
        self.fill('schedule', '*/5 * * * *')
        self.submit('input[name="_continue"]')
        task = Task.objects.get(label='browser-task')
        assert 'was added successfully' in self.page_text()
        assert 'every 5 minutes' in self.find('.field-schedule_meaning').text
        upcoming = self.browser.find_elements(By.CSS_SELECTOR, 'ol.sisy-upcoming li')
        assert len(upcoming) == 5
        assert all(item.text.split()[2].split(':')[1] in ('00', '05', '10', '15', '20', '25',
                                                           '30', '35', '40', '45', '50', '55')
                   for item in upcoming)
        self.shot('03-next-five-runs')

        # Run it now from the task list.
        self.open('/admin/sisy/task/')
        self.find('input[name="_selected_action"][value="%d"]' % task.pk).click()
        Select(self.find('select[name="action"]')).select_by_value('run_now')
        self.submit('button[name="index"]')
        assert 'Will run at the next heartbeat tick' in self.find('.messagelist').text
        self.shot('04-run-now')

        # No worker runs in this test: do the heartbeat's and the worker's part here.
        worker = Worker()
        assert len(dispatch.process_tick(timezone.now())) == 1
        assert worker.deliver() == 1
        assert TaskRun.objects.get(task=task).status == 'ok'

        # The run and its outcome show in the list and in the task's history.
        self.open('/admin/sisy/task/')
        assert 'ok' in self.find('#result_list td.field-outcome').text
        self.shot('05-task-list-with-outcome')
        self.open('/admin/sisy/task/%d/change/' % task.pk)
        self.submit('.field-run_history a')
        row = self.find('#result_list tbody tr').text
        assert 'browser-task' in row and 'ok' in row
        self.shot('06-run-history')

        # Someone who is not staff is refused.
        self.open('/admin/logout/')
        self.log_in('visitor', 'secret-2')
        assert 'Please enter the correct username and password for a staff account' \
            in self.page_text()
        self.shot('07-non-staff-login-refused')
        self.open('/admin/sisy/task/')
        assert '/admin/login/' in self.browser.current_url
        assert 'browser-task' not in self.page_text()
        self.shot('08-non-staff-sent-to-login')
