"""The demo's data migrations seed standing tasks on a fresh database and reverse cleanly."""

import json

import pytest

from tests.integration.cluster import STACKS, Cluster, Database

pytestmark = pytest.mark.integration

DEMO_KINDS = {
    'demo: function every 10 s': 'function',
    'demo: instance method every 15 s': 'method',
    'demo: staticmethod every 30 s': 'staticmethod',
    'demo: classmethod every minute': 'classmethod',
}


def standing_tasks(db):
    return {label: json.loads(info) for label, info in
            db.rows('SELECT label, _func_info FROM sisy_task')}


@pytest.mark.parametrize('empty_database', STACKS, indirect=True)
def test_demo_migrations_apply_reverse_and_apply_again(empty_database, tmp_path):
    stack, name = empty_database
    site = Cluster(stack, name, 'sisy-it-migrations', str(tmp_path))
    db = Database(stack, name)
    for attempt in ('fresh', 'after reversing'):
        site.manage('migrate', '-v', '0')
        tasks = standing_tasks(db)
        assert {label: info['kind'] for label, info in tasks.items()} == DEMO_KINDS, attempt
        counter = db.value("SELECT id FROM demoapp_counter WHERE name = 'demo-counter'")
        assert tasks['demo: instance method every 15 s']['model_pk'] == counter
        assert db.value('SELECT COUNT(*) FROM sisy_task WHERE next_run IS NULL') == 0

        site.manage('migrate', 'demoapp', 'zero', '-v', '0')
        assert db.value('SELECT COUNT(*) FROM sisy_task') == 0
        assert '[ ] 0002_standing_tasks' in site.manage('showmigrations', 'demoapp')
        assert db.value("SELECT COUNT(*) FROM sisy_task") == 0
