"""Seed the demo's standing tasks, one of each callable kind, as a project would.

The functions are named by dotted path, so this migration keeps working when the
code moves on; the instance-method task names its model row with pk_override.
"""

from django.db import migrations

from sisy.models import task_with_callable

COUNTER_NAME = 'demo-counter'

STANDING_TASKS = [
    # (label, dotted path, schedule: minute hour day month weekday [second])
    ('demo: function every 10 s', 'demoapp.tasks.say_hello', '* * * * * */10'),
    ('demo: instance method every 15 s', 'demoapp.models.Counter.bump', '* * * * * */15'),
    ('demo: staticmethod every 30 s', 'demoapp.tasks.Reports.tick_tock', '* * * * * */30'),
    ('demo: classmethod every minute', 'demoapp.tasks.Reports.summary', '* * * * *'),
]


def add_standing_tasks(apps, schema_editor):
    Counter = apps.get_model('demoapp', 'Counter')
    counter, _ = Counter.objects.get_or_create(name=COUNTER_NAME)
    for label, path, schedule in STANDING_TASKS:
        pk = counter.pk if path.endswith('Counter.bump') else None
        task_with_callable(path, label=label, schedule=schedule, pk_override=pk).save()


def remove_standing_tasks(apps, schema_editor):
    Task = apps.get_model('sisy', 'Task')
    Task.objects.filter(label__in=[label for label, _, _ in STANDING_TASKS]).delete()
    apps.get_model('demoapp', 'Counter').objects.filter(name=COUNTER_NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('sisy', '0001_initial'),
        ('demoapp', '0001_initial'),
    ]

    operations = [
        migrations.RunPython(add_standing_tasks, remove_standing_tasks),
    ]
